"""vimagectl against a sim host daemon: metrics, restart --all, removed vimages (issue 13)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.sim.daemon_harness import Daemon, daemon_on
from tests.unit.test_metrics import parse_exposition

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.sim.conftest import SimHostHandle

pytestmark = pytest.mark.sim

CONFIG = """
vimage_enable="NO"
vimage_list="router web"
vimage_router_vnets="em1"
vimage_web_bridges="em0 em0"
"""
EX_NOHOST = 68


@pytest.fixture
def daemon(sim_host: SimHostHandle, tmp_path: Path) -> Iterator[Daemon]:
    with daemon_on(sim_host, tmp_path, up=True, config=CONFIG) as d:
        yield d


def _value(families: dict[str, dict[str, object]], name: str, **labels: str) -> float:
    family = name.removesuffix("_count").removesuffix("_bucket")
    samples = families[family]["samples"]
    assert isinstance(samples, list)
    found = [v for n, got, v in samples if n == name and labels.items() <= got.items()]
    assert len(found) == 1, (name, labels, samples)
    return float(found[0])


def test_restart_all_then_metrics_count_states_links_and_requests(daemon: Daemon) -> None:
    daemon.ok("start", "--all")
    before = {name: v["jid"] for name, v in daemon.vimages().items()}
    restarted = daemon.ok("--json", "restart", "--all").json()
    assert sorted(o["name"] for o in restarted) == ["router", "web"]
    after = daemon.vimages()
    assert all(v["state"] == "running" for v in after.values())
    assert all(after[name]["jid"] != jid for name, jid in before.items())
    daemon.ok("stop", "router")
    assert daemon.ctl("start", "nosuch").code == EX_NOHOST
    families = parse_exposition(daemon.ok("metrics").stdout)
    assert _value(families, "vimaged_vimages", state="running") == 1
    assert _value(families, "vimaged_vimages", state="stopped") == 1
    assert _value(families, "vimaged_vimages", state="failed") == 0  # every state, 0 included
    assert _value(families, "vimaged_vimages_health", health="unknown") >= 1  # router
    assert _value(families, "vimaged_bridge_links", parent="em0") == 2
    assert _value(families, "vimaged_nics_pending_return") == 0
    assert _value(families, "vimaged_circuit_breakers_open") == 0
    assert _value(families, "vimaged_requests_total", op="start", outcome="ok") == 1
    assert _value(families, "vimaged_requests_total", op="start", outcome="not_found") == 1
    assert _value(families, "vimaged_requests_total", op="restart", outcome="ok") == 1
    assert _value(families, "vimaged_request_duration_seconds_count", op="stop") == 1
    assert _value(families, "vimaged_request_duration_seconds_bucket", op="start", le="+Inf") == 2
    assert "web" not in daemon.ok("metrics").stdout  # counts only, no vimage names


def test_a_vimage_removed_by_reload_is_refused_restart_before_anything_stops(
    daemon: Daemon,
) -> None:
    daemon.ok("start", "web")
    jid = daemon.vimages()["web"]["jid"]
    daemon.write_config('vimage_enable="NO"\nvimage_list="router"\nvimage_router_vnets="em1"\n')
    assert daemon.ok("--json", "reload").json()["removed"] == ["web"]
    shown = daemon.ok("--json", "status", "web").json()[0]
    assert (shown["removed"], shown["state"]) == (True, "running")
    for verb in ("restart", "start"):
        refused = daemon.ctl(verb, "web")
        assert refused.code == EX_NOHOST, refused
        assert "removed from the configuration by reload" in refused.stderr
        assert daemon.vimages()["web"]["jid"] == jid  # nothing half-done: still running
    assert "removed from the configuration by reload" in daemon.ok("status", "web").stdout
    daemon.ok("stop", "web")
    assert "web" not in daemon.vimages()
