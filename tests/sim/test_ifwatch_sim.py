"""Sim tier: NICs that come and go on the simulated host, seen through Platform.watch_ifnets
and vimaged.ifwatch (issue 13 item 5)."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

import pytest
import trio

from vimaged import platforms
from vimaged.ifwatch import IfnetWatcher
from vimaged.platforms.ifnet_events import LOST, IfnetEvent
from vimaged.platforms.sim import SimOptions, SimPlatform
from vimaged.simhost import rpc

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from tests.sim.conftest import SimHostHandle

pytestmark = pytest.mark.sim


@pytest.fixture
async def plat(sim_host: SimHostHandle, tmp_path: Path) -> AsyncIterator[SimPlatform]:
    platform = SimPlatform(SimOptions(sim_host=sim_host.socket_path, state_dir=str(tmp_path)))
    try:
        yield platform
    finally:
        await platform.aclose()


async def next_event(events: AsyncIterator[IfnetEvent]) -> IfnetEvent:
    with trio.fail_after(5):
        return await anext(events)


async def test_a_plugged_nic_attaches_and_an_unplugged_one_detaches(
    sim_host: SimHostHandle, plat: SimPlatform
) -> None:
    async with plat.watch_ifnets() as events:
        sim_host.plug_nic("ue0")
        assert await next_event(events) == IfnetEvent(kind="attach", name="ue0")
        assert sim_host.vnet_of("ue0") == 0
        sim_host.plug_nic("ue0", plugged=False)
        assert await next_event(events) == IfnetEvent(kind="detach", name="ue0")
        assert sim_host.vnet_of("ue0") is None


async def test_vnet_moves_are_detach_and_attach_and_renames_show_from_any_vnet(
    sim_host: SimHostHandle, plat: SimPlatform
) -> None:
    jid = await plat.create_jail(platforms.JailSpec(name="web", hostname="web"))
    async with plat.watch_ifnets() as events:
        await plat.move_ifnet("em1", jid)  # if_vmove: if_detach_internal in the host's vnet
        assert await next_event(events) == IfnetEvent(kind="detach", name="em1")
        # inside the jail: if_rename notifies whatever the vnet
        sim_host.call(rpc.RenameIfnet(name="em1", newname="lan0", jid=jid))
        assert await next_event(events) == IfnetEvent(kind="rename", name="em1", newname="lan0")
        await plat.reclaim_ifnet("lan0", jid)  # home under the name it has now
        assert await next_event(events) == IfnetEvent(kind="attach", name="lan0")
        # a NIC pulled out while inside a jail detaches there: nothing on the host's devctl
        await plat.move_ifnet("lan0", jid)
        assert await next_event(events) == IfnetEvent(kind="detach", name="lan0")
        sim_host.plug_nic("lan0", plugged=False)
        sim_host.plug_nic("em7")
        assert await next_event(events) == IfnetEvent(kind="attach", name="em7")


async def test_a_sim_host_reboot_is_a_lost_event(
    sim_host: SimHostHandle, plat: SimPlatform
) -> None:
    async with plat.watch_ifnets() as events:
        sim_host.reset(nics=["em0"])
        assert await next_event(events) == LOST
        sim_host.plug_nic("em1")
        assert await next_event(events) == IfnetEvent(kind="attach", name="em1")


def test_plugging_refuses_taken_names_and_unplugging_what_is_no_nic(
    sim_host: SimHostHandle,
) -> None:
    cases = [("em0", True, errno.EEXIST), ("em9", False, errno.ENXIO), ("lo0", False, errno.ENXIO),
             ("em", True, errno.EINVAL)]  # fmt: skip
    for name, plugged, code in cases:
        with pytest.raises(OSError) as info:  # noqa: PT011 (the errno is checked)
            sim_host.plug_nic(name, plugged=plugged)
        assert info.value.errno == code, name


async def test_unplugging_a_parent_removes_its_ng_ether_node(sim_host: SimHostHandle) -> None:
    assert any(n.name == "em1" and n.type == "ether" for n in sim_host.ng_nodes())
    sim_host.plug_nic("em1", plugged=False)
    assert not any(n.name == "em1" for n in sim_host.ng_nodes())
    sim_host.plug_nic("em1")  # ether_ifattach → ng_ether_attach: a node again
    assert any(n.name == "em1" and n.type == "ether" for n in sim_host.ng_nodes())


async def test_watcher_lists_on_subscribe_then_follows_plugs(
    sim_host: SimHostHandle, plat: SimPlatform
) -> None:
    sim_host.plug_nic("ue0")  # before the watcher: found by the first listing
    watcher = IfnetWatcher(plat)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(watcher.serve)
            assert watcher.watching
            assert watcher.present >= {"em0", "em1", "ue0"}
            assert watcher.is_present("ue1") is False
            async with trio.open_nursery() as waiters:
                waiters.start_soon(watcher.wait_present, "ue1")
                await trio.sleep(0.05)
                sim_host.plug_nic("ue1")
            assert watcher.is_present("ue1")
            sim_host.plug_nic("em1", plugged=False)
            await watcher.wait_absent("em1")
            # a reboot loses the log: the watcher lists again and finds em1 back
            sim_host.reset()
            await watcher.wait_present("em1")
            await watcher.wait_absent("ue0")
            nursery.cancel_scope.cancel()
