"""Logging: the one place structlog is configured.

Events are dotted past-tense facts (``vimage.started``, ``ifnet.return_retry``) with their data
as keys. Under rc.d the daemon stays in the foreground under daemon(8) and logs with
``--log-format syslog``: straight to syslog(3), each line at the priority of its level, so a
syslog.conf(5) filter on ``daemon.warning`` sees every failure (daemon(8) would log every
stderr line at one priority).
"""

from __future__ import annotations

import logging
import sys
import syslog
from typing import TYPE_CHECKING, Any, Literal

import structlog

if TYPE_CHECKING:
    from structlog.typing import Processor

LEVELS = ("debug", "info", "warning", "error")
LogFormat = Literal["console", "json", "syslog"]

EVENT_LEVELS: dict[str, str] = {
    "vimage.failed": "error",
    "vimage.circuit_open": "error",
    "vimage.start_failed": "error",
    "vimage.stop_failed": "error",
    "vimage.rolled_back": "warning",
    "vimage.restarting": "warning",
    "health.failed": "error",
    "health.degraded": "warning",
    "health.unknown": "warning",
    "ifnet.return_pending": "warning",
    "vimage.waiting": "warning",  # a NIC or parent it needs is absent (arrivals.py)
    "ifnet.parent_gone": "warning",
    "ifnet.parent_back": "warning",
}
"""Levels of the events that :class:`vimaged.events.EventHub` emits; others are ``info``."""

SYSLOG_PRIORITIES: dict[str, int] = {
    "debug": syslog.LOG_DEBUG,
    "info": syslog.LOG_INFO,
    "notice": syslog.LOG_NOTICE,
    "warning": syslog.LOG_WARNING,
    "error": syslog.LOG_ERR,
    "critical": syslog.LOG_CRIT,
}
"""structlog's (and logging's) level names to syslog(3) priorities."""


def event_level(event: str) -> str:
    """The level an emitted event is logged at: failures at warning or error."""
    return EVENT_LEVELS.get(event, "info")


class SyslogLogger:
    """A structlog logger writing each rendered line to syslog(3) at its level's priority.

    structlog calls the method named for the level (``exception`` arrives as ``error``).
    """

    def __init__(self, ident: str = "vimaged") -> None:
        syslog.openlog(ident, syslog.LOG_PID, syslog.LOG_DAEMON)

    def _write(self, priority: int, message: str) -> None:
        syslog.syslog(priority, message.replace("\0", "\\0"))

    def __getattr__(self, name: str) -> Any:
        priority = SYSLOG_PRIORITIES.get(name, syslog.LOG_INFO)
        return lambda message: self._write(priority, message)


class _SyslogHandler(logging.Handler):
    """The standard library's records (trio's) to syslog(3), priority from the record."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            priority = SYSLOG_PRIORITIES.get(record.levelname.lower(), syslog.LOG_INFO)
            syslog.syslog(priority, self.format(record))
        except Exception:  # logging must never raise into the daemon
            self.handleError(record)


def _syslog_factory() -> Any:
    logger = SyslogLogger()  # one openlog(3) for every bound logger
    return lambda *_: logger


def configure(
    *, json: bool = False, level: str = "info", log_format: LogFormat | None = None
) -> None:
    """Configure structlog and route the standard library's records (trio's) through it.

    ``log_format`` wins over ``json``: ``console``, ``json`` (one object a line on stderr) or
    ``syslog`` (key=value lines to syslog(3); syslog adds the time, the level is the priority).
    """
    chosen: LogFormat = log_format or ("json" if json else "console")
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
    ]
    if chosen == "syslog":
        tail: list[Processor] = [
            structlog.processors.format_exc_info,
            structlog.processors.KeyValueRenderer(key_order=["event"], drop_missing=True),
        ]
    else:
        shared.append(structlog.processors.TimeStamper(fmt="iso", utc=True))
        tail = (
            [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
            if chosen == "json"
            else [structlog.dev.ConsoleRenderer(colors=False)]
        )
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, *tail],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_syslog_factory()
        if chosen == "syslog"
        else structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler: logging.Handler = (
        _SyslogHandler() if chosen == "syslog" else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
