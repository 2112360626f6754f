"""Unit tests of the sim transport's framing over a SEQPACKET socketpair (no sim process)."""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from vimaged.netgraph import abi
from vimaged.platforms.sim_transport import SimTransport, _Channel
from vimaged.simhost import wire

if TYPE_CHECKING:
    from pathlib import Path

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


async def test_a_call_sent_is_carried_to_its_result_even_when_cancelled() -> None:
    # sendto(2) of a netgraph message runs to its end; a cancelled caller must still learn
    # whether its mkpeer made a node (else an unnamed eiface is left on a bridge)
    transport, sim = _pair()
    answered: list[bool] = []
    with sim:
        sim.setblocking(False)
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:

                async def cancel_when_sent_then_answer() -> None:
                    await trio.lowlevel.wait_readable(sim)
                    scope.cancel()  # this task too: no checkpoint after it
                    sim.send(wire.pack_result(errno.ENOENT))

                nursery.start_soon(cancel_when_sent_then_answer)
                with pytest.raises(FileNotFoundError):
                    await transport.sendto(b"first", abi.pack_sockaddr("nosuch:"))
                answered.append(True)  # not Cancelled (which would pass through pytest.raises)
        assert answered == [True]
        assert sim.recv(100) == wire.pack_addressed(
            wire.SENDTO, abi.pack_sockaddr("nosuch:"), b"first"
        )
        with trio.CancelScope() as scope:
            scope.cancel()
            await transport.sendto(b"never", abi.pack_sockaddr("em0:"))  # not sent at all
        sim.send(wire.pack_result(0))
        await transport.sendto(b"second", abi.pack_sockaddr("em0:"))
        assert sim.recv(100) == wire.pack_addressed(
            wire.SENDTO, abi.pack_sockaddr("em0:"), b"second"
        )
        await transport.aclose()


async def test_a_reply_above_the_send_buffer_arrives_whole() -> None:
    """A LISTNODES of 3,000 nodes (~230 KB) is more than one SEQPACKET send can carry
    (Linux's default SO_SNDBUF, 212,992): it used to stop the sim host's writer without a
    word, so the call waited forever (the ~1,600-vimage hang of start --all)."""
    from vimaged.simhost.server import SimHostServer

    server = SimHostServer(nics=tuple(f"em{i}" for i in range(3000)), kernel=14, faults="")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    transport = SimTransport("/nonexistent", _Channel(trio.socket.from_stdlib_socket(ours)))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handle_ng, trio.socket.from_stdlib_socket(theirs))
        await transport._channel(transport._control).call(wire.OPEN_CONTROL, "socket")
        await transport.set_rcvbuf(1 << 20)
        message = abi.pack_message(abi.NGM_GENERIC_COOKIE, abi.NGM_LISTNODES, b"", token=5)
        with trio.fail_after(10):  # it hung before
            await transport.sendto(message, abi.pack_sockaddr("em0:"))
            raw, _ = await transport.recvfrom()
        reply = abi.unpack_message(raw)
        assert reply.token == 5
        assert len(raw) > 212_992
        assert int.from_bytes(reply.data[:4], "little") == 3001  # and our socket node
        await transport.aclose()


async def test_pieces_join_back_and_refuse_strangers() -> None:
    packet = wire.pack_addressed(wire.DATAGRAM, b"src", bytes(range(256)) * 1000)
    pieces = wire.split_packet(packet)
    assert len(pieces) > 1
    assert all(len(p) <= wire.PIECE for p in pieces)
    joiner = wire.Joiner()
    assert [joiner.feed(p) for p in pieces] == [None] * (len(pieces) - 1) + [packet]
    assert wire.split_packet(b"E\0\0\0\0") == [b"E\0\0\0\0"]
    with pytest.raises(ValueError, match="no packet"):
        wire.Joiner().feed(wire.LAST + b"x")
    half = wire.Joiner()
    half.feed(pieces[0])
    with pytest.raises(ValueError, match="pieces"):
        half.feed(wire.pack_result(0))


async def test_a_call_never_answered_times_out(autojump_clock: trio.testing.MockClock) -> None:
    transport, sim = _pair()
    with sim:
        with pytest.raises(TimeoutError) as raised:
            await transport.bind(abi.pack_sockaddr("me"))
        assert raised.value.errno == errno.ETIMEDOUT
        sim.send(wire.pack_result(0))  # too late: the channel is not trusted again
        with pytest.raises(ConnectionResetError) as again:
            await transport.bind(abi.pack_sockaddr("me"))
        assert again.value.errno == errno.ECONNRESET
        await transport.aclose()


async def test_an_rpc_never_answered_times_out(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    from vimaged.platforms.sim import SimOptions, SimPlatform

    path = str(tmp_path / "sim.sock")
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await listener.bind(path)
    listener.listen(1)
    platform = SimPlatform(SimOptions(sim_host=path, state_dir=str(tmp_path)))
    async with trio.open_nursery() as nursery:

        async def mute_host() -> None:
            conn, _ = await listener.accept()
            with conn:
                await trio.sleep_forever()

        nursery.start_soon(mute_host)
        with pytest.raises(TimeoutError) as raised:
            await platform.host_uuid()
        assert raised.value.errno == errno.ETIMEDOUT
        nursery.cancel_scope.cancel()
    listener.close()
    await platform.aclose()


async def test_raising_the_buffer_does_not_race_other_requests() -> None:
    """fit_reply's setsockopt is a call on the transport too: run beside other requests it
    used to read the socket they read (trio's BusyResourceError), at ~7,700 links."""
    from vimaged.netgraph.ngsocket import open_ng_socket
    from vimaged.simhost.server import SimHostServer

    server = SimHostServer(nics=("em0",), kernel=14, faults="")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    transport = SimTransport("/nonexistent", _Channel(trio.socket.from_stdlib_socket(ours)))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handle_ng, trio.socket.from_stdlib_socket(theirs))
        await transport._channel(transport._control).call(wire.OPEN_CONTROL, "socket")
        async with open_ng_socket(transport, rcvbuf=1000) as sock:  # NODEINFO fits
            async with trio.open_nursery() as requests:
                for _ in range(20):
                    requests.start_soon(sock.nodeinfo, "em0:")
                requests.start_soon(sock.listhooks, "em0:")
                for _ in range(20):
                    requests.start_soon(sock.nodeinfo, "em0:")
            assert sock.rcvbuf > 1000
        nursery.cancel_scope.cancel()
