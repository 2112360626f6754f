"""The Prometheus text format of vimaged/metrics.py, parsed back by a strict reader."""

from __future__ import annotations

import math
import re

import pytest

from vimaged.metrics import LATENCY_BUCKETS, RequestTimes, format_family

pytestmark = pytest.mark.unit

SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)\Z")
LABEL_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


def parse_labels(text: str) -> dict[str, str]:
    """``a="x",b="y\\"z"`` as the text format defines it (escapes \\\\, \\", \\n)."""
    labels: dict[str, str] = {}
    i = 0
    while i < len(text):
        match = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="').match(text, i)
        assert match is not None, f"bad label at {text[i:]!r}"
        key, i, value = match.group(1), match.end(), []
        while text[i] != '"':
            if text[i] == "\\":
                value.append(LABEL_ESCAPES[text[i + 1]])  # KeyError: an escape not allowed
                i += 2
            else:
                assert text[i] != "\n"
                value.append(text[i])
                i += 1
        assert key not in labels, f"label {key} twice"
        labels[key] = "".join(value)
        i += 1
        if i < len(text):
            assert text[i] == ",", f"expected , at {text[i:]!r}"
            i += 1
    return labels


def parse_exposition(text: str) -> dict[str, dict[str, object]]:
    """family -> {"help", "type", "samples": [(name, labels, value)]}; asserts the grammar."""
    assert text.endswith("\n")
    families: dict[str, dict[str, object]] = {}
    current = ""
    series: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert name not in families, f"{name} described twice"
            help_text = re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\"}[m.group(1)], help_text)
            families[name] = {"help": help_text, "samples": []}
            current = name
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert name == current
            assert "type" not in families[name]
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped")
            families[name]["type"] = kind
        else:
            match = SAMPLE.match(line)
            assert match is not None, f"not a sample line: {line!r}"
            name, labels_text, value = match.groups()
            histogram = families[current]["type"] == "histogram"
            suffixes = ("_bucket", "_sum", "_count") if histogram else ("",)
            assert name in [current + suffix for suffix in suffixes]
            labels = parse_labels(labels_text or "")
            key = (name, tuple(sorted(labels.items())))
            assert key not in series, f"series {key} twice"
            series.add(key)
            samples = families[current]["samples"]
            assert isinstance(samples, list)
            samples.append((name, labels, float(value)))
    return families


def test_a_family_has_help_type_and_escaped_labels() -> None:
    text = format_family(
        "vimaged_test",
        "gauge",
        "A back\\slash and a\nnewline.",
        [("", (("parent", 'em"0\\\n'),), 3), ("", (), 0.25), ("", (("x", "inf"),), math.inf)],
    )
    family = parse_exposition(text)["vimaged_test"]
    assert family["help"] == "A back\\slash and a\nnewline."
    assert family["type"] == "gauge"
    assert family["samples"] == [
        ("vimaged_test", {"parent": 'em"0\\\n'}, 3.0),
        ("vimaged_test", {}, 0.25),
        ("vimaged_test", {"x": "inf"}, math.inf),
    ]
    assert "+Inf" in text


@pytest.mark.parametrize(
    ("name", "labels"),
    [("9lives", ()), ("bad-name", ()), ("ok", (("bad-label", "x"),)), ("ok", (("__x", "y"),))],
)
def test_a_name_prometheus_would_refuse_is_a_bug_caught_here(
    name: str, labels: tuple[tuple[str, str], ...]
) -> None:
    with pytest.raises(ValueError, match="bad"):
        format_family(name, "gauge", "help", [("", labels, 1)])


def test_request_latency_is_a_cumulative_histogram_per_op() -> None:
    times = RequestTimes()
    for seconds in (0.0005, 0.003, 0.003, 0.2, 100.0):
        times.observe("list", "ok", seconds)
    times.observe("start", "conflict", 0.02)
    times.observe("start", "ok", -1.0)  # a clock bug counts as 0, not as a negative sum
    text = "".join(format_family(*family) for family in times.families())
    families = parse_exposition(text)
    latency = families["vimaged_request_duration_seconds"]
    assert latency["type"] == "histogram"
    samples = latency["samples"]
    assert isinstance(samples, list)
    buckets = [(labels["le"], v) for n, labels, v in samples
               if n.endswith("_bucket") and labels["op"] == "list"]  # fmt: skip
    assert [le for le, _ in buckets] == [*(format(b, "g") for b in LATENCY_BUCKETS), "+Inf"]
    counts = [v for _, v in buckets]
    assert counts == sorted(counts)  # cumulative
    by_bound = dict(buckets)
    assert (by_bound["0.001"], by_bound["0.005"], by_bound["0.25"], by_bound["60"]) == (1, 3, 4, 4)
    assert by_bound["+Inf"] == 5
    totals = {(n, labels["op"]): v for n, labels, v in samples if not n.endswith("_bucket")}
    assert totals[("vimaged_request_duration_seconds_count", "list")] == 5
    assert totals[("vimaged_request_duration_seconds_sum", "list")] == pytest.approx(100.2065)
    assert totals[("vimaged_request_duration_seconds_sum", "start")] == pytest.approx(0.02)
    outcomes = families["vimaged_requests_total"]
    assert outcomes["type"] == "counter"
    assert {(labels["op"], labels["outcome"]): v for _, labels, v in outcomes["samples"]} == {  # type: ignore[attr-defined]
        ("list", "ok"): 5,
        ("start", "conflict"): 1,
        ("start", "ok"): 1,
    }


def test_an_empty_histogram_is_still_a_described_family() -> None:
    families = parse_exposition(
        "".join(format_family(*family) for family in RequestTimes().families())
    )
    assert families["vimaged_request_duration_seconds"]["samples"] == []
    assert families["vimaged_requests_total"]["type"] == "counter"
