"""Blocking client of the vimaged control socket (vimagectl layer).

A plain AF_UNIX ``socket.socket`` with a deadline per request, speaking docs/protocol.md through
:mod:`vimaged.protocol`. No trio and no structlog: they would multiply vimagectl's start-up time
(tests/unit/test_import_hygiene.py holds this).
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING

import msgspec

from vimaged.protocol import (
    HEADER,
    PROTOCOL_VERSION,
    REPLY_DECODER,
    Error,
    Event,
    Events,
    Hello,
    frame,
    frame_length,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType

    from vimaged.protocol import Reply, Request

DEFAULT_SOCKET = "/var/run/vimaged.sock"
KNOWN_PROTOCOLS = frozenset({PROTOCOL_VERSION})

CLIENT_CODES = ("unreachable", "closed", "socket_permission", "timeout", "bad_frame", "bad_version")
"""Codes of failures seen by the client itself, alongside the daemon's ``Error.code`` values."""


class ClientError(Exception):
    """No usable answer from the daemon.

    ``code`` is either one of :data:`CLIENT_CODES` or an ``Error.code`` the daemon sent instead
    of ``Hello`` (``busy``, ``permission_denied``); vimagectl maps it to an exit status.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Client:
    """One connection to vimaged; use as a context manager.

    Args:
        path: the control socket.
        timeout: seconds allowed for connecting plus reading ``Hello``, and then for each
            request until its whole reply has arrived. Event streams wait without limit.
    """

    def __init__(self, path: str, timeout: float) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.path = path
        self.timeout = timeout
        self.hello: Hello | None = None
        self._sock: socket.socket | None = None

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
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock = sock
        sock.settimeout(self.timeout)
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
                "unreachable", f"{self.path}: connection refused; vimaged is down"
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
        first = self._receive(deadline)
        if isinstance(first, Error):
            raise ClientError(first.code, first.message)
        if not isinstance(first, Hello):
            raise ClientError("bad_frame", f"expected hello, daemon sent {_tag(first)}")
        if first.protocol not in KNOWN_PROTOCOLS:
            raise ClientError(
                "bad_version",
                f"daemon {first.daemon} speaks protocol {first.protocol}; "
                f"this vimagectl knows {', '.join(map(str, sorted(KNOWN_PROTOCOLS)))}",
            )
        self.hello = first
        return first

    def request(self, request: Request) -> Reply:
        """Send ``request`` and return the daemon's reply (an ``Error`` reply is returned)."""
        deadline = time.monotonic() + self.timeout
        self._send(frame(request), deadline)
        return self._receive(deadline)

    def events(self) -> Iterator[Event]:
        """Subscribe and yield events as they arrive, until the daemon ends the stream.

        Raises:
            ClientError: ``closed`` when the daemon ends the stream, or the code of an
                ``Error`` it sends.
        """
        self._send(frame(Events()), time.monotonic() + self.timeout)
        while True:
            reply = self._receive(None)
            if isinstance(reply, Error):
                raise ClientError(reply.code, reply.message)
            if not isinstance(reply, Event):
                raise ClientError("bad_frame", f"expected event, daemon sent {_tag(reply)}")
            yield reply

    def _socket(self) -> socket.socket:
        if self._sock is None:
            raise ClientError("closed", "not connected")
        return self._sock

    def _send(self, data: bytes, deadline: float) -> None:
        sock = self._socket()
        sock.settimeout(_remaining(deadline))
        try:
            sock.sendall(data)
        except TimeoutError:
            raise ClientError("timeout", f"no reply within {self.timeout:g} s") from None
        except OSError as exc:
            raise ClientError("closed", f"daemon closed the connection: {exc.strerror}") from None

    def _receive(self, deadline: float | None) -> Reply:
        header = self._read_exactly(HEADER.size, deadline, first=True)
        try:
            length = frame_length(header)
        except ValueError as exc:
            raise ClientError("bad_frame", str(exc)) from None
        body = self._read_exactly(length, deadline, first=False)
        try:
            reply: Reply = REPLY_DECODER.decode(body)
        except msgspec.DecodeError as exc:
            raise ClientError("bad_frame", f"undecodable reply: {exc}") from None
        return reply

    def _read_exactly(self, size: int, deadline: float | None, *, first: bool) -> bytes:
        sock = self._socket()
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


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise ClientError("timeout", "timed out waiting for the daemon")
    return left


def _tag(reply: Reply) -> str:
    return str(reply.__struct_config__.tag)
