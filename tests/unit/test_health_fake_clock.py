"""Health polls of a running vimage, on the in-process sim platform and a fake clock."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from vimaged import config
from vimaged.health import HealthMonitor
from vimaged.platforms import HOST_JID, JailSpec
from vimaged.testing import (
    InProcessPlatform,
    RecordingEvents,
    open_memory_journal,
    open_supervisor,
)
from vimaged.vimage import Vimage
from vimaged.vnets import ReturnWatcher

pytestmark = pytest.mark.unit

INTERVAL = 10.0


def web(**settings: str) -> config.Config:
    raw = {"vimage_list": "web", "vimage_web_vnets": "em1"}
    raw.update({f"vimage_web_{key}": value for key, value in settings.items()})
    return config.build(raw)


async def test_health_cmd_failing_retries_times_turns_failed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cfg = web(health_cmd="check-nginx", health_interval="10", health_retries="3")
    plat = InProcessPlatform()
    plat.script("web", "check-nginx", status=1, output="nginx is not running\n")
    events = RecordingEvents()
    async with open_supervisor(cfg, plat, events=events) as sup:
        [started] = await sup.start(["web"])
        assert started.ok
        began = trio.current_time()
        with trio.fail_after(100):
            await events.wait_for("health.failed", "web")
        # three polls, at 0, 10 and 20 s: degraded after the first two, failed at the third
        assert trio.current_time() - began == pytest.approx(2 * INTERVAL)
        assert plat.commands("web").count("check-nginx") == 3
        assert events.count("health.degraded", "web") == 1
        info = sup.info("web")
        assert info.health == "failed"
        assert info.state == "running"
        await trio.sleep(10 * INTERVAL)
        assert plat.commands("web").count("check-nginx") == 3  # a failed vimage is not polled


async def test_one_good_check_resets_the_count(autojump_clock: trio.testing.MockClock) -> None:
    cfg = web(health_cmd="check-nginx", health_interval="10", health_retries="3")
    plat = InProcessPlatform()
    plat.script("web", "check-nginx", status=1)
    events = RecordingEvents()
    async with open_supervisor(cfg, plat, events=events) as sup:
        await sup.start(["web"])
        await trio.sleep(INTERVAL + 1)  # two failed checks
        plat.script("web", "check-nginx", status=0)
        await trio.sleep(INTERVAL)
        assert sup.info("web").health == "ok"
        plat.script("web", "check-nginx", status=1)
        await trio.sleep(INTERVAL)  # one failure: degraded again, not failed
        assert sup.info("web").health == "degraded"
        assert events.count("health.failed", "web") == 0


async def test_unreachable_platform_is_unknown_not_failed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cfg = web(health_interval="10", restart="always")
    plat = InProcessPlatform()
    events = RecordingEvents()
    async with open_supervisor(cfg, plat, events=events) as sup:
        await sup.start(["web"])
        assert sup.info("web").health == "ok"
        plat.disconnect()
        await trio.sleep(5 * INTERVAL)
        assert sup.info("web").health == "unknown"
        assert events.count("vimage.restarting", "web") == 0
        plat.kill_jail("web")  # went with the host
        plat.reconnect()
        with trio.fail_after(1):  # checked at once, not at the next interval
            await events.wait_for("vimage.failed", "web")
        assert plat.where("em1") == HOST_JID


async def test_vanished_jail_is_cleaned_up(autojump_clock: trio.testing.MockClock) -> None:
    cfg = web(health_interval="10")
    plat = InProcessPlatform()
    events = RecordingEvents()
    async with open_supervisor(cfg, plat, events=events) as sup:
        [started] = await sup.start(["web"])
        jid = sup.info("web").jid
        assert started.ok
        assert jid is not None
        plat.kill_jail("web")  # jail -r by someone else
        with trio.fail_after(INTERVAL + 1):
            await events.wait_for("vimage.failed", "web")
        info = sup.info("web")
        assert info.state == "failed"
        assert info.jid is None
        assert info.error
        assert plat.where("em1") == HOST_JID  # vnet_if_return brought it home
        assert await sup.journal.resources() == []
        assert events.count("vimage.restarting", "web") == 0  # _restart=no
        [again] = await sup.start(["web"])  # the operator acts
        assert again.ok
        assert again.state == "running"


async def test_monitor_alone_calls_on_failed_once(autojump_clock: trio.testing.MockClock) -> None:
    """health.HealthMonitor without a supervisor: checks in, one ``on_failed`` out."""
    cfg = config.build(
        {
            "vimage_list": "web",
            "vimage_web_health_cmd": "check-nginx",
            "vimage_web_health_interval": "10",
            "vimage_web_health_retries": "2",
        }
    )
    plat = InProcessPlatform()
    plat.script("web", "check-nginx", status=1)
    v = Vimage(cfg.vimages[0])
    v.jid = await plat.create_jail(JailSpec(name="web", hostname="web"))
    v.state = "running"
    failed: list[float] = []

    async def on_failed(failing: Vimage, reason: str | None) -> None:
        assert failing is v
        failed.append(trio.current_time())

    events = RecordingEvents()
    async with open_memory_journal() as journal:
        monitor = HealthMonitor(plat, ReturnWatcher(plat, journal, events), events, on_failed)
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            began = trio.current_time()
            monitor.watch(v)
            await trio.sleep(10 * INTERVAL)
            nursery.cancel_scope.cancel()
    assert failed == [began + INTERVAL]  # the second failed check, and only once
    assert v.health == "failed"
    assert events.names("web") == ["health.degraded", "health.failed"]
