"""The ``health`` plugin's verdict and line (vimagectl/nagios.py), and its ``--json`` form:
wanted-but-stopped is CRITICAL, stopped by the operator is OK, perfdata agree (issue 13.3)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from typing import Any

import pytest

from vimagectl.args import Arguments
from vimagectl.client import SCHEMA
from vimagectl.nagios import health_report, health_verdict, render_health

pytestmark = pytest.mark.unit


def info(name: str, state: str = "running", health: str = "ok", **more: Any) -> Any:
    """A VimageInfo as vimagectl reads it: checked, defaults filled."""
    reply: Any = SCHEMA.check(
        "Reply",
        {"reply": "vimages", "vimages": [{"name": name, "state": state, "health": health, **more}]},
    )
    return reply["vimages"][0]


def perfdata(line: str) -> dict[str, int]:
    return {k: int(v) for k, v in (f.split("=") for f in line.split(" | ")[1].split())}


def test_a_vimage_wanted_running_but_stopped_is_critical() -> None:
    status, line = health_verdict([info("web"), info("db", "stopped", wanted=True)])
    assert status == 2
    assert line.startswith("VIMAGED CRITICAL - db: ")
    assert perfdata(line) == {"ok": 1, "degraded": 0, "failed": 1, "unknown": 0, "stopped": 0}


def test_a_vimage_stopped_by_the_operator_is_ok_and_counted_as_stopped() -> None:
    status, line = health_verdict([info("web"), info("db", "stopped", wanted=False)])
    assert status == 0
    assert line == ("VIMAGED OK - 1 ok, 1 stopped | ok=1 degraded=0 failed=0 unknown=0 stopped=1")


def test_health_name_of_a_stopped_by_operator_vimage_is_ok() -> None:
    # `health db` gets only db from the daemon
    status, line = health_verdict([info("db", "stopped")])
    assert status == 0
    assert perfdata(line)["stopped"] == 1
    assert perfdata(line)["failed"] == 0


def test_an_older_daemon_without_wanted_leaves_stopped_ones_ok() -> None:
    stopped = info("db", "stopped")
    assert stopped["wanted"] is False  # the default the schema fills in
    assert health_verdict([stopped])[0] == 0


@pytest.mark.parametrize(
    "vimages",
    [
        [info("a"), info("b", "stopped", wanted=True), info("c", "stopped")],
        [info("a", health="degraded"), info("b", "starting"), info("c", "failed")],
        [info("a", health="unknown"), info("b", "stopped")],
        [],
    ],
    ids=["wanted-and-not", "mixed", "unknown", "none"],
)
def test_perfdata_agree_with_the_verdict(vimages: list[Any]) -> None:
    report = health_report(vimages)
    counts = report["counts"]
    assert sum(counts.values()) == len(vimages)
    expected = 3 if counts["unknown"] else 2 if counts["failed"] else 1 if counts["degraded"] else 0
    assert report["status"] == expected
    assert report["line"].startswith(f"VIMAGED {report['verdict']} - ")
    assert perfdata(report["line"]) == counts


def test_json_health_carries_the_overall_verdict() -> None:
    args = Arguments()
    args.json = True
    vimages = [info("web"), info("db", "stopped", wanted=True)]
    out = io.StringIO()
    with redirect_stdout(out):
        status = render_health({"reply": "vimages", "vimages": vimages, "attachments": []}, args)
    printed = json.loads(out.getvalue())
    assert status == printed["status"] == 2
    assert printed["verdict"] == "CRITICAL"
    assert printed["counts"] == {"ok": 1, "degraded": 0, "failed": 1, "unknown": 0, "stopped": 0}
    assert [v["name"] for v in printed["vimages"]] == ["web", "db"]
    assert printed["summary"].startswith("db: ")
