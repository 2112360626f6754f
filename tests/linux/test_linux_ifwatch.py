"""Linux tier: interface arrival and departure in the platform's host namespace (rtnetlink)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio

from vimaged.ifwatch import IfnetWatcher
from vimaged.platforms import JailSpec
from vimaged.platforms.ifnet_events import IfnetEvent

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.linux.conftest import World
    from vimaged.platforms.linux import LinuxPlatform

pytestmark = pytest.mark.linux


async def next_event(events: AsyncIterator[IfnetEvent]) -> IfnetEvent:
    with trio.fail_after(5):
        return await anext(events)


async def test_links_added_renamed_moved_and_deleted_are_events(
    world: World, plat: LinuxPlatform
) -> None:
    jid = await plat.create_jail(JailSpec(name="web", hostname="web"))
    async with plat.watch_ifnets() as events:
        world.ip("link", "add", "nic0", "type", "veth", "peer", "name", "peer0",
                 "netns", world.lan, netns=world.host)  # fmt: skip
        assert await next_event(events) == IfnetEvent(kind="attach", name="nic0")
        world.ip("link", "set", "nic0", "name", "uplink", netns=world.host)
        assert await next_event(events) == IfnetEvent(kind="rename", name="nic0", newname="uplink")
        await plat.move_ifnet("uplink", jid)  # leaves the host namespace
        assert await next_event(events) == IfnetEvent(kind="detach", name="uplink")
        await plat.reclaim_ifnet("uplink", jid)
        assert await next_event(events) == IfnetEvent(kind="attach", name="uplink")
        world.ip("link", "del", "uplink", netns=world.host)
        assert await next_event(events) == IfnetEvent(kind="detach", name="uplink")
        # the lan namespace (not the platform's host) changes nothing here
        world.ip("link", "add", "other0", "type", "veth", "peer", "name", "other1",
                 netns=world.lan)  # fmt: skip
        world.ip("link", "add", "nic1", "type", "veth", "peer", "name", "peer1",
                 "netns", world.lan, netns=world.host)  # fmt: skip
        assert await next_event(events) == IfnetEvent(kind="attach", name="nic1")
    await plat.remove_jail(jid)


async def test_watcher_waits_for_a_late_nic_and_sees_it_go(
    world: World, plat: LinuxPlatform
) -> None:
    watcher = IfnetWatcher(plat)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(watcher.serve)
            assert watcher.watching
            assert watcher.is_present("late0") is False
            assert watcher.is_present("lo") is True
            world.add_nic("late0", "peer0")
            await watcher.wait_present("late0")
            world.ip("link", "del", "late0", netns=world.host)
            await watcher.wait_absent("late0")
            nursery.cancel_scope.cancel()
