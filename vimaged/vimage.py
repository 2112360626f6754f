"""One configured vimage as the daemon sees it, and the transitions it may make.

Domain layer, shared by the supervisor, the lifecycle, reconciliation, the views, health and
restarts; it imports none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import trio

from vimaged.errors import ConflictError

if TYPE_CHECKING:
    from vimaged.config import VimageConfig
    from vimaged.protocol import HealthState, LinkStats, State

ALLOWED: dict[State, frozenset[State]] = {
    "stopped": frozenset({"starting", "waiting"}),
    "waiting": frozenset({"starting", "stopped", "failed"}),
    "starting": frozenset({"running", "failed", "stopped"}),
    "running": frozenset({"stopping", "failed"}),
    "stopping": frozenset({"stopped", "failed"}),
    "failed": frozenset({"starting", "stopping", "stopped", "waiting"}),
}
"""The lifecycle. ``failed`` keeps what could not be cleaned up visible until an operator acts;
``waiting`` (nothing made yet) starts when its absent NICs appear (arrivals.py)."""


class Vimage:
    """The daemon's view of one configured vimage."""

    def __init__(self, cfg: VimageConfig) -> None:
        self.cfg = cfg
        """The configuration it runs with (or will start with)."""
        self.next_cfg: VimageConfig | None = None
        """A configuration reloaded while running: applied at the next start."""
        self.removed = False
        """Gone from the configuration while running: forgotten once stopped."""
        self.state: State = "stopped"
        self.jid: int | None = None
        self.lock = trio.Lock()
        self.health: HealthState = "unknown"
        self.health_reason: str | None = None
        self.error: str | None = None
        self.restarts = 0
        self.intent: Literal["running", "stopped"] | None = None
        """The operator's last word (start or stop; seeded from the journal at start-up);
        ``None``: vimage_enable's autostart decides whether it is wanted running."""
        self.start_scope: trio.CancelScope | None = None
        """The scope of a start in progress, so that a stop can interrupt it."""
        self.wait_scope: trio.CancelScope | None = None
        """The scope of a ``waiting`` vimage's wait (arrivals.py), so that a stop ends it."""
        self.waiting_for: tuple[str, ...] = ()
        """What a ``waiting`` vimage waits for: absent NICs and parents, waiting dependencies."""
        self.addresses: dict[str, tuple[str, ...]] = {}
        """IPv4/IPv6 addresses of each interface inside the vimage, last time anyone looked
        (a health poll, or ``status``)."""
        self.link_stats: dict[str, LinkStats] = {}
        """Bridge link counters of each bridged interface, as of the last health check."""

    @property
    def name(self) -> str:
        return self.cfg.name

    def transition(self, new: State) -> None:
        if new != self.state and new not in ALLOWED[self.state]:
            raise ConflictError(f"{self.name}: cannot go from {self.state} to {new}")
        self.state = new
