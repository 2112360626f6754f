"""Length-prefix framing, the one copy: a 4-byte big-endian length, then that many bytes.

Both stream protocols use it: the control protocol (vimaged/protocol.py, the server and
vimagectl, docs/protocol.md) and the sim host's RPC (vimaged/simhost/rpc.py, docs/sim.md).
The standard library only, and only ``struct``: vimagectl imports this module, and msgspec
would cost it more than half of its start-up budget (docs/performance.md).
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False  # typing costs vimagectl start-up; mypy reads this name
if TYPE_CHECKING:
    import socket

    from trio.abc import ReceiveStream

HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 20
"""Largest frame body accepted in either direction (1 MiB); a reader refuses a larger one
from its 4-byte header, before buffering any of the body."""


def frame(body: bytes, max_frame: int = MAX_FRAME) -> bytes:
    """``body`` with its length prefix; ``ValueError`` above ``max_frame``."""
    if len(body) > max_frame:
        raise ValueError(f"frame of {len(body)} bytes exceeds MAX_FRAME ({max_frame})")
    return HEADER.pack(len(body)) + body


def frame_length(header: bytes, max_frame: int = MAX_FRAME) -> int:
    """The body length a 4-byte header announces; ``ValueError`` above ``max_frame``."""
    (length,) = HEADER.unpack(header)
    if length > max_frame:
        raise ValueError(f"frame of {length} bytes exceeds MAX_FRAME ({max_frame})")
    return int(length)


async def receive_frame(stream: ReceiveStream) -> bytes | None:
    """The next frame's body from a trio stream; ``None`` if the stream ends first.

    Raises:
        ValueError: the header announces more than :data:`MAX_FRAME` (nothing more is read).
    """
    header = await _receive_exactly(stream, HEADER.size)
    if header is None:
        return None
    return await _receive_exactly(stream, frame_length(header))


async def _receive_exactly(stream: ReceiveStream, size: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < size:
        chunk = await stream.receive_some(size - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket) -> bytes | None:
    """:func:`receive_frame` on a blocking socket (its timeout applies to each recv)."""
    header = _recv_exactly(sock, HEADER.size)
    if header is None:
        return None
    return _recv_exactly(sock, frame_length(header))


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)
