"""The daemon's numbers in Prometheus' text exposition format (``metrics``, issue 13).

For node_exporter's textfile collector: ``vimagectl metrics > vimaged.prom.$$ && mv ...``
from cron or periodic(8) (vimagectl.8). Counts only, never a vimage name or address, so any
peer may ask (docs/protocol.md). The format is Prometheus' text format 0.0.4
(https://prometheus.io/docs/instrumenting/exposition_formats/): ``# HELP`` and ``# TYPE``
once per family, then ``name{label="value"} number`` lines; a label value escapes ``\\``,
``"`` and newline, a HELP text ``\\`` and newline.

Request latency is recorded by the server where it logs ``request.done`` (server.py), into
the :class:`RequestTimes` the dispatcher owns; ``events`` subscriptions are not timed (they
last as long as their client).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import TYPE_CHECKING, get_args

from vimaged import __version__
from vimaged.protocol import HealthState, State

if TYPE_CHECKING:
    from collections.abc import Iterable

    from vimaged.supervisor import Supervisor

CONTENT_TYPE = "text/plain; version=0.0.4"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0)  # fmt: skip
"""Upper bounds (seconds) of the request latency histogram: a ``list`` takes milliseconds, a
``start --all`` of many vimages up to minutes (then only ``+Inf`` holds it)."""
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
MAX_OPS = 64
"""Distinct ``op`` labels kept; ops are the protocol's tags (fewer than 20), so this only
bounds memory should a caller pass anything else."""

Labels = tuple[tuple[str, str], ...]
Sample = tuple[str, Labels, float]
"""A line: the suffix of the family's name (a histogram's ``_bucket``, ``_sum``, ``_count``;
else empty), its labels, its value."""
Family = tuple[str, str, str, list[Sample]]
"""Name, type, HELP text, samples."""


class _Histogram:
    __slots__ = ("buckets", "count", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * len(LATENCY_BUCKETS)  # not cumulative; summed when written
        self.count = 0
        self.sum = 0.0


class RequestTimes:
    """Latency and outcome of every answered request, per ``op`` (the protocol tag)."""

    def __init__(self) -> None:
        self._latency: dict[str, _Histogram] = {}
        self.outcomes: Counter[tuple[str, str]] = Counter()
        """(op, outcome) -> requests; ``outcome`` is ``ok`` or the ``Error.code``."""

    def observe(self, op: str, outcome: str, seconds: float) -> None:
        """Record one request; a negative or non-finite duration (a clock bug) counts as 0."""
        histogram = self._latency.get(op)
        if histogram is None:
            if len(self._latency) >= MAX_OPS:
                return
            histogram = self._latency[op] = _Histogram()
        seconds = seconds if math.isfinite(seconds) and seconds > 0 else 0.0
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                histogram.buckets[i] += 1
                break
        histogram.count += 1
        histogram.sum += seconds
        self.outcomes[op, outcome] += 1

    def families(self) -> list[Family]:
        latency: list[Sample] = []
        for op in sorted(self._latency):
            h = self._latency[op]
            running = 0
            for bound, n in zip(LATENCY_BUCKETS, h.buckets, strict=True):
                running += n
                latency.append(("_bucket", (("op", op), ("le", _number(bound))), running))
            latency.append(("_bucket", (("op", op), ("le", "+Inf")), h.count))
            latency.append(("_sum", (("op", op),), h.sum))
            latency.append(("_count", (("op", op),), h.count))
        outcomes: list[Sample] = [
            ("", (("op", op), ("outcome", outcome)), n)
            for (op, outcome), n in sorted(self.outcomes.items())
        ]
        return [
            (
                "vimaged_request_duration_seconds",
                "histogram",
                "Time to answer a control request, by op.",
                latency,
            ),
            (
                "vimaged_requests_total",
                "counter",
                "Control requests answered, by op and outcome (ok or the error code).",
                outcomes,
            ),
        ]


def exposition(sup: Supervisor, times: RequestTimes) -> str:
    """Every metric of the daemon now, as one text exposition document."""
    infos = sup.infos()
    states = Counter(info.state for info in infos)
    health = Counter(info.health for info in infos)
    links: Counter[str] = Counter(
        ifc.parent
        for info in infos
        for ifc in info.interfaces
        if ifc.kind == "bridge" and ifc.where == "vimage" and ifc.parent
    )
    vimages = list(sup.vimages.values())
    families: list[Family] = [
        (
            "vimaged_info",
            "gauge",
            "Always 1; the daemon's version and platform as labels.",
            [("", (("version", __version__), ("platform", sup.platform.name)), 1)],
        ),
        (
            "vimaged_vimages",
            "gauge",
            "Vimages by state (removed ones included until stopped).",
            [("", (("state", state),), states[state]) for state in get_args(State)],
        ),
        (
            "vimaged_vimages_health",
            "gauge",
            "Vimages by health (unknown for any vimage not running).",
            [("", (("health", h),), health[h]) for h in get_args(HealthState)],
        ),
        (
            "vimaged_nics_pending_return",
            "gauge",
            "Moved NICs still held by a (dying) jail, on their way back to the host.",
            [("", (), len(sup.watcher.pending))],
        ),
        (
            "vimaged_vimage_restarts",
            "gauge",
            "Restarts by policy of the vimages now known (a forgotten vimage takes its own).",
            [("", (), sum(v.restarts for v in vimages))],
        ),
        (
            "vimaged_circuit_breakers_open",
            "gauge",
            "Vimages whose circuit breaker is open: not restarted until started by hand.",
            [("", (), sum(1 for v in vimages if sup.restarts.circuit_open(v)))],
        ),
        (
            "vimaged_bridge_links",
            "gauge",
            "Links of running vimages' bridged interfaces, by parent interface.",
            [("", (("parent", parent),), n) for parent, n in sorted(links.items())],
        ),
        *times.families(),
    ]
    return "".join(format_family(*family) for family in families)


def format_family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> str:
    """One family: its HELP and TYPE lines, then a line per sample.

    Raises:
        ValueError: a metric or label name Prometheus would not accept (a bug here).
    """
    if METRIC_NAME.match(name) is None:
        raise ValueError(f"bad metric name {name!r}")
    lines = [f"# HELP {name} {_escape_help(help_text)}\n", f"# TYPE {name} {kind}\n"]
    for suffix, labels, value in samples:
        lines.append(f"{name}{suffix}{_labels(labels)} {_number(value)}\n")
    return "".join(lines)


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    for key, _ in labels:
        if LABEL_NAME.match(key) is None or key.startswith("__"):
            raise ValueError(f"bad label name {key!r}")
    return "{" + ",".join(f'{key}="{_escape_label(value)}"' for key, value in labels) + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    """Integers without a fraction; Prometheus' spellings of the infinities and NaN."""
    if isinstance(value, int) or (math.isfinite(value) and value == int(value)):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
