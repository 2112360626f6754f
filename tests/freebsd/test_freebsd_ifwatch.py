"""FreeBSD tier: interface arrival and departure from the real devd (root, devd running).

An epair(4) made and destroyed while subscribed is an ATTACH and a DETACH of each end
(if_attach_internal, if_detach_internal); moving one end into a jail is a DETACH on the host
and reclaiming it an ATTACH (if_vmove). Skipped elsewhere with the reason tests/conftest.py
gives.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
import trio

from vimaged.ifwatch import IfnetWatcher
from vimaged.platforms import JailSpec, freebsd
from vimaged.platforms.freebsd_devd import DEVD_SEQPACKET_PIPE
from vimaged.platforms.ifnet_events import IfnetEvent

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

pytestmark = pytest.mark.freebsd


@pytest.fixture
def devd_running() -> None:
    if not os.path.exists(DEVD_SEQPACKET_PIPE):
        pytest.skip("devd is not running (service devd onestart)")


@pytest.fixture
async def plat(tmp_path: Path, devd_running: None) -> AsyncIterator[freebsd.FreeBSDPlatform]:
    platform = freebsd.create(run_dir=str(tmp_path / "run"))
    try:
        yield platform
    finally:
        await platform.aclose()


async def ifconfig(*args: str, check: bool = True) -> str:
    result = await trio.run_process(["ifconfig", *args], capture_stdout=True, check=check)
    return result.stdout.decode().strip()


async def destroy(ifname: str) -> None:
    with trio.move_on_after(5, shield=True):
        await ifconfig(ifname, "destroy", check=False)


async def until(events: AsyncIterator[IfnetEvent], wanted: IfnetEvent) -> None:
    """Read events until ``wanted`` (the host may announce others meanwhile)."""
    with trio.fail_after(10):
        async for event in events:
            if event == wanted:
                return


async def test_epair_create_move_and_destroy_are_events(plat: freebsd.FreeBSDPlatform) -> None:
    async with plat.watch_ifnets() as events:
        a = await ifconfig("epair", "create")
        b = a[:-1] + "b"
        try:
            await until(events, IfnetEvent(kind="attach", name=a))
            jid = await plat.create_jail(JailSpec(name="vimgtestw", hostname="vimgtestw"))
            try:
                await plat.move_ifnet(b, jid)
                await until(events, IfnetEvent(kind="detach", name=b))
                await plat.reclaim_ifnet(b, jid)
                await until(events, IfnetEvent(kind="attach", name=b))
            finally:
                await trio.run_process(["jail", "-R", str(jid)], check=False, capture_stderr=True)
        finally:
            await destroy(a)
        await until(events, IfnetEvent(kind="detach", name=a))


async def test_watcher_sees_a_late_interface(plat: freebsd.FreeBSDPlatform) -> None:
    watcher = IfnetWatcher(plat)
    async with trio.open_nursery() as nursery:
        await nursery.start(watcher.serve)
        assert watcher.watching
        a = await ifconfig("epair", "create")
        try:
            with trio.fail_after(10):
                await watcher.wait_present(a)
        finally:
            await destroy(a)
        with trio.fail_after(10):
            await watcher.wait_absent(a)
        nursery.cancel_scope.cancel()
