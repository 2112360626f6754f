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

Either way, a packet longer than :data:`PIECE` travels as pieces: ``F`` + the next bytes,
then ``L`` + the last bytes (:func:`split_packet`, :class:`Joiner`). An AF_UNIX SEQPACKET
send above the socket's SO_SNDBUF fails with EMSGSIZE (Linux: 212,992 bytes by default),
and a bridge's LISTHOOKS reply passes that at about 1,560 links.
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

FRAGMENT = b"F"
LAST = b"L"

MAX_PACKET = 1 << 24
"""Largest packet either side sends, joined: a generous bound on a netgraph message (the
receive buffer it must fit is at most kern.ipc.maxsockbuf) plus framing."""
PIECE = 1 << 16
"""Largest piece on the connection: well under any SEQPACKET send buffer."""

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


def split_packet(packet: bytes) -> list[bytes]:
    """The packets to send for ``packet``: itself, or its ``F``...``L`` pieces."""
    if len(packet) <= PIECE:
        return [packet]
    step = PIECE - 1
    pieces = [FRAGMENT + packet[i : i + step] for i in range(0, len(packet), step)]
    pieces[-1] = LAST + pieces[-1][1:]
    return pieces


class Joiner:
    """Joins received pieces back into packets."""

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self._size = 0

    def feed(self, received: bytes) -> bytes | None:
        """The whole packet once ``received`` completes one; ``None`` while pieces come.

        Raises:
            ValueError: a packet beyond :data:`MAX_PACKET`, or an ``L`` with no ``F`` before.
        """
        kind = received[:1]
        if kind not in (FRAGMENT, LAST):
            if self._pieces:
                raise ValueError("a packet inside another one's pieces")
            return received
        if kind == LAST and not self._pieces:
            raise ValueError("last piece of no packet")
        self._size += len(received) - 1
        if self._size > MAX_PACKET:
            raise ValueError(f"packet beyond MAX_PACKET ({MAX_PACKET})")
        self._pieces.append(received[1:])
        if kind == FRAGMENT:
            return None
        packet = b"".join(self._pieces)
        self._pieces.clear()
        self._size = 0
        return packet
