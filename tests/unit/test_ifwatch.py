"""Unit tier: vimaged.ifwatch on a scripted platform and trio's autojump clock.

The platform here is a test double of the two methods the watcher uses: ``list_ifnets``
answers from ``names`` and ``watch_ifnets`` yields what the test sends, or fails to open
while ``watch_errno`` is set.
"""

from __future__ import annotations

import errno
import os
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

import pytest
import trio
import trio.testing

from vimaged.ifwatch import RETRY_MAX_DELAY, IfnetWatcher
from vimaged.platforms import IfnetInfo
from vimaged.platforms.ifnet_events import LOST, IfnetEvent

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from vimaged.platforms import Platform

pytestmark = pytest.mark.unit


class ScriptedHost:
    def __init__(self, *names: str) -> None:
        self.names = set(names)
        self.listings = 0
        self.watch_errno: int | None = None
        self.subscriptions = 0
        self.send: trio.MemorySendChannel[IfnetEvent] | None = None

    async def list_ifnets(self, jid: int = 0) -> list[IfnetInfo]:
        self.listings += 1
        await trio.lowlevel.checkpoint()
        return [IfnetInfo(name=n) for n in sorted(self.names)]

    @asynccontextmanager
    async def watch_ifnets(self) -> AsyncIterator[AsyncIterator[IfnetEvent]]:
        if self.watch_errno is not None:
            raise OSError(self.watch_errno, os.strerror(self.watch_errno), "devd")
        send, receive = trio.open_memory_channel[IfnetEvent](16)
        self.send = send
        self.subscriptions += 1
        async with receive:
            yield receive

    async def emit(self, event: IfnetEvent) -> None:
        assert self.send is not None
        await self.send.send(event)
        await trio.testing.wait_all_tasks_blocked()


def watcher_of(host: ScriptedHost, **kw: Any) -> IfnetWatcher:
    return IfnetWatcher(cast("Platform", host), **kw)


async def test_events_change_presence_and_wake_waiters(
    autojump_clock: trio.testing.MockClock,
) -> None:
    host = ScriptedHost("em0", "lo0")
    watcher = watcher_of(host)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(watcher.serve)
            assert watcher.present == {"em0", "lo0"}
            async with trio.open_nursery() as waiting:
                waiting.start_soon(watcher.wait_present, "ue0")
                await trio.testing.wait_all_tasks_blocked()
                host.names.add("ue0")  # the kernel's truth, then its event
                await host.emit(IfnetEvent(kind="attach", name="ue0"))
            await host.emit(IfnetEvent(kind="detach", name="em0"))
            assert watcher.is_present("em0") is False
            await watcher.wait_absent("em0")
            nursery.cancel_scope.cancel()


async def test_lost_and_rename_events_list_again(autojump_clock: trio.testing.MockClock) -> None:
    host = ScriptedHost("em0", "em1")
    watcher = watcher_of(host)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(watcher.serve)
            host.names = {"em0", "vlan5"}  # changes whose events were dropped
            await host.emit(LOST)
            assert watcher.present == {"em0", "vlan5"}
            # a rename inside a jail (devd reports those too) must not rename a host NIC
            await host.emit(IfnetEvent(kind="rename", name="em0", newname="lan0"))
            assert watcher.present == {"em0", "vlan5"}
            nursery.cancel_scope.cancel()


async def test_without_a_watch_it_polls_and_keeps_trying(
    autojump_clock: trio.testing.MockClock,
) -> None:
    host = ScriptedHost("em0")
    host.watch_errno = errno.ENOENT  # devd not running
    watcher = watcher_of(host, resync_interval=10.0)
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(watcher.serve)
            assert not watcher.watching
            assert watcher.present == {"em0"}  # listed once anyway
            host.names.add("em1")
            await watcher.wait_present("em1")  # found by the periodic listing
            host.watch_errno = None  # devd is back
            await trio.sleep(RETRY_MAX_DELAY + 1)
            assert watcher.watching
            assert host.subscriptions == 1
            nursery.cancel_scope.cancel()


async def test_a_listing_overtaken_by_events_is_taken_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    host = ScriptedHost("em0")
    watcher = watcher_of(host)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(watcher.serve)
            listed = host.listings
            real_list = host.list_ifnets

            async def slow_list(jid: int = 0) -> list[IfnetInfo]:
                answer = [IfnetInfo(name=n) for n in sorted(host.names)]  # taken now...
                host.names.add("ue0")
                await host.emit(IfnetEvent(kind="attach", name="ue0"))  # ...overtaken
                host.list_ifnets = real_list  # type: ignore[method-assign]
                return answer

            host.list_ifnets = slow_list  # type: ignore[method-assign]
            await watcher.resync()
            assert watcher.present == {"em0", "ue0"}
            assert host.listings == listed + 1  # the stale one discarded, listed again
            nursery.cancel_scope.cancel()


def test_resync_interval_is_checked() -> None:
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="resync_interval"):
            watcher_of(ScriptedHost(), resync_interval=bad)
