"""Kernel-assigned bridge link numbers (issue 11 item 5) on the simulated kernel, 14 and 15.

FreeBSD 15's ng_bridge numbers a bare ``link`` hook itself (``ng_bridge_newhook``, D44615);
14 answers EINVAL. NetgraphBridges probes once and uses it on 15, its own numbering on 14.
A "kill" is a transport that stops after k requests, so the kernel is left exactly as a
SIGKILL after step k leaves it (no rollback reaches it), then closed like a dead process's.
"""

from __future__ import annotations

import ctypes
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import pytest
import trio

from vimaged.netgraph import abi, codec
from vimaged.netgraph.structs import NgMesgHeader
from vimaged.platforms import BridgedIfnet
from vimaged.platforms.netgraph_bridges import (
    EIFACE_PREFIX,
    NetgraphBridges,
    bridge_name,
    eiface_name,
)
from vimaged.platforms.sim_transport import open_sim_transport
from vimaged.simhost import rpc

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from tests.sim.conftest import SimHostHandle
    from vimaged.netgraph.transport import NgTransport

pytestmark = pytest.mark.sim

HEADER = ctypes.sizeof(NgMesgHeader)


class Killed(BaseException):
    """The process died: nothing after this reaches the kernel, not even a rollback."""


Step = tuple[int, str, bytes]
"""A request as sent: ``(generic command or -1, path, args)``."""


class RecordingTransport:
    """An NgTransport that records each request and, once ``kill_after`` matched one, dies."""

    def __init__(self, inner: NgTransport) -> None:
        self.inner = inner
        self.sent: list[Step] = []
        self.kill_after: Callable[[Step], bool] | None = None
        self.dead = False
        self.reply_bytes = 0

    async def bind(self, sockaddr: bytes) -> None:
        await self.inner.bind(sockaddr)

    async def sendto(self, message: bytes, sockaddr: bytes) -> None:
        if self.dead:
            raise Killed
        header = NgMesgHeader.from_buffer_copy(message[:HEADER])
        command = header.cmd if header.typecookie == abi.NGM_GENERIC_COOKIE else -1
        step = (command, abi.unpack_sockaddr(sockaddr), message[HEADER:])
        self.sent.append(step)
        await self.inner.sendto(message, sockaddr)
        self.dead = self.kill_after is not None and self.kill_after(step)

    async def recvfrom(self) -> tuple[bytes, bytes]:
        message, source = await self.inner.recvfrom()
        self.reply_bytes += len(message)
        return message, source

    async def set_rcvbuf(self, size: int) -> None:
        await self.inner.set_rcvbuf(size)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _bridges(sim_host: SimHostHandle) -> tuple[NetgraphBridges, list[RecordingTransport]]:
    opened: list[RecordingTransport] = []

    @asynccontextmanager
    async def open_transport() -> AsyncIterator[NgTransport]:
        async with open_sim_transport(sim_host.socket_path) as inner:
            transport = RecordingTransport(inner)
            opened.append(transport)
            yield transport

    async def rename(old: str, new: str) -> None:
        await trio.to_thread.run_sync(sim_host.call, rpc.RenameIfnet(name=old, newname=new))

    async def up(name: str) -> None:
        await trio.to_thread.run_sync(sim_host.call, rpc.SetIfnetUp(name=name))

    return NetgraphBridges(open_transport, rename, up), opened


def _links(sim_host: SimHostHandle, parent: str = "em0") -> dict[str, str]:
    """Hook of the bridge -> name of the eiface on it, as the sim host has them."""
    nodes = {n.id: n for n in sim_host.ng_nodes()}
    bridge = next(n for n in nodes.values() if n.name == bridge_name(parent))
    return {
        h.name: nodes[h.peer_id].name
        for h in bridge.hooks
        if nodes[h.peer_id].type == abi.NG_EIFACE_NODE_TYPE
    }


def _eifaces(sim_host: SimHostHandle) -> dict[str, int]:
    """Every eiface node -> its number of hooks."""
    return {n.name: len(n.hooks) for n in sim_host.ng_nodes() if n.type == abi.NG_EIFACE_NODE_TYPE}


def _graph(sim_host: SimHostHandle) -> set[tuple[str, str]]:
    """``(name, type)`` of every node but the sockets (a process's own)."""
    return {(n.name, n.type) for n in sim_host.ng_nodes() if n.type != "socket"}


def _mac(i: int) -> str:
    return f"02:00:00:00:05:{i:02x}"


@pytest.mark.parametrize("kernel", [13, 14, 15])
async def test_links_are_numbered_by_the_kernel_on_15_and_by_vimaged_before(
    sim_host: SimHostHandle, kernel: int
) -> None:
    sim_host.reset(kernel=kernel)
    nb, opened = _bridges(sim_host)
    try:
        for i in range(3):
            await nb.create("em0", f"ng{i}_k", _mac(i))
        (transport,) = opened
        assert _links(sim_host) == {f"link{2 + i}": eiface_name(f"ng{i}_k") for i in range(3)}
        await nb.destroy("ng1_k")
        transport.sent.clear()
        await nb.create("em0", "ng3_k", _mac(3))  # the lowest free link again: link3
        assert _links(sim_host)["link3"] == eiface_name("ng3_k")
        connects = [
            codec.decode_connect(args) for cmd, _, args in transport.sent if cmd == abi.NGM_CONNECT
        ]
        mkpeers = [
            codec.decode_mkpeer(args)[1:]
            for cmd, _, args in transport.sent
            if cmd == abi.NGM_MKPEER
        ]
        if kernel == 15:  # made on our socket node, then linked to the bare hook
            assert connects == [(f"[{_bridge_id(sim_host):x}]:", "ether", "link")]
            assert mkpeers == [(eiface_name("ng3_k"), "ether")]
        else:  # probed once (by the first create), then N chosen here
            assert connects == []
            assert mkpeers == [("link3", "ether")]
        assert await nb.list() == [
            BridgedIfnet(name=n, parent="em0") for n in ("ng0_k", "ng2_k", "ng3_k")
        ]
        assert await nb.link_stats("ng3_k") == codec.LinkStats()  # link number from its side
        assert _eifaces(sim_host) == {eiface_name(n): 1 for n in ("ng0_k", "ng2_k", "ng3_k")}
    finally:
        await nb.aclose()


async def test_on_15_an_add_costs_the_same_on_a_big_bridge(sim_host: SimHostHandle) -> None:
    # N is read from the eiface's one hook, never from a LISTHOOKS of the bridge.
    sim_host.reset(kernel=15)
    nb, opened = _bridges(sim_host)
    try:
        await nb.socket()
        (transport,) = opened
        costs = []
        for i in range(40):
            requests, replied = len(transport.sent), transport.reply_bytes
            await nb.create("em0", f"ng{i}_c", _mac(i))
            costs.append((len(transport.sent) - requests, transport.reply_bytes - replied))
        assert costs[2] == costs[39]
    finally:
        await nb.aclose()


def _bridge_id(sim_host: SimHostHandle, parent: str = "em0") -> int:
    return next(n.id for n in sim_host.ng_nodes() if n.name == bridge_name(parent))


async def test_the_probe_on_14_is_made_once_and_leaves_nothing_behind(
    sim_host: SimHostHandle,
) -> None:
    nb, opened = _bridges(sim_host)
    try:
        await nb.create("em0", "ng0_p", _mac(0))
        await nb.create("em0", "ng1_p", _mac(1))
        (transport,) = opened
        probes = [
            path
            for cmd, path, _ in transport.sent
            if cmd == abi.NGM_CONNECT and path.startswith(EIFACE_PREFIX)
        ]
        assert probes == [eiface_name("ng0_p") + ":"]  # refused (EINVAL), never asked again
        assert _eifaces(sim_host) == {eiface_name("ng0_p"): 1, eiface_name("ng1_p"): 1}
        assert _links(sim_host) == {"link2": eiface_name("ng0_p"), "link3": eiface_name("ng1_p")}
    finally:
        await nb.aclose()


def _is(command: int, path_end: str = "") -> Callable[[Step], bool]:
    return lambda step: step[0] == command and step[1].endswith(path_end)


STEPS = {
    "named": _is(abi.NGM_NAME),
    "unhooked": _is(abi.NGM_RMHOOK),
    "connected": _is(abi.NGM_CONNECT),
    "numbered": _is(abi.NGM_LISTHOOKS, eiface_name("ng1_a") + ":"),
}
"""The steps of a create on 15 after which a kill leaves a named eiface (netgraph_autolink)."""


@pytest.mark.parametrize("step", list(STEPS))
async def test_a_kill_between_steps_leaves_what_reconciliation_removes(
    sim_host: SimHostHandle, step: str
) -> None:
    sim_host.reset(kernel=15)
    first, _ = _bridges(sim_host)
    try:
        await first.create("em0", "ng0_a", _mac(0))  # builds the bridge, probes: 15 numbers
    finally:
        await first.aclose()
    before = _graph(sim_host)
    killed, opened = _bridges(sim_host)
    await killed.socket()
    opened[0].kill_after = STEPS[step]
    with pytest.raises(Killed):
        await killed.create("em0", "ng1_a", _mac(1))
    await killed.aclose()  # the dead process's socket node goes, with its hooks
    assert eiface_name("ng1_a") in _eifaces(sim_host)  # named: ours by name
    # A restarted daemon: the unjournaled ng1_a is an orphan, removed as such.
    again, _ = _bridges(sim_host)
    try:
        assert await again.reconcile_strays() == []
        parent = "em0" if step in ("connected", "numbered") else ""
        assert BridgedIfnet(name="ng1_a", parent=parent) in await again.list()
        assert await again.destroy("ng1_a") is None  # ng0_a still holds the bridge
        assert _eifaces(sim_host) == {eiface_name("ng0_a"): 1}
        assert _graph(sim_host) == before
    finally:
        await again.aclose()


async def test_a_kill_between_mkpeer_and_name_leaves_an_eiface_that_is_not_provably_ours(
    sim_host: SimHostHandle,
) -> None:
    # The one-request window: an unnamed eiface on no hook, as `ngctl mkpeer . eiface`
    # leaves one. It carries nothing of ours, so reconciliation must leave it alone.
    sim_host.reset(kernel=15)
    killed, opened = _bridges(sim_host)
    await killed.create("em0", "ng0_b", _mac(0))
    opened[0].kill_after = _is(abi.NGM_MKPEER)
    with pytest.raises(Killed):
        await killed.create("em0", "ng1_b", _mac(1))
    await killed.aclose()
    # ng_eiface_constructor names the node after its ifnet (ngethN): not our name
    left = {name: hooks for name, hooks in _eifaces(sim_host).items() if name.startswith("ngeth")}
    assert list(left.values()) == [0]
    again, _ = _bridges(sim_host)
    try:
        assert await again.reconcile_strays() == []
        assert await again.list() == [BridgedIfnet(name="ng0_b", parent="em0")]
        assert set(left) <= set(_eifaces(sim_host))  # left alone
    finally:
        await again.aclose()
