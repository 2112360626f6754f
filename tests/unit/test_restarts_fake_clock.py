"""Restart policy, backoff and the circuit breaker, on the in-process sim platform and a fake
clock. Each jail of ``web`` is removed from outside 5 s after its creation (the ``vanish``
fault), so every start is followed by a failure the health poll sees."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from vimaged import config, restarts
from vimaged.testing import InProcessPlatform, RecordingEvents, open_supervisor

pytestmark = pytest.mark.unit


def web(**settings: str) -> config.Config:
    raw = {"vimage_list": "web", "vimage_web_vnets": "em1", "vimage_web_health_interval": "1"}
    raw.update({f"vimage_web_{key}": value for key, value in settings.items()})
    return config.build(raw)


def times(events: RecordingEvents, event: str) -> list[float]:
    return [at for at, name, _, _ in events.timed if name == event]


async def test_backoff_then_circuit_breaker(autojump_clock: trio.testing.MockClock) -> None:
    cfg = web(restart="on-failure", restart_limit="4", restart_window="600")
    plat = InProcessPlatform(faults="vanish=web@5")
    events = RecordingEvents()
    async with open_supervisor(cfg, plat, events=events) as sup:
        [started] = await sup.start(["web"])
        assert started.ok
        with trio.fail_after(200):
            await events.wait_for("vimage.circuit_open", "web")
        failed, restarting = times(events, "vimage.failed"), times(events, "vimage.restarting")
        assert len(failed) == 4
        assert len(restarting) == 3
        # restart n waits half to all of min(60, 1 * 2**(n-1)) seconds after failure n
        for n, (down, up) in enumerate(zip(failed, restarting, strict=False)):
            step = min(restarts.RESTART_MAX_DELAY, restarts.RESTART_FIRST_DELAY * 2**n)
            assert step / 2 <= up - down <= step
        info = sup.info("web")
        assert info.state == "failed"
        assert info.restarts == 3
        assert info.error
        jails_made = events.count("jail.created", "web")
        await trio.sleep(3600)
        assert events.count("vimage.restarting", "web") == 3  # the breaker stays open
        assert events.count("jail.created", "web") == jails_made

        plat.set_faults("")  # fixed; the operator starts it: the breaker closes
        [again] = await sup.start(["web"])
        assert again.ok
        assert sup.info("web").state == "running"


async def test_failures_outside_the_window_do_not_open_the_breaker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cfg = web(restart="always", restart_limit="2", restart_window="30")
    plat = InProcessPlatform(faults="vanish=web@40")  # one failure every ~41 s
    events = RecordingEvents()
    async with open_supervisor(cfg, plat, events=events) as sup:
        await sup.start(["web"])
        with trio.fail_after(1000):
            await events.wait_for("vimage.restarting", "web", count=5)
        assert events.count("vimage.circuit_open", "web") == 0
        assert sup.info("web").restarts == 5


async def test_policy_no_leaves_it_failed(autojump_clock: trio.testing.MockClock) -> None:
    plat = InProcessPlatform(faults="vanish=web@5")
    events = RecordingEvents()
    async with open_supervisor(web(), plat, events=events) as sup:
        await sup.start(["web"])
        await trio.sleep(600)
        assert events.count("vimage.failed", "web") == 1
        assert events.count("vimage.restarting", "web") == 0
        assert sup.info("web").state == "failed"


async def test_always_retries_a_start_that_failed(autojump_clock: trio.testing.MockClock) -> None:
    cfg = web(restart="always", restart_limit="3", exec_start="/etc/rc")
    plat = InProcessPlatform(faults="vanish=web@5")
    events = RecordingEvents()
    async with open_supervisor(cfg, plat, events=events) as sup:
        await sup.start(["web"])
        plat.script("web", "/etc/rc", status=1)  # every restart's exec_start fails now
        with trio.fail_after(200):
            await events.wait_for("vimage.circuit_open", "web")
        assert events.count("vimage.start_failed", "web") == 2
        assert plat.where("em1") == 0
