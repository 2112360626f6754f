"""The sim host's simulated netgraph sockets on the wire (``wire.py`` framing), with raw
SOCK_SEQPACKET connections: results in ``E`` packets, replies in ``M`` packets, socket node
lifetime tied to the connections, SO_RCVBUF."""

from __future__ import annotations

import errno
import socket
import struct
import time
from typing import TYPE_CHECKING

import pytest

from vimaged.simhost import wire

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.sim.conftest import SimHostHandle

pytestmark = pytest.mark.sim

HEADER = struct.Struct("<BBHIIIII32s")
GENERIC = 1137070366
NODEINFO, LISTNODES, MKPEER = 0x30000006, 0x30000009, 2


def addr(path: str) -> bytes:
    return bytes([2 + len(path) + 1, 32]) + path.encode() + b"\0"


def mesg(cookie: int, cmd: int, args: bytes = b"", token: int = 7) -> bytes:
    return HEADER.pack(8, 0, 0, len(args), cmd, 0, token, cookie, b"") + args


class Conn:
    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(5)
        self.sock.connect(path + wire.NG_SOCKET_SUFFIX)
        self.datagrams: list[tuple[bytes, bytes]] = []

    def call(self, packet: bytes) -> int:
        """Send one call packet; its errno, keeping datagrams that come meanwhile."""
        self.sock.send(packet)
        while True:
            reply = self.sock.recv(wire.PIECE)
            if reply[:1] == wire.RESULT:
                return wire.unpack_result(reply)
            self.datagrams.append(wire.unpack_addressed(reply))

    def datagram(self) -> tuple[bytes, bytes]:
        """The next ``M`` packet's ``(source sockaddr, message)``."""
        if self.datagrams:
            return self.datagrams.pop(0)
        packet = self.sock.recv(wire.PIECE)
        assert packet[:1] == wire.DATAGRAM
        return wire.unpack_addressed(packet)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def conns(sim_host: SimHostHandle) -> Iterator[list[Conn]]:
    opened: list[Conn] = []
    yield opened
    for conn in opened:
        conn.close()


def open_conn(sim_host: SimHostHandle, conns: list[Conn], first: bytes = wire.OPEN_CONTROL) -> Conn:
    conn = Conn(sim_host.socket_path)
    conns.append(conn)
    assert conn.call(first) == 0
    return conn


def test_reply_arrives_with_source_address(sim_host: SimHostHandle, conns: list[Conn]) -> None:
    conn = open_conn(sim_host, conns)
    assert conn.call(wire.pack_addressed(wire.SENDTO, addr("em0:"), mesg(GENERIC, NODEINFO))) == 0
    em0 = next(n for n in sim_host.ng_nodes() if n.name == "em0")
    sockaddr, message = conn.datagram()
    assert sockaddr == bytes([16, 32]) + f"[{em0.id:x}]:".encode().ljust(14, b"\0")
    assert HEADER.unpack_from(message)[5:7] == (1, 7)  # flags NGF_RESP, the token


def test_kernel_15_source_address_is_34_bytes(sim_host: SimHostHandle, conns: list[Conn]) -> None:
    sim_host.reset(kernel=15)
    conn = open_conn(sim_host, conns)
    assert conn.call(wire.pack_addressed(wire.SENDTO, addr("em0:"), mesg(GENERIC, NODEINFO))) == 0
    assert len(conn.datagram()[0]) == 34
    assert conn.call(wire.pack_addressed(wire.SENDTO, addr("x" * 32 + ":"), mesg(GENERIC, 6))) == (
        errno.EINVAL
    )


def test_errors_come_back_in_e_packets(sim_host: SimHostHandle, conns: list[Conn]) -> None:
    conn = open_conn(sim_host, conns)
    assert conn.call(
        wire.pack_addressed(wire.SENDTO, addr("nosuch:"), mesg(GENERIC, NODEINFO))
    ) == (errno.ENOENT)
    assert conn.call(wire.OPEN_CONTROL) == errno.EISCONN
    assert conn.call(b"Z") == errno.EINVAL
    assert conn.call(wire.BIND + addr("em0")) == errno.EADDRINUSE
    assert conn.call(wire.BIND + addr("mine")) == 0
    assert conn.datagrams == []


def test_socket_node_dies_with_its_connections(sim_host: SimHostHandle, conns: list[Conn]) -> None:
    control = open_conn(sim_host, conns)
    assert control.call(wire.BIND + addr("mine")) == 0
    args = b"bridge".ljust(32, b"\0") + b"hook".ljust(32, b"\0") + b"link0".ljust(32, b"\0")
    assert (
        control.call(wire.pack_addressed(wire.SENDTO, addr("."), mesg(GENERIC, MKPEER, args))) == 0
    )
    data = open_conn(sim_host, conns, wire.OPEN_DATA + addr("mine:"))
    other = Conn(sim_host.socket_path)
    conns.append(other)
    assert other.call(wire.OPEN_DATA + addr("mine:")) == errno.EADDRINUSE
    assert data.call(wire.pack_addressed(wire.SENDTO, addr("nohook")[:-1], b"frame")) == (
        errno.EHOSTUNREACH
    )
    assert data.call(wire.pack_addressed(wire.SENDTO, b"", b"frame")) == 0  # its one hook
    assert data.call(wire.BIND + addr("x")) == errno.EOPNOTSUPP
    control.close()
    types = {n.name: n.type for n in sim_host.ng_nodes()}
    assert types.get("mine") == "socket"  # the data socket still holds it
    data.close()
    # Closing is asynchronous on the sim side: the next request sees the result.
    for _ in range(100):
        types = {n.name: n.type for n in sim_host.ng_nodes()}
        if "mine" not in types:
            break
        time.sleep(0.01)
    assert "mine" not in types
    assert "bridge" not in types.values()  # it lost its only hook


def test_small_rcvbuf_drops_big_replies(sim_host: SimHostHandle, conns: list[Conn]) -> None:
    conn = open_conn(sim_host, conns)
    assert conn.call(wire.pack_rcvbuf(64)) == 0
    assert conn.call(wire.pack_addressed(wire.SENDTO, addr("."), mesg(GENERIC, LISTNODES))) == 0
    assert conn.call(wire.pack_rcvbuf(0)) == errno.EINVAL
    assert conn.call(wire.pack_rcvbuf(1_864_136)) == errno.ENOBUFS  # above sb_max_adj
    assert conn.call(wire.pack_rcvbuf(1_864_135)) == 0
    assert conn.call(wire.pack_rcvbuf(1 << 16)) == 0
    assert conn.call(wire.pack_addressed(wire.SENDTO, addr("."), mesg(GENERIC, LISTNODES))) == 0
    conn.datagram()  # the second reply; the first was dropped
    conn.sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        conn.datagram()
