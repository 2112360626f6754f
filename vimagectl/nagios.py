"""``vimagectl health`` as a Nagios plugin: one line and an exit status 0-3.

``VIMAGED WARNING - db: em1 pending return | ok=2 degraded=1 failed=0 unknown=0 stopped=0``;
anything that prevents an answer (a usage error, no daemon) is UNKNOWN, 3.
"""

from __future__ import annotations

import sys

from vimagectl.render import write_json

TYPE_CHECKING = False  # see schema.py: typing is not imported at run time
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from vimagectl.args import Arguments
    from vimagectl.replies import VimageInfo, Vimages

NAGIOS_STATUS = {"ok": 0, "degraded": 1, "failed": 2, "unknown": 3}
NAGIOS_LABEL = ("OK", "WARNING", "CRITICAL", "UNKNOWN")
NAGIOS_UNKNOWN = 3


def health_verdict(vimages: Sequence[VimageInfo]) -> tuple[int, str]:
    """The Nagios status and line for ``vimages`` (see :func:`health_report`)."""
    report = health_report(vimages)
    return report["status"], report["line"]


def health_report(vimages: Sequence[VimageInfo]) -> dict[str, Any]:
    """The verdict on ``vimages``: ``status`` (0-3), ``verdict`` (``OK``...), ``summary``,
    ``counts`` (the performance data) and ``line``, the plugin's output made of them.

    A vimage counts by its ``health``, except: ``failed`` state is CRITICAL; ``starting``,
    ``stopping`` and ``waiting`` are WARNING; ``stopped`` is CRITICAL when it is ``wanted``
    running (autostart or the operator's last start) and otherwise, stopped by the operator, no
    problem: counted as ``stopped=N``, named on the command line or not (the daemon's replies
    fill ``wanted`` with false when it does not know it: an older daemon's stopped vimages are
    OK).
    """
    counts = dict.fromkeys(NAGIOS_STATUS, 0)
    stopped = 0
    problems: list[tuple[int, str]] = []
    for info in vimages:
        state = info["state"]
        if state == "stopped" and not info["wanted"]:
            stopped += 1
            continue
        if state == "stopped":
            level, detail = "failed", info["error"] or "stopped, wanted running"
        elif state == "failed":
            level, detail = "failed", info["error"] or state
        elif state in ("starting", "stopping"):
            level, detail = "degraded", state
        elif state == "waiting":  # wanted running, its NIC not attached yet
            level, detail = "degraded", f"waiting for {' '.join(info.get('waiting_for', ()))}"
        else:
            level, detail = info["health"], _health_detail(info)
        counts[level] += 1
        if level != "ok":
            problems.append((NAGIOS_STATUS[level], f"{info['name']}: {detail}"))
    status = max((severity for severity, _ in problems), default=0)
    if problems:
        problems.sort(key=lambda problem: -problem[0])
        summary = ", ".join(text for _, text in problems)
    else:
        summary = f"{counts['ok']} ok" + (f", {stopped} stopped" if stopped else "")
    counts["stopped"] = stopped
    perf = " ".join(f"{level}={n}" for level, n in counts.items())
    line = f"VIMAGED {NAGIOS_LABEL[status]} - {summary} | {perf}"
    return {
        "status": status, "verdict": NAGIOS_LABEL[status], "summary": summary, "counts": counts,
        "line": line,
    }  # fmt: skip


def _health_detail(info: VimageInfo) -> str:
    if info["error"]:
        return info["error"]
    if info["health_reason"]:
        return info["health_reason"]
    interfaces = info["interfaces"]
    pending = [ifc["name"] for ifc in interfaces if ifc["where"] == "pending-return"]
    if pending:
        return f"{' '.join(pending)} pending return"
    misplaced = [f"{ifc['name']} {ifc['where']}" for ifc in interfaces if ifc["where"] != "vimage"]
    return ", ".join(misplaced) or info["health"]


def render_health(reply: Vimages, args: Arguments) -> int:
    vimages = list(reply["vimages"])  # read once, used twice (a streamed listing, cli._ask)
    report = health_report(vimages)
    if args.json:  # the verdict with the vimages it is about
        write_json({**{k: v for k, v in report.items() if k != "line"}, "vimages": vimages})
    else:
        print(report["line"])
    return int(report["status"])


class Plugin:
    """The exit mapping of ``health``: an UNKNOWN line on stdout, exit 3."""

    def usage(self, text: str) -> int:
        print(f"VIMAGED UNKNOWN - usage: {text}".splitlines()[0])
        print(f"vimagectl: {text}", file=sys.stderr)
        return NAGIOS_UNKNOWN

    def failure(self, message: str, code: str) -> int:
        print(f"VIMAGED UNKNOWN - {message}")
        return NAGIOS_UNKNOWN


PLUGIN = Plugin()
