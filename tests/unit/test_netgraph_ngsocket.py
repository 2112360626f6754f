"""Unit tests of NgSocket over a scripted transport: tokens, stale replies, errno, timeouts."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

import pytest
import trio

from vimaged.netgraph import abi, codec
from vimaged.netgraph.ngsocket import DEFAULT_RCVBUF, NetgraphError, open_ng_socket

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.unit

SOURCE = abi.pack_sockaddr("[3]:") + bytes(9)  # padded like a 13/14 kernel's 16 bytes


class ScriptedTransport:
    """Answers each sendto with ``kernel(message, path) -> (errno, datagrams to queue)``."""

    def __init__(self, kernel: Callable[[abi.NgMessage, str], tuple[int, list[bytes]]]) -> None:
        self.kernel = kernel
        self.calls: list[tuple[str, bytes]] = []
        self.send_channel, self.receive_channel = trio.open_memory_channel[bytes](1000)
        self.closed = 0

    async def bind(self, sockaddr: bytes) -> None:
        self.calls.append(("bind", sockaddr))

    async def sendto(self, message: bytes, sockaddr: bytes) -> None:
        self.calls.append(("sendto", sockaddr))
        code, datagrams = self.kernel(abi.unpack_message(message), abi.unpack_sockaddr(sockaddr))
        for datagram in datagrams:
            self.send_channel.send_nowait(datagram)
        if code:
            raise OSError(code, "scripted")

    async def recvfrom(self) -> tuple[bytes, bytes]:
        return await self.receive_channel.receive(), SOURCE

    async def set_rcvbuf(self, size: int) -> None:
        self.calls.append(("rcvbuf", size.to_bytes(4, "little")))

    async def aclose(self) -> None:
        self.closed += 1


def reply(msg: abi.NgMessage, data: bytes, *, token: int | None = None) -> bytes:
    return abi.pack_message(
        msg.typecookie,
        msg.cmd,
        data,
        token=msg.token if token is None else token,
        flags=abi.NGF_RESP,
    )


async def test_setup_binds_and_raises_rcvbuf() -> None:
    transport = ScriptedTransport(lambda m, p: (0, []))
    async with open_ng_socket(transport, "mydaemon") as sock:
        assert sock.name == "mydaemon"
    assert transport.calls == [
        ("bind", bytes.fromhex("0b206d796461656d6f6e00")),
        ("rcvbuf", DEFAULT_RCVBUF.to_bytes(4, "little")),
    ]
    assert transport.closed == 1


async def test_bad_socket_name_is_refused_before_any_call() -> None:
    transport = ScriptedTransport(lambda m, p: (0, []))
    with pytest.raises(ValueError, match="socket node name"):
        async with open_ng_socket(transport, "n" * 40):
            pass
    assert transport.calls == []


async def test_reply_matched_by_token_skipping_stale_and_unsolicited() -> None:
    info = codec.NodeInfo(name="em0", type="ether", id=3, hooks=2)
    flow = abi.pack_message(851672669, 32, b"", token=0)  # NGM_LINK_IS_UP, unsolicited

    def kernel(msg: abi.NgMessage, path: str) -> tuple[int, list[bytes]]:
        assert path == "em0:"
        stale = reply(msg, b"\0" * 72, token=msg.token + 1000)
        return 0, [stale, flow, reply(msg, codec.encode_nodeinfo(info))]

    async with open_ng_socket(ScriptedTransport(kernel)) as sock:
        assert await sock.nodeinfo("em0:") == info
        assert [(src, m.cmd) for src, m in sock.unsolicited] == [("[3]:", 32)]


@pytest.mark.parametrize(
    ("code", "pep3151"),
    [
        (errno.ENOENT, FileNotFoundError),
        (errno.EEXIST, FileExistsError),
        (errno.ENOTCONN, OSError),
        (errno.EINVAL, OSError),
        (errno.EPERM, PermissionError),
    ],
)
async def test_sendto_errno_becomes_typed_error(code: int, pep3151: type[OSError]) -> None:
    async with open_ng_socket(ScriptedTransport(lambda m, p: (code, []))) as sock:
        with pytest.raises(pep3151) as caught:
            await sock.mkpeer("em0:", "bridge", "lower", "link0")
    assert isinstance(caught.value, NetgraphError)
    assert caught.value.errno == code
    assert caught.value.filename == "em0:"
    assert caught.value.filename2 == "mkpeer"


async def test_failed_query_waits_for_no_reply() -> None:
    async with open_ng_socket(ScriptedTransport(lambda m, p: (errno.ENOENT, []))) as sock:
        with pytest.raises(FileNotFoundError):
            await sock.listhooks("nosuch:")


async def test_missing_reply_times_out(autojump_clock: trio.testing.MockClock) -> None:
    transport = ScriptedTransport(lambda m, p: (0, []))
    async with open_ng_socket(transport, reply_timeout=3) as sock:
        start = trio.current_time()
        with pytest.raises(trio.TooSlowError):
            await sock.listnodes()
        assert trio.current_time() - start == pytest.approx(3)


async def test_late_reply_after_timeout_is_dropped(autojump_clock: trio.testing.MockClock) -> None:
    late: list[bytes] = []
    info = codec.NodeInfo(name="x", type="bridge", id=9, hooks=0)

    def kernel(msg: abi.NgMessage, path: str) -> tuple[int, list[bytes]]:
        if not late:
            late.append(reply(msg, codec.encode_nodeinfo(info)))
            return 0, []  # first reply lost for now
        return 0, [*late, reply(msg, codec.encode_nodeinfo(info))]

    async with open_ng_socket(ScriptedTransport(kernel), reply_timeout=1) as sock:
        with pytest.raises(trio.TooSlowError):
            await sock.nodeinfo("x:")
        assert await sock.nodeinfo("x:") == info


async def test_200_concurrent_requests_each_get_their_reply() -> None:
    def kernel(msg: abi.NgMessage, path: str) -> tuple[int, list[bytes]]:
        ident = int(path.strip("[]:"), 16)
        info = codec.NodeInfo(name=f"n{ident}", type="eiface", id=ident, hooks=1)
        return 0, [reply(msg, codec.encode_nodeinfo(info))]

    results: dict[int, codec.NodeInfo] = {}
    async with open_ng_socket(ScriptedTransport(kernel)) as sock:

        async def ask(i: int) -> None:
            results[i] = await sock.nodeinfo(f"[{i:x}]:")

        async with trio.open_nursery() as nursery:
            for i in range(1, 201):
                nursery.start_soon(ask, i)
    assert all(results[i].id == i and results[i].name == f"n{i}" for i in range(1, 201))


async def test_typed_helpers_send_the_right_cookie_cmd_and_args() -> None:
    seen: list[tuple[str, int, int, bytes]] = []

    def kernel(msg: abi.NgMessage, path: str) -> tuple[int, list[bytes]]:
        seen.append((path, msg.typecookie, msg.cmd, msg.data))
        return 0, []

    async with open_ng_socket(ScriptedTransport(kernel)) as sock:
        await sock.ether_setpromisc("em0:", True)
        await sock.ether_setautosrc("em0:", False)
        await sock.eiface_set("ngeth0:", "02:00:27:e7:1b:18")
        await sock.bridge_setpersistent("b:")
        await sock.bridge_setconfig("b:", codec.BridgeConfig(), abi.NGM_BRIDGE_COOKIE_OLD)
        await sock.nolinger()
        await sock.rmhook(".", "hook")
        await sock.name_node("em0:lower", "em0bridge")
        await sock.connect("em0:", "em0:lower", "upper", "link1")
        await sock.shutdown("ngeth0:")
    assert seen == [
        ("em0:", abi.NGM_ETHER_COOKIE, abi.NGM_ETHER_SET_PROMISC, b"\1\0\0\0"),
        ("em0:", abi.NGM_ETHER_COOKIE, abi.NGM_ETHER_SET_AUTOSRC, b"\0\0\0\0"),
        ("ngeth0:", abi.NGM_EIFACE_COOKIE, abi.NGM_EIFACE_SET, bytes.fromhex("020027e71b18")),
        ("b:", abi.NGM_BRIDGE_COOKIE, abi.NGM_BRIDGE_SET_PERSISTENT, b""),
        (
            "b:",
            abi.NGM_BRIDGE_COOKIE_OLD,
            abi.NGM_BRIDGE_SET_CONFIG,
            codec.encode_bridge_config(codec.BridgeConfig(), old_abi=True),
        ),
        (".", abi.NGM_SOCKET_COOKIE, abi.NGM_SOCK_CMD_NOLINGER, b""),
        (".", abi.NGM_GENERIC_COOKIE, abi.NGM_RMHOOK, codec.encode_rmhook("hook")),
        ("em0:lower", abi.NGM_GENERIC_COOKIE, abi.NGM_NAME, codec.encode_name("em0bridge")),
        (
            "em0:",
            abi.NGM_GENERIC_COOKIE,
            abi.NGM_CONNECT,
            codec.encode_connect("em0:lower", "upper", "link1"),
        ),
        ("ngeth0:", abi.NGM_GENERIC_COOKIE, abi.NGM_SHUTDOWN, b""),
    ]


@pytest.mark.parametrize("length", [abi.MAX_ADDRESS + 1, 60, 511])
async def test_a_path_over_31_characters_is_refused_before_any_io(length: int) -> None:
    # FreeBSD 15 ngc_send (sys/netgraph/ng_socket.c): sg_len > NG_NODESIZ + 2 -> EINVAL; the
    # binding refuses it itself, on every release, so a graph that works on 14 works on 15.
    transport = ScriptedTransport(lambda m, p: (0, []))
    path = "vimaged_br_vtnet1234567890:link10"[:length].ljust(length, "x")
    async with open_ng_socket(transport) as sock:
        before = list(transport.calls)
        with pytest.raises(NetgraphError) as caught:
            await sock.nodeinfo(path)
        assert caught.value.errno == errno.ENAMETOOLONG
        assert (caught.value.filename, caught.value.filename2) == (path, "nodeinfo")
        assert transport.calls == before


async def test_a_31_character_path_is_sent() -> None:
    transport = ScriptedTransport(lambda m, p: (0, []))
    path = "[ffffffff]:link" + "1" * 16
    assert len(path) == abi.MAX_ADDRESS
    async with open_ng_socket(transport) as sock:
        await sock.shutdown(path)
    assert ("sendto", abi.pack_sockaddr(path)) in transport.calls


class DroppingTransport(ScriptedTransport):
    """As FreeBSD's ngs_rcvmsg: a reply that does not fit SO_RCVBUF is dropped."""

    rcvbuf = 20480

    async def set_rcvbuf(self, size: int) -> None:
        await super().set_rcvbuf(size)
        self.rcvbuf = size

    async def sendto(self, message: bytes, sockaddr: bytes) -> None:
        self.calls.append(("sendto", sockaddr))
        _, datagrams = self.kernel(abi.unpack_message(message), abi.unpack_sockaddr(sockaddr))
        for datagram in datagrams:
            if len(datagram) + len(SOURCE) <= self.rcvbuf:
                self.send_channel.send_nowait(datagram)


async def test_listhooks_of_10000_links_raises_the_buffer_to_fit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    peer = codec.NodeInfo(name="", type="eiface", id=9, hooks=1)
    links = tuple(
        codec.LinkInfo(ourhook=f"link{i}", peerhook="ether", peer=peer) for i in range(10_000)
    )
    bridge = codec.NodeInfo(name="em0bridge", type="bridge", id=4, hooks=len(links))
    listing = codec.encode_hooklist(codec.HookList(node=bridge, links=links))
    assert len(listing) > DEFAULT_RCVBUF  # 1.36 MB: dropped by the 1 MiB buffer before

    def kernel(msg: abi.NgMessage, path: str) -> tuple[int, list[bytes]]:
        if msg.cmd == abi.NGM_NODEINFO:
            return 0, [reply(msg, codec.encode_nodeinfo(bridge))]
        return 0, [reply(msg, listing)]

    transport = DroppingTransport(kernel)
    async with open_ng_socket(transport) as sock:
        hooks = await sock.listhooks("em0bridge:")
        assert len(hooks.links) == 10_000
        assert sock.rcvbuf >= len(listing) + abi.HEADER_SIZE
        rcvbufs = [call for call in transport.calls if call[0] == "rcvbuf"]
        assert len(rcvbufs) == 2  # the setup's, then raised once
        await sock.listhooks("em0bridge:")
        assert [call for call in transport.calls if call[0] == "rcvbuf"] == rcvbufs
