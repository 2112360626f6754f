"""The netgraph binding against the simulated kernel: NgSocket requests and error paths,
the sim transport, and NetgraphBridges' graph operations.

One simulated host process per module (``python -m vimaged.simhost``), reset before each test
over its RPC socket; what the tests assert is what the sim host reports (its nodes, ifnets)
or the errno the binding raised.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from contextlib import asynccontextmanager, suppress
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio

from tests.sim.ngcount import CountingTransport
from vimaged import ngtool as netgraph_tool
from vimaged.netgraph import abi, codec
from vimaged.netgraph.ngsocket import NetgraphError, NgSocket, open_ng_socket
from vimaged.platforms import BridgedIfnet, BridgeInfo, LinkCounters
from vimaged.platforms.netgraph_bridges import NetgraphBridges, bridge_name, eiface_name
from vimaged.platforms.parent_nics import BRIDGED_OFFLOADS_OFF, IFCAP_TSO6
from vimaged.platforms.sim import SimOptions, SimPlatform
from vimaged.platforms.sim_transport import open_sim_transport
from vimaged.simhost import rpc
from vimaged.simhost.client import SimHostClient, raise_failed

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from vimaged.netgraph.transport import NgTransport

pytestmark = pytest.mark.sim

REPO = Path(__file__).resolve().parents[2]
NICS = ["em0", "em1"]
UplinkBridges = partial(NetgraphBridges, bridge_mode="uplink")
"""The link-allocation tests below were written for the uplink layout (eifaces from link1);
the wiring itself, classic by default, is tested on its own further down."""


def _rpc_sync(path: str, request: rpc.Request) -> rpc.Reply:
    """One request on a connection of its own; OSError with the simulated errno if it failed."""
    with SimHostClient(path) as client:
        reply = client.call(request)
    raise_failed(reply, type(request).__name__)
    return reply


class Sim:
    """The simulated host as these tests drive it."""

    def __init__(self, path: str) -> None:
        self.path = path

    async def call(self, request: rpc.Request) -> rpc.Reply:
        return await trio.to_thread.run_sync(_rpc_sync, self.path, request)

    async def reset(self, kernel: int = 14) -> None:
        await self.call(rpc.Reset(nics=NICS, kernel=kernel))

    async def rename_ifnet(self, name: str, newname: str) -> None:
        await self.call(rpc.RenameIfnet(name=name, newname=newname))

    async def set_ifnet_up(self, name: str) -> None:
        await self.call(rpc.SetIfnetUp(name=name))

    async def ifnets(self) -> dict[str, rpc.IfnetRecord]:
        reply = await self.call(rpc.ListIfnets())
        assert isinstance(reply, rpc.Ifnets)
        return {i.name: i for i in reply.ifnets}

    async def nodes(self) -> dict[str, rpc.NgNodeRecord]:
        """Named nodes by name, as the sim host sees its graph."""
        reply = await self.call(rpc.ListNgNodes())
        assert isinstance(reply, rpc.NgNodes)
        return {n.name: n for n in reply.nodes if n.name}


@pytest.fixture(scope="module")
def sim_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = str(tmp_path_factory.mktemp("ngsim") / "sim.sock")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vimaged.simhost", "--socket", path, "--sim-nics", " ".join(NICS)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while not os.path.exists(path + ".ng"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("simulated host did not start")
        time.sleep(0.02)
    yield path
    proc.terminate()
    proc.wait(10)


@pytest.fixture
async def sim(sim_process: str) -> Sim:
    sim = Sim(sim_process)
    await sim.reset()
    return sim


@pytest.fixture
async def sock(sim: Sim) -> AsyncIterator[NgSocket]:
    async with open_sim_transport(sim.path) as transport, open_ng_socket(transport) as ng:
        yield ng


@pytest.fixture
async def bridges(sim: Sim) -> AsyncIterator[NetgraphBridges]:
    nb = UplinkBridges(partial(open_sim_transport, sim.path), sim.rename_ifnet, sim.set_ifnet_up)
    try:
        yield nb
    finally:
        await nb.aclose()


# NgSocket on the simulated kernel.


async def test_generic_queries(sock: NgSocket) -> None:
    nodes = {n.name: n for n in await sock.listnodes()}
    assert nodes["em0"].type == "ether"
    me = await sock.nodeinfo(".")
    assert me.type == "socket"
    assert me.id in {n.id for n in nodes.values()}
    em0 = await sock.nodeinfo("em0:")
    assert (em0.name, em0.type, em0.hooks) == ("em0", "ether", 0)
    assert await sock.nodeinfo(em0.address) == em0
    types = {t.type_name for t in await sock.listtypes()}
    assert {"ether", "socket"} <= types
    assert await sock.ether_getifname("em0:") == "em0"
    assert len(await sock.ether_getenaddr("em0:")) == 17


async def test_bind_name_and_eaddrinuse(sim: Sim) -> None:
    async with open_sim_transport(sim.path) as t1, open_ng_socket(t1, "mydaemon") as first:
        assert (await first.nodeinfo(".")).name == "mydaemon"
        async with open_sim_transport(sim.path) as t2:
            with pytest.raises(NetgraphError) as caught:
                await open_ng_socket(t2, "mydaemon").__aenter__()
            assert caught.value.errno == errno.EADDRINUSE
    async with open_sim_transport(sim.path) as t3, open_ng_socket(t3, "mydaemon") as again:
        assert (await again.nodeinfo("mydaemon:")).type == "socket"  # died with its sockets


async def test_build_and_list_hooks(sock: NgSocket) -> None:
    await sock.mkpeer("em0:", "bridge", "lower", "link0")
    await sock.name_node("em0:lower", "em0bridge")
    await sock.connect("em0:", "em0:lower", "upper", "link1")
    await sock.mkpeer("em0bridge:", "eiface", "link2", "ether")
    hooks = await sock.listhooks("em0bridge:")
    assert hooks.node.type == "bridge"
    assert {(h.ourhook, h.peer.type, h.peerhook) for h in hooks.links} == {
        ("link0", "ether", "lower"),
        ("link1", "ether", "upper"),
        ("link2", "eiface", "ether"),
    }
    eiface = await sock.nodeinfo("em0bridge:link2")
    assert (await sock.eiface_getifname(eiface.address)).startswith("ngeth")
    assert await sock.bridge_getstats("em0bridge:", "link2") == codec.LinkStats()
    await sock.rmhook("em0bridge:", "link2")
    assert (await sock.nodeinfo(eiface.address)).hooks == 0  # eiface outlives its hook
    await sock.shutdown(eiface.address)
    with pytest.raises(FileNotFoundError):
        await sock.nodeinfo(eiface.address)


async def test_ether_and_bridge_settings(sock: NgSocket) -> None:
    await sock.ether_setpromisc("em0:", True)
    await sock.ether_setautosrc("em0:", False)
    assert (await sock.ether_getpromisc("em0:"), await sock.ether_getautosrc("em0:")) == (1, 0)
    await sock.mkpeer("em0:", "bridge", "lower", "link0")
    assert await sock.bridge_getconfig("em0:lower") == codec.BridgeConfig()
    cfg = codec.BridgeConfig(debugLevel=2, loopTimeout=30, maxStaleness=600, minStableAge=2)
    await sock.bridge_setconfig("em0:lower", cfg)
    assert await sock.bridge_getconfig("em0:lower") == cfg
    await sock.bridge_setpersistent("em0:lower")
    assert await sock.bridge_gettable("em0:lower") == []
    await sock.rmhook("em0:", "lower")
    assert (await sock.nodeinfo("em0:")).hooks == 0
    # Persistent: the bridge outlived its last hook; shutting down the hookless ether resets it.
    bridges = [n for n in await sock.listnodes() if n.type == "bridge"]
    assert len(bridges) == 1
    await sock.shutdown("em0:")
    assert (await sock.ether_getpromisc("em0:"), await sock.ether_getautosrc("em0:")) == (0, 1)


async def test_ascii2binary_finds_cookie_and_command(sock: NgSocket) -> None:
    binary = await sock.ascii2binary("em0:", "setpromisc", "1")
    assert (binary.typecookie, binary.cmd, binary.data) == (
        abi.NGM_ETHER_COOKIE,
        abi.NGM_ETHER_SET_PROMISC,
        b"\1\0\0\0",
    )
    with pytest.raises(NetgraphError) as caught:
        await sock.ascii2binary("em0:", "nosuchcommand")
    assert caught.value.errno == errno.ENOSYS


@pytest.mark.parametrize(
    ("steps", "code"),
    [
        ([("shutdown", "nosuch:")], errno.ENOENT),
        ([("nodeinfo", "em0:nohook")], errno.ENOENT),
        ([("nodeinfo", "em0::")], errno.EINVAL),
        ([("mkpeer", "em0:", "bridge", "lower", "link0")] * 2, errno.EEXIST),
        ([("mkpeer", "em0:", "bridge", "lower", "uplink0")], errno.EINVAL),
        ([("mkpeer", "em0:", "bridge", "lower", "link01")], errno.EINVAL),
        ([("mkpeer", "em0:", "bridge", "bogus", "link0")], errno.EINVAL),
        ([("mkpeer", "em0:", "nosuchtype", "lower", "x")], errno.ENXIO),
        ([("mkpeer", "em0:", "ether", "lower", "x")], errno.EINVAL),
        (
            [("mkpeer", "em0:", "bridge", "lower", "link0"), ("getstats", "em0:lower", "link5")],
            errno.ENOTCONN,
        ),
        (
            [
                ("mkpeer", "em0:", "bridge", "lower", "link0"),
                ("connect", "em0:lower", "em0:lower", "link1", "link2"),
            ],
            errno.ELOOP,
        ),
        (
            [
                ("mkpeer", "em0:", "bridge", "lower", "link0"),
                ("mkpeer", "em0:lower", "eiface", "link1", "notether"),
            ],
            errno.EPFNOSUPPORT,
        ),
        (
            [
                ("mkpeer", "em0:", "bridge", "lower", "link0"),
                ("mkpeer", "em1:", "bridge", "lower", "link0"),
                ("connect", "em0:lower", "em1:", "link1", "divert"),
            ],
            errno.EISCONN,
        ),
        (
            [
                ("mkpeer", "em0:", "bridge", "lower", "link0"),
                ("name", "em0:lower", "em1"),
            ],
            errno.EADDRINUSE,
        ),
    ],
    ids=[
        "enoent-node",
        "enoent-hook",
        "einval-path",
        "eexist-hook-taken",
        "einval-uplink0",
        "einval-link01",
        "einval-ether-hook",
        "enxio-type",
        "einval-mkpeer-ether",
        "enotconn-getstats",
        "eloop-bridge-self",
        "epfnosupport-eiface-hook",
        "eisconn-ether-lower",
        "eaddrinuse-name",
    ],
)
async def test_error_paths(sock: NgSocket, steps: list[tuple[str, ...]], code: int) -> None:
    *setup, last = steps
    for step in setup:
        await _step(sock, step)
    with pytest.raises(NetgraphError) as caught:
        await _step(sock, last)
    assert caught.value.errno == code


async def _step(sock: NgSocket, step: tuple[str, ...]) -> None:
    verb, path, *args = step
    if verb == "shutdown":
        await sock.shutdown(path)
    elif verb == "nodeinfo":
        await sock.nodeinfo(path)
    elif verb == "mkpeer":
        await sock.mkpeer(path, *args)
    elif verb == "connect":
        await sock.connect(path, *args)
    elif verb == "name":
        await sock.name_node(path, *args)
    elif verb == "getstats":
        await sock.bridge_getstats(path, args[0])


async def test_rmhook_of_missing_hook_succeeds(sock: NgSocket) -> None:
    await sock.rmhook("em0:", "lower")


async def test_wrong_arglen_and_version_are_einval(sim: Sim) -> None:
    async with open_sim_transport(sim.path) as transport:
        short = abi.pack_message(abi.NGM_ETHER_COOKIE, abi.NGM_ETHER_SET_PROMISC, b"\1", token=1)
        with pytest.raises(OSError) as caught:  # noqa: PT011 -- errno asserted below
            await transport.sendto(short, abi.pack_sockaddr("em0:"))
        assert caught.value.errno == errno.EINVAL
        v7 = b"\7" + abi.pack_message(abi.NGM_GENERIC_COOKIE, abi.NGM_NODEINFO, b"", token=2)[1:]
        with pytest.raises(OSError) as caught:  # noqa: PT011 -- errno asserted below
            await transport.sendto(v7, abi.pack_sockaddr("em0:"))
        assert caught.value.errno == errno.EINVAL


async def test_reply_source_sockaddr_size_follows_kernel(sim: Sim) -> None:
    for kernel, size in ((14, 16), (15, 34)):
        await sim.reset(kernel=kernel)
        async with open_sim_transport(sim.path) as transport:
            message = abi.pack_message(abi.NGM_GENERIC_COOKIE, abi.NGM_NODEINFO, b"", token=5)
            await transport.sendto(message, abi.pack_sockaddr("em0:"))
            raw, source = await transport.recvfrom()
        assert len(source) == source[0] == size
        assert abi.unpack_sockaddr(source) == "[1]:"
        assert codec.decode_nodeinfo(abi.unpack_message(raw).data).name == "em0"


async def test_long_path_is_einval_on_main_only(sim: Sim) -> None:
    # The kernel fact (ngc_send, sys/netgraph/ng_socket.c on main), on the raw transport.
    long_path = "em0:" + "lower" + "x" * 30
    message = abi.pack_message(abi.NGM_GENERIC_COOKIE, abi.NGM_NODEINFO, b"", token=1)
    for kernel, code in ((14, errno.ENOENT), (15, errno.EINVAL)):
        await sim.reset(kernel=kernel)
        async with open_sim_transport(sim.path) as transport:
            with pytest.raises(OSError) as caught:  # noqa: PT011 -- errno asserted below
                await transport.sendto(message, abi.pack_sockaddr(long_path))
            assert caught.value.errno == code
        # The binding refuses it itself on every release, before any I/O.
        async with open_sim_transport(sim.path) as transport, open_ng_socket(transport) as ng:
            with pytest.raises(NetgraphError) as caught_ng:
                await ng.nodeinfo(long_path)
            assert caught_ng.value.errno == errno.ENAMETOOLONG


async def test_data_socket_connects_to_its_node(sim: Sim) -> None:
    async with open_sim_transport(sim.path) as transport, open_ng_socket(transport, "dsock"):
        await transport.connect_data(abi.pack_sockaddr("dsock:"))
        with pytest.raises(OSError) as caught:  # noqa: PT011 -- errno asserted below
            await transport.connect_data(abi.pack_sockaddr("dsock:"))
        assert caught.value.errno == errno.EISCONN
    async with open_sim_transport(sim.path) as other:
        with pytest.raises(OSError) as caught:  # noqa: PT011 -- errno asserted below
            await other.connect_data(abi.pack_sockaddr("em0:"))
        assert caught.value.errno == errno.EINVAL


async def test_nolinger_socket_dies_with_its_last_hook(sim: Sim) -> None:
    async with open_sim_transport(sim.path) as transport, open_ng_socket(transport, "nl") as ng:
        await ng.mkpeer(".", "bridge", "tmp", "link0")
        await ng.nolinger()
        assert (await ng.nodeinfo(".")).hooks == 1
        await ng.rmhook(".", "tmp")
        assert "nl" not in await sim.nodes()
        with pytest.raises(NetgraphError) as caught:
            await ng.nodeinfo("em0:")
        assert caught.value.errno == errno.ENOTCONN


async def test_listnames_lists_only_named_nodes(sock: NgSocket) -> None:
    names = {n.name for n in await sock.listnames()}
    assert names == {"em0", "em1"}
    assert any(not n.name for n in await sock.listnodes())  # our own socket node


@pytest.mark.parametrize("name", ["named", None])
async def test_open_with_data_socket(sim: Sim, name: str | None) -> None:
    async with (
        open_sim_transport(sim.path) as transport,
        open_ng_socket(transport, name, data=True) as ng,
    ):
        me = await ng.nodeinfo(".")
        with pytest.raises(OSError) as caught:  # noqa: PT011 -- errno asserted below
            await transport.connect_data(abi.pack_sockaddr(me.address))
        assert caught.value.errno == errno.EISCONN


async def test_socket_node_dies_with_its_transport(sim: Sim) -> None:
    async with open_sim_transport(sim.path) as transport, open_ng_socket(transport, "short"):
        assert "short" in await sim.nodes()
    assert "short" not in await sim.nodes()


async def test_200_concurrent_requests_on_one_socket(sock: NgSocket) -> None:
    infos: list[codec.NodeInfo] = []

    async def ask(path: str) -> None:
        infos.append(await sock.nodeinfo(path))

    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(ask, NICS[i % 2] + ":")
    assert sorted(i.name for i in infos) == ["em0"] * 100 + ["em1"] * 100


# NetgraphBridges.


async def test_create_builds_uplink_bridge_and_ifnet(sim: Sim, bridges: NetgraphBridges) -> None:
    await bridges.create("em0", "ng0_web", "02:00:27:e7:1b:18")
    ifnets = await sim.ifnets()
    assert ifnets["ng0_web"].mac == "02:00:27:e7:1b:18"
    assert ifnets["ng0_web"].up
    assert not any(name.startswith("ngeth") for name in ifnets)
    nodes = await sim.nodes()
    bridge = nodes[bridge_name("em0")]
    assert bridge.type == "bridge"
    assert {h.name for h in bridge.hooks} == {"uplink1", "link0", "link1"}
    assert nodes[eiface_name("ng0_web")].type == "eiface"
    sock = await bridges.socket()
    assert (await sock.ether_getpromisc("em0:"), await sock.ether_getautosrc("em0:")) == (1, 0)
    assert await bridges.list() == [BridgedIfnet(name="ng0_web", parent="em0")]
    assert await bridges.link_stats("ng0_web") == codec.LinkStats()


async def test_legacy_kernel_gets_classic_wiring(sim: Sim, bridges: NetgraphBridges) -> None:
    await sim.reset(kernel=12)
    await bridges.create("em0", "ng0_web", "02:00:27:e7:1b:18")
    await bridges.create("em0", "ng1_web", "02:00:37:e7:1b:18")
    bridge = (await sim.nodes())[bridge_name("em0")]
    assert {h.name for h in bridge.hooks} == {"link0", "link1", "link2", "link3"}
    lower = next(h for h in bridge.hooks if h.name == "link0")
    assert lower.peer_hook == "lower"
    # getstats on the old ABI: the current cookie is EINVAL there, the old one answers.
    assert await bridges.link_stats("ng1_web") == codec.LinkStats()


async def test_create_existing_is_eexist_and_leaves_nothing(
    sim: Sim, bridges: NetgraphBridges
) -> None:
    await bridges.create("em0", "ng0_web", "02:00:27:e7:1b:18")
    before = await sim.nodes()
    with pytest.raises(FileExistsError):
        await bridges.create("em0", "ng0_web", "02:00:27:e7:1b:19")
    assert (await sim.nodes()).keys() == before.keys()
    assert len([n for n in await sim.ifnets() if n.startswith("ng")]) == 1


async def test_failed_rename_rolls_back_eiface_and_new_bridge(
    sim: Sim, bridges: NetgraphBridges
) -> None:
    with pytest.raises(FileExistsError):
        await bridges.create("em0", "em1", "02:00:27:e7:1b:18")  # em1 is taken
    nodes = await sim.nodes()
    assert bridge_name("em0") not in nodes
    assert not [n for n in nodes.values() if n.type in ("eiface", "bridge")]
    assert not [n for n in await sim.ifnets() if n.startswith("ngeth")]
    sock = await bridges.socket()
    assert (await sock.ether_getpromisc("em0:"), await sock.ether_getautosrc("em0:")) == (0, 1)


async def test_failure_keeps_existing_bridge(sim: Sim, bridges: NetgraphBridges) -> None:
    await bridges.create("em0", "ng0_web", "02:00:27:e7:1b:18")
    with pytest.raises(FileExistsError):
        await bridges.create("em0", "em1", "02:00:27:e7:1b:19")
    assert await bridges.list() == [BridgedIfnet(name="ng0_web", parent="em0")]
    assert bridge_name("em0") in await sim.nodes()


async def test_missing_parent_is_enoent(sim: Sim, bridges: NetgraphBridges) -> None:
    with pytest.raises(FileNotFoundError):
        await bridges.create("em9", "ng0_web", "02:00:27:e7:1b:18")
    assert not [n for n in (await sim.nodes()).values() if n.type in ("eiface", "bridge")]


@pytest.mark.parametrize(
    ("parent", "ifname", "mac", "code"),
    [
        ("em0", "ng0_a_name_too_long", "02:00:00:00:00:01", errno.ENAMETOOLONG),
        ("em0", "ng0.web", "02:00:00:00:00:01", errno.EINVAL),
        ("em0", "ng0_web", "02:00:00:00:00", errno.EINVAL),
        ("em0", "ng0_web", "03:00:00:00:00:01", errno.EINVAL),
        ("", "ng0_web", "02:00:00:00:00:01", errno.EINVAL),
        ("em0_with_a_long_name", "ng0_web", "02:00:00:00:00:01", errno.ENAMETOOLONG),
    ],
)
async def test_bad_input_is_refused_before_any_change(
    sim: Sim, bridges: NetgraphBridges, parent: str, ifname: str, mac: str, code: int
) -> None:
    # OSError like the kernel's, never ValueError: the platform raises only OSError
    with pytest.raises(OSError, check=lambda exc: exc.errno == code):
        await bridges.create(parent, ifname, mac)
    assert not [n for n in (await sim.nodes()).values() if n.type in ("eiface", "bridge")]


async def test_destroy_missing_is_enoent(bridges: NetgraphBridges) -> None:
    with pytest.raises(FileNotFoundError):
        await bridges.destroy("ng0_web")


async def test_release_only_when_empty_and_resets_parent(
    sim: Sim, bridges: NetgraphBridges
) -> None:
    assert not await bridges.release("em0")  # no bridge at all
    await bridges.create("em0", "ng0_web", "02:00:27:e7:1b:18")
    assert not await bridges.release("em0")
    assert await bridges.destroy("ng0_web") == "em0"  # the last one: its bridge goes too
    assert "ng0_web" not in await sim.ifnets()
    assert bridge_name("em0") not in await sim.nodes()
    assert not await bridges.release("em0")
    sock = await bridges.socket()
    assert (await sock.ether_getpromisc("em0:"), await sock.ether_getautosrc("em0:")) == (0, 1)
    assert (await sock.nodeinfo("em0:")).hooks == 0


async def test_destroy_reaches_ifnet_inside_a_jail(sim: Sim, bridges: NetgraphBridges) -> None:
    await bridges.create("em0", "ng0_web", "02:00:27:e7:1b:18")
    jail = await sim.call(rpc.CreateJail(name="web", hostname="web"))
    assert isinstance(jail, rpc.Jid)
    await sim.call(rpc.MoveIfnet(name="ng0_web", jid=jail.jid))
    assert await bridges.list() == [BridgedIfnet(name="ng0_web", parent="em0")]
    await bridges.destroy("ng0_web")
    location = await sim.call(rpc.LocateIfnet(name="ng0_web"))
    assert location == rpc.Location(jid=None)


async def test_foreign_nodes_are_never_touched(sim: Sim, bridges: NetgraphBridges) -> None:
    sock = await bridges.socket()
    await sock.mkpeer("em1:", "bridge", "lower", "link0")
    await sock.name_node("em1:lower", "em1bridge")  # a jng bridge
    await sock.mkpeer("em1bridge:", "eiface", "link2", "ether")
    await sock.name_node("em1bridge:link2", "ng0_jng")
    assert await bridges.list() == []
    assert not await bridges.release("em1")
    with pytest.raises(NetgraphError) as caught:
        await bridges.create("em1", "ng0_web", "02:00:27:e7:1b:18")
    assert caught.value.errno == errno.EBUSY
    with pytest.raises(FileNotFoundError):
        await bridges.destroy("ng0_jng")
    nodes = await sim.nodes()
    assert {"em1bridge", "ng0_jng"} <= set(nodes)
    assert {h.name for h in nodes["em1bridge"].hooks} == {"link0", "link2"}
    assert not [n for n in nodes.values() if n.type == "eiface" and n.name != "ng0_jng"]


async def test_found_again_after_restart(sim: Sim) -> None:
    first = UplinkBridges(partial(open_sim_transport, sim.path), sim.rename_ifnet, sim.set_ifnet_up)
    await first.create("em0", "ng0_web", "02:00:27:e7:1b:18")
    await first.create("em1", "ng0_db", "02:00:27:e7:1b:28")
    await first.aclose()
    await first.aclose()  # idempotent
    second = UplinkBridges(
        partial(open_sim_transport, sim.path), sim.rename_ifnet, sim.set_ifnet_up
    )
    try:
        assert await second.list() == [
            BridgedIfnet(name="ng0_db", parent="em1"),
            BridgedIfnet(name="ng0_web", parent="em0"),
        ]
        await second.create("em0", "ng1_web", "02:00:27:e7:1b:38")  # reuses the bridge
        assert len([n for n in (await sim.nodes()).values() if n.type == "bridge"]) == 2
    finally:
        await second.aclose()


async def test_200_concurrent_eifaces_on_one_bridge(sim: Sim, bridges: NetgraphBridges) -> None:
    names = [f"ng{i}_w" for i in range(200)]

    async def add(i: int) -> None:
        await bridges.create("em0", names[i], f"02:00:00:00:{i // 256:02x}:{i % 256:02x}")

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(add, i)
    bridge = (await sim.nodes())[bridge_name("em0")]
    eiface_links = [h.name for h in bridge.hooks if h.name not in ("uplink1", "link0")]
    assert sorted(eiface_links) == sorted(f"link{n}" for n in range(1, 201))
    assert len({h.peer_id for h in bridge.hooks}) == 202 - 1  # ether appears on two hooks
    assert [b.name for b in await bridges.list()] == sorted(names)

    async def remove(name: str) -> None:
        await bridges.destroy(name)

    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(remove, name)
    assert not await bridges.release("em0")  # the last destroy released it
    assert bridge_name("em0") not in await sim.nodes()
    assert not [n for n in await sim.ifnets() if n.startswith("ng")]
    sock = await bridges.socket()
    assert (await sock.ether_getpromisc("em0:"), await sock.ether_getautosrc("em0:")) == (0, 1)


# The developer tool, python -m vimaged.ngtool.


def _tool(sim_process: str, *argv: str) -> int:
    return netgraph_tool.main(["--sim", sim_process, *argv])


def _promisc(sim_process: str) -> int:
    async def ask() -> int:
        async with open_sim_transport(sim_process) as t, open_ng_socket(t) as ng:
            return await ng.ether_getpromisc("em0:")

    return trio.run(ask)


MKPEER_TEXT = '{ type="bridge" ourhook="lower" peerhook="link0" }'


def test_tool_verbs(sim_process: str, capsys: pytest.CaptureFixture[str]) -> None:
    _rpc_sync(sim_process, rpc.Reset(nics=NICS, kernel=14))
    assert _tool(sim_process, "list") == 0
    listing = capsys.readouterr().out
    assert "em0" in listing
    assert "em1" in listing
    assert _tool(sim_process, "msg", "em0:", "setpromisc", "1") == 0
    assert _promisc(sim_process) == 1
    assert _tool(sim_process, "msg", "em0:", "mkpeer", MKPEER_TEXT) == 0
    assert _tool(sim_process, "show", "em0:") == 0
    assert "link0" in capsys.readouterr().out
    assert _tool(sim_process, "dot") == 0
    dot = capsys.readouterr().out
    assert dot.startswith("graph netgraph {")
    assert dot.count(" -- ") == 3  # lower to its node, link0 to its node, lower to link0


def test_tool_errors(sim_process: str) -> None:
    _rpc_sync(sim_process, rpc.Reset(nics=NICS, kernel=14))
    assert _tool(sim_process, "show", "em9:") == 71
    assert _tool(sim_process, "msg", "em0:", "nosuchcommand") == 71
    assert _tool(sim_process, "bogusverb") == 64
    if not sys.platform.startswith("freebsd"):
        assert netgraph_tool.main(["list"]) == 64


async def test_same_ifname_on_two_parents_at_once(sim: Sim, bridges: NetgraphBridges) -> None:
    outcomes: list[str] = []

    async def add(parent: str) -> None:
        try:
            await bridges.create(parent, "ng0_web", "02:00:27:e7:1b:18")
            outcomes.append("created")
        except FileExistsError:
            outcomes.append("EEXIST")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(add, "em0")
        nursery.start_soon(add, "em1")
    assert sorted(outcomes) == ["EEXIST", "created"]
    assert len(await bridges.list()) == 1
    assert len([n for n in (await sim.nodes()).values() if n.type == "eiface"]) == 1
    assert len([n for n in (await sim.nodes()).values() if n.type == "bridge"]) == 1


async def test_cancelled_create_leaves_nothing(sim: Sim) -> None:
    reached = trio.Event()

    async def stuck_rename(old: str, new: str) -> None:
        reached.set()
        await trio.sleep_forever()

    nb = UplinkBridges(partial(open_sim_transport, sim.path), stuck_rename, sim.set_ifnet_up)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(nb.create, "em0", "ng0_web", "02:00:27:e7:1b:18")
            await reached.wait()
            nursery.cancel_scope.cancel()
        assert not [n for n in (await sim.nodes()).values() if n.type in ("eiface", "bridge")]
        assert not [n for n in await sim.ifnets() if n.startswith("ng")]
        sock = await nb.socket()
        assert await sock.ether_getpromisc("em0:") == 0
    finally:
        await nb.aclose()


async def test_two_processes_share_one_bridge(sim: Sim) -> None:
    """Two sockets (as two daemons would have) racing to build and fill one bridge."""
    first, second = (
        UplinkBridges(partial(open_sim_transport, sim.path), sim.rename_ifnet, sim.set_ifnet_up)
        for _ in range(2)
    )
    try:

        async def add(nb: NetgraphBridges, i: int) -> None:
            await nb.create("em0", f"ng{i}_x", f"02:00:00:00:01:{i:02x}")

        async with trio.open_nursery() as nursery:
            for i in range(40):
                nursery.start_soon(add, (first, second)[i % 2], i)
        bridges = [n for n in (await sim.nodes()).values() if n.type == "bridge"]
        assert [b.name for b in bridges] == [bridge_name("em0")]
        links = [h.name for h in bridges[0].hooks if h.name not in ("uplink1", "link0")]
        assert sorted(links) == sorted(f"link{n}" for n in range(1, 41))
        assert len(await second.list()) == 40
    finally:
        await first.aclose()
        await second.aclose()


# What the bridges cost: requests and reply bytes, counted on the transport.


@pytest.fixture
async def counted(sim: Sim) -> AsyncIterator[tuple[NetgraphBridges, CountingTransport]]:
    transports: list[CountingTransport] = []

    @asynccontextmanager
    async def open_counting() -> AsyncIterator[NgTransport]:
        async with open_sim_transport(sim.path) as inner:
            transports.append(CountingTransport(inner))
            yield transports[-1]

    nb = UplinkBridges(open_counting, sim.rename_ifnet, sim.set_ifnet_up)
    try:
        await nb.socket()
        yield nb, transports[0]
    finally:
        await nb.aclose()


def _mac(i: int) -> str:
    return f"02:00:00:00:{i // 256:02x}:{i % 256:02x}"


async def _links(sim: Sim, parent: str = "em0") -> dict[str, str]:
    """Hook of the bridge -> name of the eiface on it, as the sim host has them."""
    nodes = await sim.nodes()
    by_id = {n.id: n.name for n in nodes.values()}
    return {
        h.name: by_id[h.peer_id]
        for h in nodes[bridge_name(parent)].hooks
        if nodes[by_id[h.peer_id]].type == "eiface"
    }


async def test_adding_to_a_big_bridge_costs_what_adding_to_a_small_one(
    counted: tuple[NetgraphBridges, CountingTransport],
) -> None:
    nb, transport = counted
    await nb.create("em0", "ng0_w", _mac(0))
    transport.take()
    await nb.create("em0", "ng1_w", _mac(1))
    small = transport.take()
    for i in range(2, 80):
        await nb.create("em0", f"ng{i}_w", _mac(i))
    transport.take()
    await nb.create("em0", "ng80_w", _mac(80))
    assert transport.take() == small
    # Stopping one of many: a destroy that finds the bridge still in use, at a fixed cost.
    assert await nb.destroy("ng40_w") is None
    requests, reply_bytes = transport.take()
    assert requests == 3  # the eiface's LISTHOOKS, its SHUTDOWN, one NODEINFO
    assert reply_bytes < 1000  # not the bridge's 80-link LISTHOOKS (~80 * 136 bytes)


async def test_list_asks_per_bridge_not_per_interface(
    sim: Sim, counted: tuple[NetgraphBridges, CountingTransport]
) -> None:
    nb, transport = counted
    for i in range(30):
        await nb.create(NICS[i % 2], f"ng{i}_w", _mac(i))
    await nb.destroy("ng7_w")
    transport.take()
    listed = await nb.list()
    # LISTNODES, then LISTHOOKS and GETIFNAME of each of the two bridges.
    assert transport.take()[0] == 5
    assert len(listed) == 29
    assert {b.name: b.parent for b in listed} == {
        f"ng{i}_w": NICS[i % 2] for i in range(30) if i != 7
    }


async def test_link_freed_here_is_reused(sim: Sim, bridges: NetgraphBridges) -> None:
    for i in range(4):
        await bridges.create("em0", f"ng{i}_w", _mac(i))
    await bridges.destroy("ng1_w")
    await bridges.create("em0", "ng9_w", _mac(9))
    assert (await _links(sim))["link2"] == eiface_name("ng9_w")


async def test_link_taken_by_another_process_is_skipped(sim: Sim) -> None:
    first, second = (
        UplinkBridges(partial(open_sim_transport, sim.path), sim.rename_ifnet, sim.set_ifnet_up)
        for _ in range(2)
    )
    try:
        await first.create("em0", "ng0_a", _mac(0))  # link1; first now knows the bridge
        await second.create("em0", "ng0_b", _mac(1))  # link2, which first believes free
        await second.create("em0", "ng1_b", _mac(2))  # link3
        await first.create("em0", "ng1_a", _mac(3))  # EEXIST on link2, learns, takes link4
        assert await _links(sim) == {
            "link1": eiface_name("ng0_a"),
            "link2": eiface_name("ng0_b"),
            "link3": eiface_name("ng1_b"),
            "link4": eiface_name("ng1_a"),
        }
    finally:
        await first.aclose()
        await second.aclose()


async def test_stale_views_never_decide(sim: Sim) -> None:
    """Another process empties and releases a bridge this process knew, then it is rebuilt."""
    first, second = (
        UplinkBridges(partial(open_sim_transport, sim.path), sim.rename_ifnet, sim.set_ifnet_up)
        for _ in range(2)
    )
    try:
        await first.create("em0", "ng0_a", _mac(0))
        await first.create("em0", "ng1_a", _mac(1))
        sock = await second.socket()
        for name in ("ng0_a", "ng1_a"):  # another process, killed before its release
            await sock.shutdown(eiface_name(name) + ":")
        # first still believes both links in use; its release finds the bridge empty.
        assert await first.release("em0")
        assert bridge_name("em0") not in await sim.nodes()
        await first.create("em0", "ng2_a", _mac(2))
        assert await second.destroy("ng2_a") == "em0"  # the last one: second releases
        # first's view says the bridge exists: mkpeer's ENOENT makes it build a new one.
        await first.create("em0", "ng3_a", _mac(3))
        assert await _links(sim) == {"link1": eiface_name("ng3_a")}
        assert await second.list() == [BridgedIfnet(name="ng3_a", parent="em0")]
        sock = await first.socket()
        assert (await sock.ether_getpromisc("em0:"), await sock.ether_getautosrc("em0:")) == (1, 0)
    finally:
        await first.aclose()
        await second.aclose()


async def test_losing_a_name_race_frees_only_its_own_link(
    sim: Sim, bridges: NetgraphBridges
) -> None:
    async def add(parent: str) -> None:
        with suppress(FileExistsError):
            await bridges.create(parent, "ng0_web", _mac(0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(add, "em0")
        nursery.start_soon(add, "em1")
    (winner,) = await bridges.list()
    loser = "em1" if winner.parent == "em0" else "em0"
    await bridges.create(winner.parent, "ng1_web", _mac(1))
    await bridges.create(loser, "ng2_web", _mac(2))
    assert await _links(sim, winner.parent) == {
        "link1": eiface_name("ng0_web"),
        "link2": eiface_name("ng1_web"),
    }
    assert await _links(sim, loser) == {"link1": eiface_name("ng2_web")}
    await bridges.destroy("ng0_web")
    await bridges.create(winner.parent, "ng3_web", _mac(3))
    assert (await _links(sim, winner.parent))["link1"] == eiface_name("ng3_web")


async def test_remove_strays_shuts_down_eifaces_a_killed_process_left_unnamed(
    sim: Sim, bridges: NetgraphBridges, sock: NgSocket
) -> None:
    await bridges.create("em0", "ng0_w", _mac(0))  # link1
    # A process killed between mkpeer and name_node: the eiface keeps ng_eiface's own name.
    await sock.mkpeer(bridge_name("em0") + ":", "eiface", "link5", "ether")
    stray = (await sock.nodeinfo(bridge_name("em0") + ":link5")).name
    assert stray.startswith("ngeth")
    assert [b.name for b in await bridges.list()] == ["ng0_w"]  # invisible to list()
    assert await bridges.remove_strays() == [BridgedIfnet(name=stray, parent="em0")]
    assert await _links(sim) == {"link1": eiface_name("ng0_w")}
    assert await bridges.remove_strays() == []
    assert await bridges.destroy("ng0_w") == "em0"  # nothing else holds the bridge


# Wiring, long and VLAN parents, parent NIC state (FreeBSD corrections, issues 11 and 15).


async def test_bridges_are_classic_by_default(sim: Sim) -> None:
    # With an uplink as first hook ng_bridge turns restrictive (ng_bridge_newhook:
    # priv->sendUnknown = 0) and jail-to-jail unicast is lost when learning fails.
    nb = NetgraphBridges(partial(open_sim_transport, sim.path), sim.rename_ifnet, sim.set_ifnet_up)
    try:
        await nb.create("em0", "ng0_web", "02:00:27:e7:1b:18")
        bridge = (await sim.nodes())[bridge_name("em0")]
        assert {h.name: h.peer_hook for h in bridge.hooks} == {
            "link0": "lower",
            "link1": "upper",
            "link2": "ether",
        }
        assert await nb.bridges() == [BridgeInfo(parent="em0", mode="classic", ifnets=("ng0_web",))]
    finally:
        await nb.aclose()


async def test_uplink_mode_is_built_on_request_and_falls_back_on_a_legacy_kernel(
    sim: Sim,
) -> None:
    for kernel, lower in ((14, "uplink1"), (12, "link0")):
        await sim.reset(kernel=kernel)
        nb = UplinkBridges(
            partial(open_sim_transport, sim.path), sim.rename_ifnet, sim.set_ifnet_up
        )
        try:
            await nb.create("em0", "ng0_web", "02:00:27:e7:1b:18")
            bridge = (await sim.nodes())[bridge_name("em0")]
            assert {h.peer_hook: h.name for h in bridge.hooks}["lower"] == lower
            [info] = await nb.bridges()
            assert info.mode == ("uplink" if kernel == 14 else "classic")
        finally:
            await nb.aclose()


async def test_an_uplink_bridge_is_adopted_then_rebuilt_classic_after_its_release(
    sim: Sim,
) -> None:
    old = UplinkBridges(partial(open_sim_transport, sim.path), sim.rename_ifnet, sim.set_ifnet_up)
    new = NetgraphBridges(partial(open_sim_transport, sim.path), sim.rename_ifnet, sim.set_ifnet_up)
    try:
        await old.create("em0", "ng0_a", "02:00:00:00:00:0a")
        await old.aclose()  # the daemon that built it is gone
        await new.create("em0", "ng1_a", "02:00:00:00:00:0b")
        assert await _links(sim) == {"link1": eiface_name("ng0_a"), "link2": eiface_name("ng1_a")}
        [info] = await new.bridges()
        assert (info.mode, info.ifnets) == ("uplink", ("ng0_a", "ng1_a"))
        assert [await new.destroy(name) for name in ("ng0_a", "ng1_a")] == [None, "em0"]
        await new.create("em0", "ng2_a", "02:00:00:00:00:0c")
        assert [b.mode for b in await new.bridges()] == ["classic"]
        assert await _links(sim) == {"link2": eiface_name("ng2_a")}
    finally:
        await new.aclose()


LONG_NIC = "vtnet1234567890"


@pytest.mark.parametrize("kernel", [14, 15])
async def test_a_15_character_parent_works_past_link10(sim: Sim, kernel: int) -> None:
    # vimaged_br_vtnet1234567890:link2 is 32 characters: FreeBSD 15's ngc_send refuses it
    # (sg_len > 34, EINVAL); the binding addresses links as [id]:linkN instead.
    assert len(LONG_NIC) == 15
    await sim.call(rpc.Reset(nics=["em0", LONG_NIC], kernel=kernel))
    nb = NetgraphBridges(partial(open_sim_transport, sim.path), sim.rename_ifnet, sim.set_ifnet_up)
    names = [f"ng{i}_long" for i in range(12)]
    try:
        for i, name in enumerate(names):
            await nb.create(LONG_NIC, name, f"02:00:00:00:01:{i:02x}")
        assert await nb.list() == [BridgedIfnet(name=n, parent=LONG_NIC) for n in sorted(names)]
        assert await nb.link_stats(names[-1]) == codec.LinkStats()
        assert not await nb.release(LONG_NIC)
        assert [await nb.destroy(name) for name in names] == [None] * 11 + [LONG_NIC]
        assert bridge_name(LONG_NIC) not in await sim.nodes()
    finally:
        await nb.aclose()


async def test_a_vlan_parent_is_bridged_end_to_end(sim: Sim) -> None:
    # ng_ether_sanitize_ifname: the node of igb0.100 is igb0_100 (sys/netgraph/ng_ether.c).
    await sim.call(rpc.Reset(nics=["igb0", "igb0.100"], kernel=14))
    nb = NetgraphBridges(partial(open_sim_transport, sim.path), sim.rename_ifnet, sim.set_ifnet_up)
    try:
        await nb.create("igb0.100", "ng0_vlan", "02:00:00:00:02:01")
        nodes = await sim.nodes()
        assert nodes["igb0_100"].type == "ether"
        assert {h.name for h in nodes["igb0_100"].hooks} == {"lower", "upper"}
        assert "igb0" not in {n for n, rec in nodes.items() if rec.hooks}
        assert await nb.list() == [BridgedIfnet(name="ng0_vlan", parent="igb0.100")]
        # the parent is found again from the ether node: igb0_100 is igb0.100 (GETIFNAME)
        assert await nb.destroy("ng0_vlan") == "igb0.100"
        assert bridge_name("igb0.100") not in await sim.nodes()
    finally:
        await nb.aclose()


@pytest.fixture
async def platform(sim: Sim, tmp_path: Path) -> AsyncIterator[SimPlatform]:
    plat = SimPlatform(SimOptions(sim_host=sim.path, state_dir=str(tmp_path)))
    try:
        yield plat
    finally:
        await plat.aclose()


async def test_a_down_parent_is_raised_while_bridged_and_lowered_on_release(
    sim: Sim, platform: SimPlatform
) -> None:
    # ng_ether_rcv_lower drops every frame to a parent lacking IFF_UP|IFF_DRV_RUNNING.
    await sim.call(rpc.SetIfnetUp(name="em1", up=False))
    await sim.call(rpc.SetIfnetUp(name="em0", up=True))
    await platform.create_bridged_ifnet("em1", "ng0_a", "02:00:00:00:03:01")
    await platform.create_bridged_ifnet("em0", "ng0_b", "02:00:00:00:03:02")
    ifnets = await sim.ifnets()
    assert ifnets["em1"].up
    assert ifnets["em0"].up
    # each bridge goes with its last interface: destroy says whose
    assert await platform.destroy_bridged_ifnet("ng0_a") == "em1"
    assert await platform.destroy_bridged_ifnet("ng0_b") == "em0"
    ifnets = await sim.ifnets()
    assert not ifnets["em1"].up  # was down: down again
    assert ifnets["em0"].up  # was up: left up


async def test_bridged_offloads_are_off_while_bridged_and_only_those_come_back(
    sim: Sim, platform: SimPlatform
) -> None:
    before = (await sim.ifnets())["em1"]
    assert before.capenable & BRIDGED_OFFLOADS_OFF == BRIDGED_OFFLOADS_OFF
    kept_off = IFCAP_TSO6  # the admin had -tso6: it must stay off after release
    await sim.call(rpc.SetCapabilities(name="em1", enabled=before.capenable & ~kept_off))
    await platform.create_bridged_ifnet("em1", "ng0_a", "02:00:00:00:03:01")
    during = (await sim.ifnets())["em1"]
    assert during.capenable & BRIDGED_OFFLOADS_OFF == 0
    assert during.capenable == before.capenable & ~BRIDGED_OFFLOADS_OFF  # checksums kept
    assert await platform.destroy_bridged_ifnet("ng0_a") == "em1"
    assert (await sim.ifnets())["em1"].capenable == before.capenable & ~kept_off


async def test_destroy_releases_the_bridge_only_with_its_last_interface(
    sim: Sim, platform: SimPlatform
) -> None:
    await platform.create_bridged_ifnet("em0", "ng0_a", "02:00:00:00:03:01")
    await platform.create_bridged_ifnet("em0", "ng0_b", "02:00:00:00:03:02")
    assert await platform.destroy_bridged_ifnet("ng0_a") is None
    assert bridge_name("em0") in await sim.nodes()
    assert await platform.destroy_bridged_ifnet("ng0_b") == "em0"
    assert bridge_name("em0") not in await sim.nodes()
    async with open_sim_transport(sim.path) as transport, open_ng_socket(transport) as ng:
        assert await ng.ether_getpromisc("em0:") == 0
    with pytest.raises(FileNotFoundError):
        await platform.destroy_bridged_ifnet("ng0_b")


async def test_an_interface_shut_down_behind_our_back_still_releases_its_bridge(
    sim: Sim, platform: SimPlatform
) -> None:
    await platform.create_bridged_ifnet("em1", "ng0_a", "02:00:00:00:03:01")
    async with open_sim_transport(sim.path) as transport, open_ng_socket(transport) as ng:
        await ng.shutdown(eiface_name("ng0_a") + ":")  # ngctl shutdown by somebody else
    with pytest.raises(FileNotFoundError):
        await platform.destroy_bridged_ifnet("ng0_a")
    assert bridge_name("em1") not in await sim.nodes()  # this process knew its link


async def test_a_destroy_and_a_create_on_one_parent_serialize_on_the_platforms_lock(
    sim: Sim, platform: SimPlatform
) -> None:
    # The only per-parent lock is the platform's: the domain takes none (issue 12).
    await platform.create_bridged_ifnet("em0", "ng0_a", "02:00:00:00:03:01")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(platform.destroy_bridged_ifnet, "ng0_a")
        nursery.start_soon(platform.create_bridged_ifnet, "em0", "ng0_b", "02:00:00:00:03:02")
    assert [(b.name, b.parent) for b in await platform.list_bridged_ifnets()] == [("ng0_b", "em0")]
    assert await platform.destroy_bridged_ifnet("ng0_b") == "em0"


async def test_reconciliation_releases_an_empty_bridge_and_restores_its_parent(
    sim: Sim, platform: SimPlatform
) -> None:
    await sim.call(rpc.SetIfnetUp(name="em1", up=False))
    await platform.create_bridged_ifnet("em1", "ng0_a", "02:00:00:00:03:01")
    async with open_sim_transport(sim.path) as transport, open_ng_socket(transport) as ng:
        # a daemon killed between shutting down the last eiface and releasing the bridge
        await ng.shutdown(eiface_name("ng0_a") + ":")
    assert bridge_name("em1") in await sim.nodes()
    fresh = SimPlatform(SimOptions(sim_host=sim.path, state_dir=platform.options.state_dir))
    try:
        assert await fresh.reconcile_strays() == []
    finally:
        await fresh.aclose()
    assert bridge_name("em1") not in await sim.nodes()
    assert not (await sim.ifnets())["em1"].up
    async with open_sim_transport(sim.path) as transport, open_ng_socket(transport) as ng:
        assert await ng.ether_getpromisc("em1:") == 0


async def test_platform_reports_bridges_and_link_counters(sim: Sim, platform: SimPlatform) -> None:
    await platform.create_bridged_ifnet("em0", "ng0_a", "02:00:00:00:03:01")
    assert await platform.list_bridges() == [
        BridgeInfo(parent="em0", mode="classic", ifnets=("ng0_a",))
    ]
    assert await platform.bridged_ifnet_stats("ng0_a") == LinkCounters()
    with pytest.raises(FileNotFoundError):
        await platform.bridged_ifnet_stats("ng9_none")


async def test_a_failed_create_that_built_the_bridge_restores_the_parent(
    sim: Sim, platform: SimPlatform
) -> None:
    await sim.call(rpc.SetIfnetUp(name="em0", up=False))
    before = (await sim.ifnets())["em0"].capenable
    with pytest.raises(FileExistsError):
        await platform.create_bridged_ifnet("em0", "em1", "02:00:27:e7:1b:18")  # em1 is taken
    assert bridge_name("em0") not in await sim.nodes()
    em0 = (await sim.ifnets())["em0"]
    assert (em0.up, em0.capenable) == (False, before)
