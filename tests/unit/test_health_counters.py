"""Data-plane health: what grew in a bridged link's counters between two checks."""

from __future__ import annotations

import errno
import os
from types import SimpleNamespace
from typing import Any

import pytest

from vimaged.config import VimageConfig
from vimaged.health import HealthMonitor
from vimaged.platforms import LinkCounters
from vimaged.supervisor import Vimage

pytestmark = pytest.mark.unit


class Counters:
    """A test fake: the platform's getstats answers, one per call."""

    def __init__(self, *answers: LinkCounters | int) -> None:
        self.answers = list(answers)

    async def bridged_ifnet_stats(self, ifname: str) -> LinkCounters:
        answer = self.answers.pop(0)
        if isinstance(answer, int):
            raise OSError(answer, os.strerror(answer), ifname)
        return answer


def monitor(platform: Any) -> HealthMonitor:
    return HealthMonitor(platform, SimpleNamespace(), SimpleNamespace())  # type: ignore[arg-type]


def vimage() -> Vimage:
    return Vimage(VimageConfig(name="web", hostname="web", ifname="web"))


async def test_growing_memory_failures_and_loops_are_problems_once() -> None:
    counters = Counters(
        LinkCounters(recvPackets=3, memoryFailures=1),
        LinkCounters(recvPackets=9, memoryFailures=4),
        LinkCounters(recvPackets=12, memoryFailures=4, loopDetects=1, loopDrops=2),
        LinkCounters(recvPackets=15, memoryFailures=4, loopDetects=1, loopDrops=5),
        LinkCounters(recvPackets=20, memoryFailures=4, loopDetects=1, loopDrops=5),
    )
    health, v = monitor(counters), vimage()
    assert await health._data_plane(v, "ng0_web") == []  # the first look is the baseline
    assert await health._data_plane(v, "ng0_web") == [
        "ng0_web: bridge failed to learn 3 times (memoryFailures)"
    ]
    assert await health._data_plane(v, "ng0_web") == ["ng0_web: loop detected (loopDetects)"]
    assert await health._data_plane(v, "ng0_web") == [
        "ng0_web: 3 frames dropped by loop protection (loopDrops)"
    ]
    assert await health._data_plane(v, "ng0_web") == []  # nothing new: healthy again
    assert v.link_stats["ng0_web"].recv_packets == 20


async def test_counters_that_start_over_or_cannot_be_read_are_no_alarm() -> None:
    counters = Counters(
        LinkCounters(recvPackets=50, memoryFailures=7),
        LinkCounters(recvPackets=2, memoryFailures=9),  # bridge rebuilt: new counters
        errno.EOPNOTSUPP,  # linux: no bridge link
    )
    health, v = monitor(counters), vimage()
    assert await health._data_plane(v, "ng0_web") == []
    assert await health._data_plane(v, "ng0_web") == []
    assert await health._data_plane(v, "ng0_web") == []
    assert "ng0_web" not in v.link_stats
