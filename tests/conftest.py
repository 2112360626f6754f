"""Test tiers: unit (pure Python), sim (simulated host), linux (netns, root), freebsd."""

from __future__ import annotations

import os
import sys

import pytest
from hypothesis import HealthCheck, settings

# Property tests must not depend on the machine's speed (a slow or emulated CPU, a busy CI
# host): no per-example deadline and no too_slow health check, for every test that does
# not say otherwise.
settings.register_profile("vimaged", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("vimaged")

TIERS = ("unit", "sim", "linux", "freebsd")


def _skip_reason(tier: str) -> str | None:
    if tier == "linux":
        if not sys.platform.startswith("linux"):
            return "linux tier needs Linux network namespaces"
        if os.geteuid() != 0:
            return "linux tier needs root to create network namespaces"
    if tier == "freebsd":
        if not sys.platform.startswith("freebsd"):
            return "freebsd tier needs a FreeBSD host with a VIMAGE kernel"
        if os.geteuid() != 0:
            return "freebsd tier needs root"
    return None


def pytest_report_header(config: pytest.Config) -> str:
    run = [tier for tier in TIERS if _skip_reason(tier) is None]
    return f"vimaged test tiers run here: {', '.join(run)}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for tier in ("linux", "freebsd"):
            reason = _skip_reason(tier)
            if reason is not None and item.get_closest_marker(tier) is not None:
                item.add_marker(pytest.mark.skip(reason=reason))
