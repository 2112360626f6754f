"""Restarts by policy: what happens to a vimage its health check found ``failed``.

``_restart=no`` leaves it to the operator; ``on-failure`` and ``always`` restart it after an
exponential backoff with jitter; ``always`` also retries a start that failed. A circuit breaker
stops the restarts after ``_restart_limit`` failures within ``_restart_window`` seconds: the
vimage then stays ``failed`` until an operator starts it (:meth:`RestartPolicy.reset`).

It acts through the narrow :class:`Restartable` seam, never on the platform itself.
"""

from __future__ import annotations

import random
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

import structlog
import trio

from vimaged.errors import VimagedError, error_text

if TYPE_CHECKING:
    from vimaged.vimage import Vimage

log = structlog.get_logger()

RESTART_FIRST_DELAY = 1.0
RESTART_MAX_DELAY = 60.0


class Restartable(Protocol):
    """What a restart needs of the daemon (the supervisor gives its lifecycle)."""

    @property
    def stopping(self) -> bool:
        """The daemon is shutting down: restart nothing."""
        ...

    async def stop_vimage(self, v: Vimage, *, restarting: bool = False) -> None: ...

    async def start_vimage(self, v: Vimage) -> None: ...

    async def fail_vimage(self, v: Vimage, error: str) -> None: ...

    def emit(self, event: str, vimage: str | None, **fields: Any) -> None: ...


def backoff(failures: int) -> float:
    """The wait before restart number ``failures`` (1-based): doubling, capped, with jitter
    (half to full of the step), so vimages that failed together do not restart in lockstep."""
    step = min(RESTART_MAX_DELAY, RESTART_FIRST_DELAY * 2 ** (failures - 1))
    return random.uniform(step / 2, step)


class RestartPolicy:
    def __init__(self, daemon: Restartable) -> None:
        self._daemon = daemon
        self._failures: dict[str, deque[float]] = {}

    def reset(self, name: str) -> None:
        """An operator acted: close the circuit breaker."""
        self._failures.pop(name, None)

    def circuit_open(self, v: Vimage) -> bool:
        """Its circuit breaker is open: no more restarts until an operator starts it (metrics)."""
        return len(self._failures.get(v.name, ())) >= v.cfg.restart_limit

    async def recover(self, v: Vimage, reason: str | None) -> None:
        """Act on a failed vimage: clean up a vanished jail, restart per policy."""
        daemon = self._daemon
        if reason == "jail gone":
            try:
                await daemon.fail_vimage(v, "the jail disappeared")
            except (OSError, VimagedError) as exc:
                # fail_vimage left it failed with what it could not undo; nothing to restart
                log.error("vimage.cleanup_failed", vimage=v.name, error=error_text(exc))
                return
        policy = v.cfg.restart
        if policy == "no" or daemon.stopping:
            return
        failures = self._failures.setdefault(v.name, deque())
        now = trio.current_time()
        failures.append(now)
        while failures and now - failures[0] > v.cfg.restart_window:
            failures.popleft()
        if len(failures) >= v.cfg.restart_limit:
            v.error = (
                f"circuit breaker open: {len(failures)} failures within "
                f"{v.cfg.restart_window:g}s; start it by hand to retry"
            )
            daemon.emit("vimage.circuit_open", v.name, failures=len(failures))
            if v.state == "running":
                await daemon.fail_vimage(v, v.error)
            return
        await trio.sleep(backoff(len(failures)))
        v.restarts += 1
        daemon.emit("vimage.restarting", v.name, attempt=v.restarts, reason=reason)
        try:
            if v.state != "stopped" and v.state != "failed":
                await daemon.stop_vimage(v, restarting=True)
            await daemon.start_vimage(v)
        except (VimagedError, OSError) as exc:
            log.error("vimage.restart_failed", vimage=v.name, error=error_text(exc))
            if policy == "always":
                await self.recover(v, "start failed")
