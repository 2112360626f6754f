"""Platform layer, ``sim``: the netgraph ``NgTransport`` that talks to ``vimaged.simhost``.

Each simulated netgraph socket is one ``SOCK_SEQPACKET`` connection to
``<sim socket>`` + :data:`wire.NG_SOCKET_SUFFIX`, framed as ``vimaged/simhost/wire.py`` says:
one call packet, answered by one ``E`` packet carrying the errno; ``M`` datagrams may arrive
before or after that ``E`` and are queued for :meth:`SimTransport.recvfrom`. The netgraph
bytes themselves pass unchanged, exactly as they would go to the kernel.

Calls on one transport must not overlap (``NgSocket`` serializes them with its lock): a call
reads the connection until its ``E`` packet.

It sits in ``platforms/``, not in the binding: it speaks the sim host's wire
(:mod:`vimaged.simhost.wire`, shared by both ends), and ``vimaged.netgraph`` imports nothing
outside itself.
"""

from __future__ import annotations

import collections
import errno as errno_codes
import os
import socket
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from vimaged.simhost import wire

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


CALL_TIMEOUT = 60.0
"""How long a call waits for its result from the sim host (seconds)."""


class _Channel:
    """One SEQPACKET connection: a call/result pair plus the datagrams queued meanwhile.

    Results come back in call order; a call cancelled after its packet went out leaves its
    ``E`` behind, so :attr:`unanswered` counts calls sent and not yet answered, and an ``E``
    is taken as the current call's result only when it is the last one outstanding.
    """

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.datagrams: collections.deque[tuple[bytes, bytes]] = collections.deque()
        self.unanswered = 0
        self._joiner = wire.Joiner()
        self._broken = False

    async def _read(self) -> bytes:
        while True:
            piece = await self.sock.recv(wire.PIECE)
            if not piece:
                raise OSError(errno_codes.ECONNRESET, "simulated host closed the netgraph socket")
            packet = self._joiner.feed(piece)
            if packet is not None:
                return packet

    def _queue(self, packet: bytes) -> None:
        sockaddr, message = wire.unpack_addressed(packet)
        self.datagrams.append((message, sockaddr))

    async def call(self, packet: bytes, what: str) -> None:
        """Send one call packet and wait for its ``E``; raise ``OSError`` for a nonzero errno.

        No ``E`` within :data:`CALL_TIMEOUT` is ``OSError(ETIMEDOUT)``, and the channel is then
        taken as broken (ECONNRESET from then on): a safety net, a live host always answers.
        """
        if self._broken:
            raise OSError(errno_codes.ECONNRESET, "simulated netgraph socket timed out before")
        # On FreeBSD the call is one sendto(2), which ngc_send (sys/netgraph/ng_socket.c) runs
        # to the end, the netgraph message included, and which trio cancels only before it
        # starts. So once sent, the call is carried to its result: a cancelled wait would leave
        # the caller not knowing whether a mkpeer made its node (an eiface no one names).
        await trio.lowlevel.checkpoint_if_cancelled()
        with trio.CancelScope(shield=True), trio.move_on_after(CALL_TIMEOUT) as waited:
            for piece in wire.split_packet(packet):
                await self.sock.send(piece)
            self.unanswered += 1
            await self._result(what)
        if waited.cancelled_caught:
            self._broken = True
            raise OSError(errno_codes.ETIMEDOUT, os.strerror(errno_codes.ETIMEDOUT), what)

    async def _result(self, what: str) -> None:
        while True:
            reply = await self._read()
            if reply[:1] == wire.DATAGRAM:
                self._queue(reply)
                continue
            code = wire.unpack_result(reply)
            self.unanswered -= 1
            if self.unanswered:
                continue  # the result of an earlier, cancelled call
            if code:
                raise OSError(code, os.strerror(code), what)
            return

    async def receive(self) -> tuple[bytes, bytes]:
        while not self.datagrams:
            packet = await self._read()
            if packet[:1] == wire.RESULT and self.unanswered:
                wire.unpack_result(packet)
                self.unanswered -= 1  # a cancelled call's result
                continue
            if packet[:1] != wire.DATAGRAM:
                raise ValueError(f"simulated host sent {packet[:1]!r} with no call pending")
            self._queue(packet)
        return self.datagrams.popleft()


async def _connect(path: str) -> trio.socket.SocketType:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        await sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock


class SimTransport:
    """An ``NgTransport`` whose kernel is the simulated host at ``sim_socket_path``."""

    def __init__(self, sim_socket_path: str, control: _Channel) -> None:
        self._path = sim_socket_path + wire.NG_SOCKET_SUFFIX
        self._control: _Channel | None = control
        self._data: _Channel | None = None

    def _channel(self, channel: _Channel | None) -> _Channel:
        if channel is None:
            raise trio.ClosedResourceError("netgraph socket is closed")
        return channel

    async def bind(self, sockaddr: bytes) -> None:
        await self._channel(self._control).call(wire.BIND + sockaddr, "bind")

    async def sendto(self, message: bytes, sockaddr: bytes) -> None:
        packet = wire.pack_addressed(wire.SENDTO, sockaddr, message)
        await self._channel(self._control).call(packet, "sendto")

    async def recvfrom(self) -> tuple[bytes, bytes]:
        return await self._channel(self._control).receive()

    async def set_rcvbuf(self, size: int) -> None:
        await self._channel(self._control).call(wire.pack_rcvbuf(size), "setsockopt")

    async def connect_data(self, sockaddr: bytes) -> None:
        """Open this node's data socket: a second connection announced with ``D``."""
        if self._data is not None:
            raise OSError(errno_codes.EISCONN, os.strerror(errno_codes.EISCONN), "connect")
        channel = _Channel(await _connect(self._path))
        try:
            await channel.call(wire.OPEN_DATA + sockaddr, "connect")
        except BaseException:
            channel.sock.close()
            raise
        self._data = channel

    async def send_data(self, frame: bytes, hook_sockaddr: bytes) -> None:
        packet = wire.pack_addressed(wire.SENDTO, hook_sockaddr, frame)
        await self._channel(self._data).call(packet, "sendto")

    async def recv_data(self) -> tuple[bytes, bytes]:
        return await self._channel(self._data).receive()

    async def aclose(self) -> None:
        for channel in (self._data, self._control):
            if channel is not None:
                channel.sock.close()
        self._data = self._control = None
        await trio.lowlevel.checkpoint()


@asynccontextmanager
async def open_sim_transport(sim_socket_path: str) -> AsyncIterator[SimTransport]:
    """A new simulated netgraph socket node (an ``O`` connection) on the simulated host."""
    channel = _Channel(await _connect(sim_socket_path + wire.NG_SOCKET_SUFFIX))
    transport = SimTransport(sim_socket_path, channel)
    try:
        await channel.call(wire.OPEN_CONTROL, "socket")
        yield transport
    finally:
        with trio.move_on_after(5, shield=True):
            await transport.aclose()
