"""What a health check costs as vimages grow: one wiring listing for concurrent checks, one
jail looked up by jid (issue 13 item 2), on a fake clock."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing

from vimaged import config
from vimaged.health import WIRING_MAX_AGE, WIRING_SHARE, HealthMonitor
from vimaged.platforms import BridgedIfnet, BridgeInfo, JailInfo
from vimaged.testing import InProcessPlatform, open_supervisor

pytestmark = pytest.mark.unit


class SlowListings:
    """A test fake: bridge listings that take a second each, counted."""

    def __init__(self) -> None:
        self.listings = 0
        self.fail = False

    async def list_bridged_ifnets(self) -> list[BridgedIfnet]:
        self.listings += 1
        await trio.sleep(1)
        if self.fail:
            raise OSError(5, "EIO")
        return [BridgedIfnet(name=f"v{self.listings}", parent="em0", jid=None)]

    async def list_bridges(self) -> list[BridgeInfo]:
        await trio.sleep(1)
        return []


def monitor(platform: Any) -> HealthMonitor:
    return HealthMonitor(platform, SimpleNamespace(), SimpleNamespace())  # type: ignore[arg-type]


async def test_concurrent_checks_share_one_wiring_listing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    platform = SlowListings()
    health = monitor(platform)
    seen: list[dict[str, str]] = []

    async def check() -> None:
        seen.append(await health._bridged_parents())

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(check)
    assert platform.listings == 1
    assert seen == [{"v1": "em0"}] * 50
    await trio.sleep(41)  # older than WIRING_SHARE x the 2 s it took: the next check lists
    assert await health._bridged_parents() == {"v2": "em0"}
    assert platform.listings == 2


async def test_a_failed_listing_leaves_the_waiters_the_previous_picture(
    autojump_clock: trio.testing.MockClock,
) -> None:
    platform = SlowListings()
    health = monitor(platform)
    assert await health._bridged_parents() == {"v1": "em0"}
    await trio.sleep(41)
    platform.fail = True
    waiters: list[dict[str, str]] = []
    failures: list[OSError] = []

    async def check() -> None:
        try:
            waiters.append(await health._bridged_parents())
        except OSError as exc:
            failures.append(exc)

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(check)
    assert platform.listings == 2
    assert len(failures) == 1
    assert waiters == [{"v1": "em0"}] * 4


async def test_a_slow_wiring_listing_is_kept_in_proportion_to_its_cost(
    autojump_clock: trio.testing.MockClock,
) -> None:
    platform = SlowListings()  # 2 s a listing: kept WIRING_SHARE x 2 s
    health = monitor(platform)
    assert await health._bridged_parents() == {"v1": "em0"}
    await trio.sleep(WIRING_SHARE * 2 - 3)  # 2 s short of its age, counted from the ask
    assert await health._bridged_parents() == {"v1": "em0"}
    assert platform.listings == 1
    await trio.sleep(2)
    assert await health._bridged_parents() == {"v2": "em0"}
    health.recheck("test")  # the platform came back: no picture is kept
    assert await health._bridged_parents() == {"v3": "em0"}
    assert platform.listings == 3


async def test_a_quick_wiring_listing_is_kept_wiring_max_age(
    autojump_clock: trio.testing.MockClock,
) -> None:
    platform = QuickListings()
    health = monitor(platform)
    assert await health._bridged_parents() == {"v1": "em0"}
    await trio.sleep(WIRING_MAX_AGE + 0.1)
    assert await health._bridged_parents() == {"v2": "em0"}


class QuickListings(SlowListings):
    """A test fake: the same listings, taking no time."""

    async def list_bridged_ifnets(self) -> list[BridgedIfnet]:
        self.listings += 1
        return [BridgedIfnet(name=f"v{self.listings}", parent="em0", jid=None)]

    async def list_bridges(self) -> list[BridgeInfo]:
        return []


class CountingPlatform(InProcessPlatform):
    """A test fake: the in-process sim platform, its jail listings counted."""

    listings = 0

    async def list_jails(self) -> list[JailInfo]:
        self.listings += 1
        return await super().list_jails()


async def test_checks_and_stops_look_up_one_jail_not_the_list(
    autojump_clock: trio.testing.MockClock,
) -> None:
    names = [f"v{i}" for i in range(20)]
    raw = {"vimage_list": " ".join(names), "vimage_parallel_start": "YES"}
    raw.update({f"vimage_{n}_health_interval": "5" for n in names})
    plat = CountingPlatform()
    async with open_supervisor(config.build(raw), plat) as sup:
        assert all(r.ok for r in await sup.start(names))
        before = plat.listings
        await trio.sleep(50)  # ten health rounds of twenty vimages
        assert {sup.info(n).health for n in names} == {"ok"}
        assert all(r.ok for r in await sup.stop(names))
        assert plat.listings == before
        assert plat.host.jails == {}


async def test_a_first_mac_does_not_renormalize_every_persisted_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vimaged import macs
    from vimaged.lifecycle import MacBook
    from vimaged.testing import open_memory_journal

    names = [f"v{i}" for i in range(300)]
    raw = {"vimage_list": " ".join(names)}
    raw.update({f"vimage_{n}_bridges": "em0" for n in names})
    cfg = config.build(raw)
    by_name = {v.name: v for v in cfg.vimages}
    async with open_memory_journal() as journal:
        book = MacBook(InProcessPlatform(), journal)
        await book.load()
        for name in names[:-1]:
            vimage = by_name[name]
            await book.mac_for(vimage, vimage.bridges[0], config=cfg)
        normalized: list[str] = []
        real = macs._comparable

        def counted(mac: str) -> str:
            normalized.append(mac)
            return real(mac)

        monkeypatch.setattr(macs, "_comparable", counted)
        last = by_name[names[-1]]
        mac = await book.mac_for(last, last.bridges[0], config=cfg)
        assert len(normalized) < 10  # the host's MACs and the new one, not all 299 known
        assert mac not in {book.known[(n, 0)] for n in names[:-1]}
