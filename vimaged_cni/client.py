"""One request to vimaged over its control socket (docs/protocol.md), standard library only.

Frames are a 4-byte big-endian length and a JSON body; the daemon speaks first with ``hello``.
A deliberate small copy of vimagectl's client without its schema checker: the plugin sends one
request per exec and reads only the ``attachments`` and ``error`` replies. It uses the C modules
``_socket`` and ``_json`` (through :mod:`vimaged_cni.jsonc`) directly: :mod:`socket` imports
:mod:`enum` and :mod:`selectors`, :mod:`json` imports :mod:`re`, ~15 ms of every exec.
"""

from __future__ import annotations

import _socket

from vimaged_cni import jsonc
from vimaged_cni.spec import DAEMON_PROTOCOL, DAEMON_REFUSED, TRY_AGAIN_LATER, CniError

PROTOCOL_VERSION = 1
MAX_FRAME = 1 << 20
TIMEOUT = 120.0
"""Seconds for the whole exchange: an ADD on a busy FreeBSD host builds netgraph nodes."""
RETRY_CODES = frozenset({"shutting_down", "busy"})


class UnreachableError(CniError):
    """No daemon answers on the socket (absent, refused, timed out)."""

    def __init__(self, msg: str) -> None:
        super().__init__(TRY_AGAIN_LATER, msg, "is vimaged running?")


def _receive(sock: _socket.socket) -> dict[str, object]:
    header = _exactly(sock, 4)
    length = int.from_bytes(header, "big")
    if length > MAX_FRAME:
        raise CniError(DAEMON_PROTOCOL, f"vimaged sent a frame of {length} bytes")
    try:
        body = jsonc.loads(_exactly(sock, length))
    except ValueError as exc:
        raise CniError(DAEMON_PROTOCOL, f"vimaged sent no JSON: {exc}") from None
    if not isinstance(body, dict):
        raise CniError(DAEMON_PROTOCOL, "vimaged sent no JSON object")
    return body


def _exactly(sock: _socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise UnreachableError("vimaged closed the connection")
        data += chunk
    return data


def request(path: str, message: dict[str, object]) -> list[dict[str, object]]:
    """Send ``message``; return the ``attachments`` of the reply or raise :class:`CniError`."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    try:
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise UnreachableError(f"cannot reach vimaged at {path}: {exc.strerror}") from None
        except PermissionError:
            raise CniError(DAEMON_PROTOCOL, f"no permission to use {path}",
                           "run as root or in vimaged_group") from None  # fmt: skip
        try:
            hello = _receive(sock)
            _raise_error(hello)
            if hello.get("reply") != "hello" or hello.get("protocol") != PROTOCOL_VERSION:
                raise CniError(
                    DAEMON_PROTOCOL, f"vimaged speaks protocol {hello.get('protocol')!r}"
                )
            body = jsonc.dumps(message).encode()
            sock.sendall(len(body).to_bytes(4, "big") + body)
            reply = _receive(sock)
        except TimeoutError:
            raise UnreachableError(f"vimaged did not answer within {TIMEOUT:g} s") from None
        except OSError as exc:
            raise UnreachableError(f"lost vimaged: {exc.strerror or exc}") from None
    finally:
        sock.close()
    _raise_error(reply)
    attachments = reply.get("attachments")
    if reply.get("reply") != "attachments" or not isinstance(attachments, list):
        raise CniError(DAEMON_PROTOCOL, f"unexpected reply {reply.get('reply')!r} from vimaged")
    return [a for a in attachments if isinstance(a, dict)]


def _raise_error(reply: dict[str, object]) -> None:
    if reply.get("reply") != "error":
        return
    code = str(reply.get("code"))
    name = reply.get("errno_name") or (None if reply.get("errno") is None else reply.get("errno"))
    details = code if name is None else f"{code} ({name})"
    if code in RETRY_CODES:
        raise CniError(TRY_AGAIN_LATER, str(reply.get("message")), details)
    raise CniError(DAEMON_REFUSED, str(reply.get("message")), details)
