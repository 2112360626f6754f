"""How netgraph socket calls travel between a transport and the simulated host.

Each simulated netgraph socket is one ``SOCK_SEQPACKET`` connection to ``<sim socket>.ng``.
This module only frames the calls (bind, sendto, ...); the netgraph bytes inside are carried
unchanged, exactly as they would be passed to the kernel, and decoded on the sim side by
``vimaged.simhost.ngmodel`` alone.

Client to sim (one call per packet, answered by one ``E`` packet):

- ``O``: this connection is a control socket (``socket(32, SOCK_DGRAM, NG_CONTROL)``).
- ``D`` + sockaddr: this connection is a data socket connected to that node (``connect``).
- ``B`` + sockaddr: ``bind``.
- ``S`` + u8 sockaddr length + sockaddr + message: ``sendto``.
- ``R`` + u32 (little-endian): ``setsockopt(SO_RCVBUF)``.

Sim to client:

- ``E`` + i32 errno (little-endian, 0 for success): the result of the pending call.
- ``M`` + u8 sockaddr length + source sockaddr + message: one datagram arriving on the socket
  (replies and unsolicited messages alike), possibly before or after the ``E`` of the call
  that caused it, as the kernel queues replies.
"""

from __future__ import annotations

import struct

NG_SOCKET_SUFFIX = ".ng"

OPEN_CONTROL = b"O"
OPEN_DATA = b"D"
BIND = b"B"
SENDTO = b"S"
RCVBUF = b"R"
RESULT = b"E"
DATAGRAM = b"M"

MAX_PACKET = 1 << 20
"""Largest packet either side sends: a generous bound on a netgraph message plus framing."""

_ERRNO = struct.Struct("<i")
_RCVBUF = struct.Struct("<I")


def pack_result(errno: int) -> bytes:
    return RESULT + _ERRNO.pack(errno)


def unpack_result(packet: bytes) -> int:
    if len(packet) != 1 + _ERRNO.size or packet[:1] != RESULT:
        raise ValueError(f"not a result packet: {packet[:8]!r}")
    errno: int = _ERRNO.unpack_from(packet, 1)[0]
    return errno


def pack_addressed(kind: bytes, sockaddr: bytes, message: bytes) -> bytes:
    """``S`` or ``M`` packets: the sockaddr with its length, then the message bytes."""
    if len(sockaddr) > 255:
        raise ValueError("sockaddr longer than 255 bytes")
    return kind + bytes([len(sockaddr)]) + sockaddr + message


def unpack_addressed(packet: bytes) -> tuple[bytes, bytes]:
    """Split an ``S`` or ``M`` packet into ``(sockaddr, message)``."""
    if len(packet) < 2:
        raise ValueError("truncated packet")
    salen = packet[1]
    if len(packet) < 2 + salen:
        raise ValueError("truncated sockaddr")
    return packet[2 : 2 + salen], packet[2 + salen :]


def pack_rcvbuf(size: int) -> bytes:
    return RCVBUF + _RCVBUF.pack(size)


def unpack_rcvbuf(packet: bytes) -> int:
    size: int = _RCVBUF.unpack_from(packet, 1)[0]
    return size
