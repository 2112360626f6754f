"""Unit tests of logging: failures at warning/error, syslog output at the matching priority."""

from __future__ import annotations

import logging
import syslog
from typing import TYPE_CHECKING

import pytest
import structlog

from vimaged import events, log

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.unit


@pytest.fixture
def fresh_events_logger(monkeypatch: pytest.MonkeyPatch) -> None:
    # a logger cached by an earlier configure() would bypass capture_logs
    monkeypatch.setattr(events, "log", structlog.get_logger())


@pytest.mark.usefixtures("fresh_events_logger")
@pytest.mark.parametrize(
    ("event", "level"),
    [
        ("vimage.failed", "error"),
        ("vimage.circuit_open", "error"),
        ("vimage.start_failed", "error"),
        ("vimage.stop_failed", "error"),
        ("health.failed", "error"),
        ("health.degraded", "warning"),
        ("health.unknown", "warning"),
        ("ifnet.return_pending", "warning"),
        ("vimage.restarting", "warning"),
        ("vimage.started", "info"),
        ("health.ok", "info"),
    ],
)
def test_emitted_events_are_logged_at_their_level(event: str, level: str) -> None:
    with structlog.testing.capture_logs() as logs:
        events.EventHub().emit(event, "web", reason="x")
    assert [(entry["event"], entry["log_level"]) for entry in logs] == [(event, level)]


@pytest.fixture
def sent_to_syslog(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, str]]]:
    sent: list[tuple[int, str]] = []
    opened: list[tuple[str, int, int]] = []
    monkeypatch.setattr(
        syslog, "syslog", lambda priority, message: sent.append((priority, message))
    )
    monkeypatch.setattr(syslog, "openlog", lambda *args: opened.append(args))
    saved_config = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    log.configure(log_format="syslog", level="debug")
    try:
        yield sent
    finally:
        structlog.configure(**saved_config)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    assert opened == [("vimaged", syslog.LOG_PID, syslog.LOG_DAEMON)]


@pytest.mark.parametrize(
    ("method", "priority"),
    [
        ("debug", syslog.LOG_DEBUG),
        ("info", syslog.LOG_INFO),
        ("warning", syslog.LOG_WARNING),
        ("error", syslog.LOG_ERR),
        ("critical", syslog.LOG_CRIT),
    ],
)
def test_syslog_priority_follows_the_level(
    sent_to_syslog: list[tuple[int, str]], method: str, priority: int
) -> None:
    getattr(structlog.get_logger(), method)("health.failed", vimage="web")
    assert len(sent_to_syslog) == 1
    sent_priority, message = sent_to_syslog[0]
    assert sent_priority == priority
    assert message.startswith("event='health.failed'")
    assert "vimage='web'" in message


def test_syslog_carries_tracebacks_at_error(sent_to_syslog: list[tuple[int, str]]) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger().exception("request.crashed")
    [(priority, message)] = sent_to_syslog
    assert priority == syslog.LOG_ERR
    assert "RuntimeError" in message


def test_standard_library_records_go_to_syslog_too(sent_to_syslog: list[tuple[int, str]]) -> None:
    logging.getLogger("trio").warning("something %s", "odd")
    [(priority, message)] = sent_to_syslog
    assert priority == syslog.LOG_WARNING
    assert "something odd" in message


def test_log_format_syslog_is_accepted_by_the_cli() -> None:
    from vimaged import cli

    assert cli.parse_args(["--log-format", "syslog"]).log_format == "syslog"
