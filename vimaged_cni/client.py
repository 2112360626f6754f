"""One ``cni_exec`` request to vimaged over its control socket (docs/protocol.md), stdlib only.

Frames are a 4-byte big-endian length and a JSON body; the daemon speaks first with ``hello``,
answers ``cni_result`` (or ``error``) and closes. It uses the C modules ``_socket``,
``binascii`` and ``_json`` (through :mod:`vimaged_cni.jsonc`) directly: :mod:`socket` imports
:mod:`enum` and :mod:`selectors`, :mod:`json` imports :mod:`re`, :mod:`base64` imports
:mod:`struct`, ~15 ms of every exec together.
"""

from __future__ import annotations

import _socket
import binascii
import errno
import os
import time

from vimaged_cni import jsonc

PROTOCOL_VERSION = 1
MAX_FRAME = 1 << 20
TIMEOUT = 120.0
"""Seconds for the whole exchange: an ADD on a busy FreeBSD host builds netgraph nodes, and
the daemon runs the IPAM plugin (twice when it undoes an allocation)."""
RETRY_CODES = frozenset({"shutting_down", "busy"})
RUNNING = "is vimaged running?"
DAEMON_REFUSED = 100
"""vimaged answered with an error; ``details`` carries its code (``not_found``)."""
DAEMON_PROTOCOL = 101
"""vimaged's answer was not understood, or its socket refused us (permission)."""
TRY_AGAIN_LATER = 11


class CniError(Exception):
    """No result from vimaged, as the spec's error: ``code``, ``msg``, ``details``."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details


def timeout(environ: dict[bytes, bytes]) -> float:
    """TIMEOUT, or ``VIMAGED_CNI_TIMEOUT`` seconds (for tests; the C client reads it too)."""
    try:
        value = float(environ.get(b"VIMAGED_CNI_TIMEOUT", b""))
    except ValueError:
        return TIMEOUT
    return value if 0 < value < 1e6 else TIMEOUT


def cni_exec(path: str, environ: bytes, stdin: bytes, seconds: float) -> tuple[int, bytes]:
    """Send the exec; the daemon's (exit status, stdout) or raise :class:`CniError`."""
    deadline = time.monotonic() + seconds
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        _connect(sock, path, deadline, seconds)
        hello = _receive(sock, deadline, seconds)
        if hello.get("reply") != "hello":
            raise CniError(DAEMON_PROTOCOL, "vimaged sent no hello")
        if type(hello.get("protocol")) is not int or hello["protocol"] != PROTOCOL_VERSION:
            shown = jsonc.dumps(hello["protocol"])[:40] if "protocol" in hello else "unknown"
            raise CniError(DAEMON_PROTOCOL, f"vimaged speaks protocol {shown}")
        body = b'{"op":"cni_exec","environ":"%s","stdin":"%s"}' % (
            binascii.b2a_base64(environ, newline=False),
            binascii.b2a_base64(stdin, newline=False),
        )
        _settimeout(sock, deadline, seconds)
        try:
            sock.sendall(len(body).to_bytes(4, "big") + body)
        except TimeoutError:
            raise _timed_out(seconds) from None
        except OSError as exc:  # EPIPE, ECONNRESET: it closed before our request
            raise CniError(TRY_AGAIN_LATER, f"lost vimaged: {exc.strerror}", RUNNING) from None
        reply = _receive(sock, deadline, seconds)
    finally:
        sock.close()
    if reply.get("reply") != "cni_result":
        raise CniError(DAEMON_PROTOCOL, "unexpected reply from vimaged")
    status, stdout = reply.get("exit"), reply.get("stdout")
    try:
        if type(status) is not int or not 0 <= status <= 255 or not isinstance(stdout, str):
            raise ValueError(status)
        return status, binascii.a2b_base64(stdout.encode("ascii"), strict_mode=True)
    except (ValueError, binascii.Error):  # UnicodeEncodeError is a ValueError
        # not an exit status of 0 to 255 and base64 stdout
        raise CniError(DAEMON_PROTOCOL, "vimaged sent a malformed cni_result") from None


def _connect(sock: _socket.socket, path: str, deadline: float, seconds: float) -> None:
    while True:
        _settimeout(sock, deadline, seconds)
        try:
            sock.connect(path)
            return
        except PermissionError:  # EACCES, EPERM
            raise CniError(
                DAEMON_PROTOCOL, f"no permission to use {path}", "run as root or in vimaged_group"
            ) from None
        except (BlockingIOError, TimeoutError):
            # Linux: its listen queue is full (EAGAIN); wait for a slot until the deadline.
            time.sleep(0.005)
        except OSError as exc:
            # ENOENT, ECONNREFUSED; a path too long for sun_path has no errno in Python
            text = exc.strerror or os.strerror(errno.ENAMETOOLONG)
            raise CniError(
                TRY_AGAIN_LATER, f"cannot reach vimaged at {path}: {text}", RUNNING
            ) from None
        except ValueError:  # a NUL in the path
            text = os.strerror(errno.EINVAL)
            raise CniError(
                TRY_AGAIN_LATER, f"cannot reach vimaged at {path}: {text}", RUNNING
            ) from None


def _settimeout(sock: _socket.socket, deadline: float, seconds: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _timed_out(seconds)
    sock.settimeout(left)


def _timed_out(seconds: float) -> CniError:
    return CniError(TRY_AGAIN_LATER, f"vimaged did not answer within {seconds:g} s", RUNNING)


def _receive(sock: _socket.socket, deadline: float, seconds: float) -> dict[str, object]:
    """The next frame's JSON object; an ``error`` reply raised as :class:`CniError`."""
    length = int.from_bytes(_exactly(sock, 4, deadline, seconds), "big")
    if length > MAX_FRAME:
        raise CniError(DAEMON_PROTOCOL, f"vimaged sent a frame of {length} bytes")
    try:
        body = jsonc.loads(_exactly(sock, length, deadline, seconds))
    except ValueError:
        body = None
    if not isinstance(body, dict) or "reply" not in body:
        raise CniError(DAEMON_PROTOCOL, "vimaged sent no JSON object")
    if body["reply"] == "error":
        raise _refused(body)
    return body


def _exactly(sock: _socket.socket, size: int, deadline: float, seconds: float) -> bytes:
    data = b""
    while len(data) < size:
        _settimeout(sock, deadline, seconds)
        try:
            chunk = sock.recv(min(size - len(data), 1 << 16))
        except TimeoutError:
            raise _timed_out(seconds) from None
        except OSError as exc:
            raise CniError(TRY_AGAIN_LATER, f"lost vimaged: {exc.strerror}", RUNNING) from None
        if not chunk:
            raise CniError(TRY_AGAIN_LATER, "vimaged closed the connection", RUNNING)
        data += chunk
    return data


def _refused(reply: dict[str, object]) -> CniError:
    """An ``error`` reply: code 100 (11 for busy, shutting_down), details its code."""
    code, message, name = reply.get("code"), reply.get("message"), reply.get("errno_name")
    if not isinstance(code, str) or not isinstance(message, str):
        return CniError(DAEMON_PROTOCOL, "vimaged sent an error without code or message")
    details = f"{code} ({name})" if isinstance(name, str) else code
    return CniError(TRY_AGAIN_LATER if code in RETRY_CODES else DAEMON_REFUSED, message, details)
