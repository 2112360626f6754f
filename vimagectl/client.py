"""Blocking client of the vimaged control socket (vimagectl layer).

A plain blocking AF_UNIX socket with a deadline per request, speaking docs/protocol.md:
requests and replies are JSON objects, each behind a 4-byte big-endian length
(vimaged/framing.py, shared with the daemon: the standard library only). Replies are
decoded with the standard library's C scanner (jsontext.py) and checked against the
protocol's JSON Schema (schema.py); requests are checked against it before they leave.
Neither msgspec nor trio nor structlog is imported, nor json or re: they would multiply
vimagectl's start-up time (tests/unit/test_import_hygiene.py).
"""

from __future__ import annotations

import _socket  # socket.py's own core: socket.py adds enum and selectors, ~3 ms of start-up
import os
import stat
import sys
import time

from vimagectl.jsontext import WHITESPACE, compact, loads
from vimagectl.schema import Schema, WireError
from vimaged.framing import HEADER, frame, frame_length

TYPE_CHECKING = False  # see schema.py: typing is not imported at run time
if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType

    from vimagectl.replies import (
        Attachment,
        Event,
        Health,
        Hello,
        ListVimages,
        Reply,
        Request,
        Status,
        VimageInfo,
    )

DEFAULT_SOCKET = "/var/run/vimaged.sock"
SCHEMA = Schema.load()
PROTOCOL_VERSION = SCHEMA.integer("x-protocol")
KNOWN_PROTOCOLS = frozenset({PROTOCOL_VERSION})
REFUSED_RETRY_FOR = 0.0 if sys.platform.startswith("linux") else 2.0
REFUSED_RETRY_DELAY = 0.05
"""FreeBSD refuses connects (ECONNREFUSED) while a live daemon's listen queue is full, so a
refusal on a socket of ours is retried this long (capped by the timeout) before we call it down.
Linux makes connect wait on a full queue instead: there a refusal means nobody listens."""
SOL_LOCAL, LOCAL_PEERCRED, XUCRED_SIZE = 0, 1, 88
"""FreeBSD <sys/un.h>, <sys/ucred.h>: ``struct xucred`` (88 bytes on LP64; the kernel copies
at most what is asked), ``cr_uid`` at offset 4."""

CLIENT_CODES = (
    "unreachable",
    "closed",
    "socket_permission",
    "timeout",
    "bad_frame",
    "bad_version",
    "bad_request",
    "untrusted_socket",
)
"""Codes of failures seen by the client itself, alongside the daemon's ``Error.code`` values."""
PAGE_HEAD, PAGE_TAIL = '{"reply":"vimages_page","vimages":[', "]}"
"""A ``vimages_page`` as the daemon spells it (msgspec: compact, fields in order), around its
vimages."""


class ClientError(Exception):
    """No usable answer from the daemon.

    ``code`` is either one of :data:`CLIENT_CODES` or an ``Error.code`` the daemon sent instead
    of ``Hello`` (``busy``, ``permission_denied``); vimagectl maps it to an exit status.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Listing:
    """A listing as it streams in (``Client.pages``), to be read once: iterating yields its
    vimages; :meth:`pages` yields them a page at a time with the page's text, so that
    ``--json`` can print the daemon's bytes (render.write_json_array)."""

    __slots__ = ("_pages",)

    def __init__(self, pages: Iterator[tuple[list[VimageInfo], str | None]]) -> None:
        self._pages = pages

    def __iter__(self) -> Iterator[VimageInfo]:
        for vimages, _ in self._pages:
            yield from vimages

    def pages(self) -> Iterator[tuple[list[VimageInfo], str | None]]:
        return self._pages


class Client:
    """One connection to vimaged; use as a context manager.

    Args:
        path: the control socket.
        timeout: seconds allowed for connecting plus reading ``Hello``, and then for each
            request until its whole reply has arrived. Event streams wait without limit.
        refused_retry: seconds to keep retrying a refused connect (see
            :data:`REFUSED_RETRY_FOR`, the default).
    """

    def __init__(
        self, path: str, timeout: float, *, refused_retry: float = REFUSED_RETRY_FOR
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.path = path
        self.timeout = timeout
        self.refused_retry = refused_retry
        self.hello: Hello | None = None
        self._sock: _socket.socket | None = None

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def connect(self) -> Hello:
        """Connect and check the daemon's ``Hello``.

        Raises:
            ClientError: unreachable, permission, timeout, a refusal (``busy``) or an unknown
                protocol version.
        """
        deadline = time.monotonic() + self.timeout
        refused_until = time.monotonic() + min(self.refused_retry, self.timeout)
        while True:
            self._check_owner()
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            self._sock = sock
            sock.settimeout(_remaining(deadline))
            try:
                self._connect(sock)
                break
            except ClientError as exc:
                if exc.code != "refused":
                    raise
                if time.monotonic() >= refused_until:
                    raise ClientError("unreachable", exc.message) from None
                time.sleep(REFUSED_RETRY_DELAY)
        self._check_peer(sock)
        first = self._receive(deadline)
        if first["reply"] == "error":
            raise ClientError(first["code"], first["message"])
        if first["reply"] != "hello":
            raise ClientError("bad_frame", f"expected hello, daemon sent {first['reply']}")
        if first["protocol"] not in KNOWN_PROTOCOLS:
            raise ClientError(
                "bad_version",
                f"daemon {first['daemon']} speaks protocol {first['protocol']}; "
                f"this vimagectl knows {', '.join(map(str, sorted(KNOWN_PROTOCOLS)))}",
            )
        self.hello = first
        return first

    def _check_owner(self) -> None:
        """Refuse a socket file that is not owned by root or by us, before connecting to it.

        Anyone who can write its directory could plant a listener there that answers like
        vimaged (issue 10); lstat, so a link planted at the path is refused too.
        """
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            raise ClientError(
                "unreachable", f"{self.path}: no such socket; is vimaged running?"
            ) from None
        except OSError as exc:
            raise ClientError("unreachable", f"{self.path}: {exc.strerror}") from None
        if not stat.S_ISSOCK(st.st_mode):
            raise ClientError("untrusted_socket", f"{self.path}: not a socket; refusing it")
        if st.st_uid not in trusted_uids():
            raise ClientError(
                "untrusted_socket",
                f"{self.path}: owned by uid {st.st_uid}, not root; refusing to talk to it",
            )

    def _check_peer(self, sock: _socket.socket) -> None:
        """Refuse a listener not run by root or by us (the file may have changed since lstat)."""
        uid = listener_uid(sock)
        if uid is not None and uid not in trusted_uids():
            self.close()
            raise ClientError(
                "untrusted_socket",
                f"{self.path}: the listening process runs as uid {uid}, not root; "
                "refusing to talk to it",
            )

    def _connect(self, sock: _socket.socket) -> None:
        try:
            sock.connect(self.path)
        except FileNotFoundError:
            self.close()
            raise ClientError(
                "unreachable", f"{self.path}: no such socket; is vimaged running?"
            ) from None
        except ConnectionRefusedError:
            self.close()
            raise ClientError(
                "refused",
                f"{self.path}: connection refused; vimaged is down, "
                "or too busy to accept (its listen queue is full)",
            ) from None
        except PermissionError:
            self.close()
            raise ClientError(
                "socket_permission", f"{self.path}: permission denied (root or vimaged_group)"
            ) from None
        except TimeoutError:
            self.close()
            raise ClientError("timeout", f"{self.path}: connect timed out") from None
        except OSError as exc:
            self.close()
            raise ClientError("unreachable", f"{self.path}: {exc.strerror}") from None

    def request(self, request: Request) -> Reply:
        """Send ``request`` and return the daemon's reply (an ``Error`` reply is returned).

        Raises:
            ClientError: ``bad_request`` if ``request`` does not fit the protocol (nothing is
                sent), else a failure of the connection or of the reply's frame.
        """
        deadline = time.monotonic() + self.timeout
        self._send(_frame(request), deadline)
        return self._receive(deadline)

    def listing(
        self, request: ListVimages | Status | Health, attachments: list[Attachment] | None = None
    ) -> Iterator[VimageInfo]:
        """The vimages ``request`` asks for, yielded as their frames arrive (see :meth:`pages`)."""
        for vimages, _ in self.pages(request, attachments, texts=False):
            yield from vimages

    def pages(
        self,
        request: ListVimages | Status | Health,
        attachments: list[Attachment] | None = None,
        *,
        texts: bool = True,
    ) -> Iterator[tuple[list[VimageInfo], str | None]]:
        """The vimages ``request`` asks for, a frame at a time as the frames arrive: each
        page's vimages, and (with ``texts``) their JSON text when it is exactly what
        ``--json`` prints of them (:func:`decode_page`), else None.

        The listing's attachments (``list``, ``status``) are appended to ``attachments``
        once the last vimage is yielded: they come in ``vimages_end`` (or ``vimages``).

        From a daemon that announces ``stream`` (docs/protocol.md, Streams) the request goes
        with ``"stream": true`` and each ``vimages_page`` is yielded before the next is read,
        so any number of vimages lists in little memory; ``--timeout`` then bounds each frame.
        An older daemon gets the request as it is and answers with one ``vimages`` frame.

        Raises:
            ClientError: the daemon's ``error`` (before or after some vimages), or
                ``bad_frame`` for a reply out of place or a stream that ends short of its count.
        """
        hello = self.hello
        if hello is None or "stream" not in hello["features"]:
            reply = self.request(request)
            if reply["reply"] == "error":
                raise ClientError(reply["code"], reply["message"])
            if reply["reply"] != "vimages":
                raise ClientError("bad_frame", f"unexpected reply {reply['reply']!r}")
            yield reply["vimages"], None
            if attachments is not None:
                attachments += reply["attachments"]
            return
        streamed = request.copy()
        streamed["stream"] = True
        self._send(_frame(streamed), time.monotonic() + self.timeout)
        count = 0
        while True:
            body = self._receive_body(time.monotonic() + self.timeout)
            page, text = decode_page(body) if texts else (decode_reply(body), None)
            if page["reply"] == "vimages_page":
                count += len(page["vimages"])
                yield page["vimages"], text
            elif page["reply"] == "vimages_end":
                if page["count"] != count:
                    raise ClientError(
                        "bad_frame", f"listing ended after {count} of {page['count']} vimages"
                    )
                if attachments is not None:
                    attachments += page["attachments"]
                return
            elif page["reply"] == "error":
                raise ClientError(page["code"], page["message"])
            else:
                raise ClientError("bad_frame", f"unexpected reply {page['reply']!r} in a listing")

    def events(self) -> Iterator[Event]:
        """Subscribe and yield events as they arrive, until the daemon ends the stream.

        Raises:
            ClientError: ``closed`` when the daemon ends the stream, or the code of an
                ``Error`` it sends.
        """
        self._send(_frame({"op": "events"}), time.monotonic() + self.timeout)
        while True:
            reply = self._receive(None)
            if reply["reply"] == "error":
                raise ClientError(reply["code"], reply["message"])
            if reply["reply"] != "event":
                raise ClientError("bad_frame", f"expected event, daemon sent {reply['reply']}")
            yield reply

    def _connected(self) -> _socket.socket:
        if self._sock is None:
            raise ClientError("closed", "not connected")
        return self._sock

    def _send(self, data: bytes, deadline: float) -> None:
        sock = self._connected()
        sock.settimeout(_remaining(deadline))
        try:
            sock.sendall(data)
        except TimeoutError:
            raise ClientError("timeout", f"no reply within {self.timeout:g} s") from None
        except OSError as exc:
            raise ClientError("closed", f"daemon closed the connection: {exc.strerror}") from None

    def _receive(self, deadline: float | None) -> Reply:
        return decode_reply(self._receive_body(deadline))

    def _receive_body(self, deadline: float | None) -> bytes:
        header = self._read_exactly(HEADER.size, deadline, first=True)
        try:
            length = frame_length(header)
        except ValueError as exc:
            raise ClientError("bad_frame", str(exc)) from None
        return self._read_exactly(length, deadline, first=False)

    def _read_exactly(self, size: int, deadline: float | None, *, first: bool) -> bytes:
        sock = self._connected()
        data = bytearray()
        while len(data) < size:
            sock.settimeout(None if deadline is None else _remaining(deadline))
            try:
                chunk = sock.recv(min(size - len(data), 1 << 20))
            except TimeoutError:
                raise ClientError("timeout", f"no reply within {self.timeout:g} s") from None
            except OSError as exc:
                raise ClientError("closed", f"connection lost: {exc.strerror}") from None
            if not chunk:
                if first and not data:
                    raise ClientError("closed", "daemon closed the connection")
                raise ClientError("bad_frame", "daemon closed the connection mid-frame")
            data += chunk
        return bytes(data)


def trusted_uids() -> frozenset[int]:
    """Who may own the control socket: root, or ourselves (a daemon we run is no impostor)."""
    return frozenset({0, os.geteuid()})


def listener_uid(sock: _socket.socket) -> int | None:
    """The effective uid of the process that listens at the other end, if the kernel says.

    Linux: ``SO_PEERCRED`` (``struct ucred``: pid, uid, gid); FreeBSD: ``LOCAL_PEERCRED``
    (``struct xucred``), both recorded when the listener called listen(2).
    """
    try:
        if sys.platform.startswith("linux"):
            raw = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
            return int.from_bytes(raw[4:8], sys.byteorder)
        if sys.platform.startswith("freebsd"):
            raw = sock.getsockopt(SOL_LOCAL, LOCAL_PEERCRED, XUCRED_SIZE)
            return int.from_bytes(raw[4:8], sys.byteorder)
    except OSError:
        return None
    return None


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise ClientError("timeout", "timed out waiting for the daemon")
    return left


def decode_reply(body: bytes) -> Reply:
    """A reply frame's body, decoded and checked against the schema.

    Raises:
        ClientError: ``bad_frame``, naming the first thing that does not fit.
    """
    return _checked(_decoded(_text(body)))


def decode_page(body: bytes) -> tuple[Reply, str | None]:
    """:func:`decode_reply`, and for a ``vimages_page`` whose text is exactly what ``--json``
    prints of its vimages, that text (``{...},{...}``, without the brackets); else None.

    Printing the daemon's own bytes saves encoding a listing again (docs/performance.md), so
    the text is used only where that is provably the same: the page passes the schema's check
    unchanged and holds no float (``Schema.unchanged``), its text has no escape sequence
    (its strings are written as json would write them), no whitespace between tokens, no
    ``-0``, and as many members as the checked page (no key twice: the decoder keeps the last).

    Raises:
        ClientError: as :func:`decode_reply`.
    """
    text = _text(body)
    value = _decoded(text)
    members = SCHEMA.unchanged("VimagesPage", [value]) if text.startswith(PAGE_HEAD) else None
    if members is None:
        return _checked(value), None
    page: Reply = value  # type: ignore[assignment]  # checked: it passes unchanged
    if text.count('":') != members or not text.endswith(PAGE_TAIL) or not _canonical(text):
        return page, None
    return page, text[len(PAGE_HEAD) : -len(PAGE_TAIL)]


def _text(body: bytes) -> str:
    try:
        return body.decode()  # UTF-8 as the daemon writes it (RFC 8259), strictly
    except UnicodeDecodeError as exc:
        raise ClientError("bad_frame", f"undecodable reply: {exc}") from None


def _decoded(text: str) -> object:
    try:
        return loads(text)
    except ValueError as exc:
        raise ClientError("bad_frame", f"undecodable reply: {exc}") from None


def _checked(value: object) -> Reply:
    try:
        reply: Reply = SCHEMA.check("Reply", value)  # type: ignore[assignment]  # checked
    except WireError as exc:
        raise ClientError("bad_frame", f"malformed reply: {exc}") from None
    return reply


def _canonical(text: str) -> bool:
    """Whether ``text``, JSON without floats, is compact and without escapes or ``-0``."""
    if "\\" in text:
        return False
    if "-0" not in text and not any(space in text for space in WHITESPACE):
        return True
    outside = "".join(text.split('"')[::2])  # no escapes: each quote opens or closes a string
    return "-0" not in outside and not any(space in outside for space in WHITESPACE)


def _frame(request: Request) -> bytes:
    """``request`` checked against the schema, encoded with its length prefix."""
    try:
        SCHEMA.check("Request", request)
    except WireError as exc:
        raise ClientError("bad_request", f"not sent: {exc}") from None
    # As given, not as checked: the check fills in defaults, and a default of a field newer
    # than the daemon (``"stream": false``) would be refused by it as unknown.
    body = compact(request).encode()
    try:
        return frame(body)
    except ValueError as exc:
        raise ClientError("bad_request", f"not sent: {exc}") from None
