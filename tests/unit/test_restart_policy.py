"""restarts.RestartPolicy on its own, through a fake ``Restartable``, on a fake clock: the
policy, the backoff and the circuit breaker without any platform."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import trio
import trio.testing

from vimaged import config, restarts
from vimaged.errors import OperationFailedError
from vimaged.vimage import Vimage

pytestmark = pytest.mark.unit


class FakeDaemon:
    """A ``restarts.Restartable`` that records what it was asked (a test fake)."""

    def __init__(self, *, start_fails: bool = False) -> None:
        self.stopping = False
        self.start_fails = start_fails
        self.calls: list[tuple[float, str]] = []
        self.events: list[str] = []

    async def stop_vimage(self, v: Vimage, *, restarting: bool = False) -> None:
        self.calls.append((trio.current_time(), "stop"))
        v.state = "stopped"

    async def start_vimage(self, v: Vimage) -> None:
        self.calls.append((trio.current_time(), "start"))
        if self.start_fails:
            v.state = "failed"
            raise OperationFailedError(f"{v.name}: exec_start exited with status 1")
        v.state = "running"

    async def fail_vimage(self, v: Vimage, error: str) -> None:
        self.calls.append((trio.current_time(), "fail"))
        v.state, v.error = "failed", error

    def emit(self, event: str, vimage: str | None, **fields: Any) -> None:
        self.events.append(event)


def vimage(**settings: str) -> Vimage:
    raw = {"vimage_list": "web"} | {f"vimage_web_{k}": v for k, v in settings.items()}
    v = Vimage(config.build(raw).vimages[0])
    v.state = "running"
    return v


@pytest.mark.parametrize("failures", [1, 2, 3, 6, 7, 20])
def test_backoff_doubles_to_a_cap_with_jitter(failures: int) -> None:
    step = min(restarts.RESTART_MAX_DELAY, restarts.RESTART_FIRST_DELAY * 2 ** (failures - 1))
    waits = [restarts.backoff(failures) for _ in range(200)]
    assert all(step / 2 <= w <= step for w in waits)
    assert len(set(waits)) > 1  # jittered: vimages that failed together spread out


async def test_policy_no_only_cleans_up(autojump_clock: trio.testing.MockClock) -> None:
    daemon, v = FakeDaemon(), vimage()
    await restarts.RestartPolicy(daemon).recover(v, "jail gone")
    assert [what for _, what in daemon.calls] == ["fail"]
    assert v.restarts == 0


async def test_on_failure_restarts_after_the_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    daemon, v = FakeDaemon(), vimage(restart="on-failure")
    began = trio.current_time()
    await restarts.RestartPolicy(daemon).recover(v, "health_cmd exited 1")
    [(stopped_at, stop), (_, start)] = daemon.calls
    assert (stop, start) == ("stop", "start")
    assert restarts.RESTART_FIRST_DELAY / 2 <= stopped_at - began <= restarts.RESTART_FIRST_DELAY
    assert v.state == "running"
    assert v.restarts == 1
    assert daemon.events == ["vimage.restarting"]


async def test_breaker_opens_at_the_limit_and_reset_closes_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    daemon, v = FakeDaemon(), vimage(restart="on-failure", restart_limit="3")
    policy = restarts.RestartPolicy(daemon)
    for _ in range(2):
        await policy.recover(v, "health_cmd exited 1")
    assert v.restarts == 2
    await policy.recover(v, "health_cmd exited 1")  # the third failure in the window
    assert daemon.events[-1] == "vimage.circuit_open"
    assert v.state == "failed"
    assert v.restarts == 2
    assert daemon.calls[-1][1] == "fail"
    policy.reset("web")  # an operator started it
    v.state = "running"
    await policy.recover(v, "health_cmd exited 1")
    assert v.restarts == 3


async def test_window_forgets_old_failures(autojump_clock: trio.testing.MockClock) -> None:
    daemon, v = FakeDaemon(), vimage(restart="on-failure", restart_limit="2", restart_window="60")
    policy = restarts.RestartPolicy(daemon)
    for _ in range(5):
        await policy.recover(v, "health_cmd exited 1")
        await trio.sleep(61)
    assert "vimage.circuit_open" not in daemon.events
    assert v.restarts == 5


async def test_always_retries_a_failed_start_until_the_breaker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    daemon = FakeDaemon(start_fails=True)
    v = vimage(restart="always", restart_limit="4")
    await restarts.RestartPolicy(daemon).recover(v, "jail gone")
    assert [what for _, what in daemon.calls] == ["fail", "start", "start", "start"]
    assert daemon.events[-1] == "vimage.circuit_open"
    starts = [at for at, what in daemon.calls if what == "start"]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert 1.0 <= gaps[0] <= 2.0
    assert 2.0 <= gaps[1] <= 4.0


async def test_on_failure_does_not_retry_a_failed_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    daemon = FakeDaemon(start_fails=True)
    v = vimage(restart="on-failure")
    await restarts.RestartPolicy(daemon).recover(v, "jail gone")
    assert [what for _, what in daemon.calls] == ["fail", "start"]


async def test_nothing_restarts_while_the_daemon_stops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    daemon, v = FakeDaemon(), vimage(restart="always")
    daemon.stopping = True
    await restarts.RestartPolicy(daemon).recover(v, "health_cmd exited 1")
    assert daemon.calls == []
    assert daemon.events == []
