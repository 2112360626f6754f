"""End to end (issue 13 item 3): the real vimaged on the sim host, driven by the real
vimagectl: a stop that others depend on, ``start`` reporting its dependencies, and a
``health`` that knows what is wanted running."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import pytest

from tests.sim.daemon_harness import Daemon, daemon_on

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.sim.conftest import SimHostHandle

pytestmark = pytest.mark.sim

EX_TEMPFAIL = 75
CRITICAL = 2

# web and app depend on db (the example)
CHAIN = """
vimage_enable="{enable}"
vimage_list="db app web"
vimage_db_vnets="em1"
vimage_app_bridges="em0"
vimage_app_depend="db"
vimage_web_bridges="em0"
vimage_web_depend="app db"
"""


@pytest.fixture
def daemon(sim_host: SimHostHandle, tmp_path: Path) -> Iterator[Daemon]:
    with daemon_on(sim_host, tmp_path, log_level="info") as d:
        yield d


def perfdata(line: str) -> dict[str, int]:
    return {k: int(v) for k, v in (f.split("=") for f in line.split(" | ")[1].split())}


def test_stop_refuses_then_stops_dependents_first_and_start_reports_dependencies(
    daemon: Daemon, sim_host: SimHostHandle
) -> None:
    daemon.write_config(CHAIN.format(enable="NO"))
    daemon.start()
    started = daemon.ok("start", "app")
    assert started.stdout.splitlines() == ["db: running", "app: running"]
    daemon.ok("start", "web")

    refused = daemon.ctl("stop", "db")
    assert refused.code == EX_TEMPFAIL
    assert "app" in refused.stderr
    assert "web" in refused.stderr
    assert {v["state"] for v in daemon.vimages().values()} == {"running"}  # nothing stopped

    stopped = daemon.ok("--json", "stop", "--with-dependents", "db").json()
    assert [(o["name"], o["state"]) for o in stopped] == [
        ("web", "stopped"),
        ("app", "stopped"),
        ("db", "stopped"),
    ]
    assert sim_host.jails() == []
    assert sim_host.vnet_of("em1") == 0

    health = daemon.ctl("health")  # stopped by the operator: not a problem
    assert health.code == 0, health
    assert perfdata(health.stdout)["stopped"] == 3
    assert daemon.ctl("health", "db").code == 0


def test_health_is_critical_for_a_wanted_vimage_that_is_not_running(
    daemon: Daemon, sim_host: SimHostHandle
) -> None:
    daemon.write_config(CHAIN.format(enable="YES"))
    daemon.start()  # the first daemon since boot autostarts vimage_list
    daemon.wait_until(
        lambda: {v["state"] for v in daemon.vimages().values()} == {"running"},
        what="autostart done",
    )
    daemon.ok("stop", "web")
    assert daemon.ctl("health").code == 0  # web: stopped by the operator
    # a vimage added to vimage_list with vimage_enable on is wanted; nobody started it
    daemon.write_config(CHAIN.format(enable="YES").replace('"db app web"', '"db app web cache"'))
    daemon.ok("reload")
    health = daemon.ctl("health")
    assert health.code == CRITICAL, health
    assert health.stdout.startswith("VIMAGED CRITICAL - cache: ")
    assert perfdata(health.stdout) == {
        "ok": 2, "degraded": 0, "failed": 1, "unknown": 0, "stopped": 1,
    }  # fmt: skip
    verdict = daemon.ctl("--json", "health").json()
    assert (verdict["verdict"], verdict["status"]) == ("CRITICAL", CRITICAL)
    assert daemon.ctl("health", "cache").code == CRITICAL
    assert daemon.ctl("health", "web").code == 0

    daemon.kill(signal.SIGTERM)  # a restarted daemon keeps the operator's stop of web
    daemon.start()
    infos = daemon.vimages()
    assert (infos["web"]["state"], infos["web"]["wanted"]) == ("stopped", False)
    assert infos["db"]["wanted"] is True
    assert daemon.ctl("health", "web").code == 0
