"""Unit tests of the sim transport's framing over a SEQPACKET socketpair (no sim process)."""

from __future__ import annotations

import errno
import socket

import pytest
import trio
import trio.testing

from vimaged.netgraph import abi
from vimaged.platforms.sim_transport import SimTransport, _Channel
from vimaged.simhost import wire

pytestmark = pytest.mark.unit


def _pair() -> tuple[SimTransport, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    return SimTransport("/nonexistent", _Channel(trio.socket.from_stdlib_socket(ours))), theirs


async def test_calls_are_framed_as_wire_says() -> None:
    transport, sim = _pair()
    with sim:
        sim.setblocking(False)
        reply = abi.pack_message(1, 2, b"r", token=1, flags=1)
        source = abi.pack_sockaddr("[3]:")

        async def kernel() -> None:
            for _ in range(3):
                await trio.lowlevel.wait_readable(sim)
                packet = sim.recv(1 << 16)
                if packet[:1] == wire.SENDTO:
                    # The reply may come before the result, as the kernel queues it.
                    sim.send(wire.pack_addressed(wire.DATAGRAM, source, reply))
                    sim.send(wire.pack_result(errno.ENOENT))
                else:
                    sim.send(wire.pack_result(0))
                received.append(packet)

        received: list[bytes] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(kernel)
            await transport.bind(abi.pack_sockaddr("me"))
            await transport.set_rcvbuf(1 << 20)
            with pytest.raises(FileNotFoundError):
                await transport.sendto(b"msg", abi.pack_sockaddr("em0:"))
        assert received == [
            wire.BIND + abi.pack_sockaddr("me"),
            wire.pack_rcvbuf(1 << 20),
            wire.pack_addressed(wire.SENDTO, abi.pack_sockaddr("em0:"), b"msg"),
        ]
        assert await transport.recvfrom() == (reply, source)
        await transport.aclose()
        await transport.aclose()


async def test_result_of_a_cancelled_call_is_not_taken_by_the_next() -> None:
    transport, sim = _pair()
    with sim:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:

                async def cancel_when_sent() -> None:
                    await trio.testing.wait_all_tasks_blocked()
                    scope.cancel()

                nursery.start_soon(cancel_when_sent)
                await transport.sendto(b"first", abi.pack_sockaddr("nosuch:"))
        assert sim.recv(100) == wire.pack_addressed(
            wire.SENDTO, abi.pack_sockaddr("nosuch:"), b"first"
        )
        sim.send(wire.pack_result(errno.ENOENT))  # the cancelled call's result, late
        sim.send(wire.pack_result(0))  # the next call's
        await transport.sendto(b"second", abi.pack_sockaddr("em0:"))
        await transport.aclose()
