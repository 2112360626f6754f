"""Domain: which interfaces are on the host now, kept current from the platform's events.

:class:`IfnetWatcher` turns :meth:`Platform.watch_ifnets` into "this NIC is present/absent"
for the supervisor: a vimage whose NIC or parent is absent waits on :meth:`wait_present`, and
one whose parent vanishes learns it from :meth:`wait_absent`. The set is the truth of the last
``list_ifnets`` plus the events since: it lists again on every (re)subscription, on a ``lost``
event, on a rename (devd reports renames in every vnet, so one cannot be believed without
looking) and every :attr:`resync_interval` seconds, which is also the polling fallback when
the platform cannot watch at all (devd not running). Presence is a hint: whoever acts on a
NIC still checks it (start's "on the host and not held" check), so a stale answer costs a
refused start, never a wrong move. No supervisor import: the domain calls in.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NoReturn

import structlog
import trio

from vimaged.errors import error_text
from vimaged.platforms import HOST_JID

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from vimaged.platforms import Platform
    from vimaged.platforms.ifnet_events import IfnetEvent

RESYNC_INTERVAL = 60.0
"""Seconds between full listings: what a missed event can cost at most, and the poll period
when the platform cannot watch."""
RETRY_FIRST_DELAY = 0.5
RETRY_MAX_DELAY = 30.0
"""Backoff between attempts to subscribe, doubling from the first."""
RESYNC_ATTEMPTS = 3
"""Listings discarded because events arrived meanwhile, before giving up until the next."""

log = structlog.get_logger()


class IfnetWatcher:
    """The host's interfaces by name, current within one event (or one resync interval)."""

    def __init__(self, plat: Platform, *, resync_interval: float = RESYNC_INTERVAL) -> None:
        if not resync_interval > 0 or math.isinf(resync_interval):
            raise ValueError(f"resync_interval {resync_interval!r}: must be a positive number")
        self._plat = plat
        self.resync_interval = resync_interval
        self._present: set[str] | None = None
        self._changed = trio.Event()
        self._applied = 0
        """Events applied so far: a listing that saw others arrive meanwhile is stale."""
        self.watching = False
        """Whether events arrive now (False: polling every resync_interval only)."""
        self.resyncs = 0

    # -- what the domain asks ----------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """Whether a first listing has been taken (before it, nothing is known)."""
        return self._present is not None

    @property
    def present(self) -> frozenset[str]:
        """The names on the host now (empty before the first listing)."""
        return frozenset(self._present or ())

    def is_present(self, name: str) -> bool | None:
        """Whether ``name`` is on the host; ``None`` before the first listing."""
        return None if self._present is None else name in self._present

    @property
    def next_change(self) -> trio.Event:
        """The event set at the next change of :attr:`present`: taken before looking, then
        waited on, no change falls between the look and the wait."""
        return self._changed

    async def wait_changed(self) -> None:
        """Return at the next change of :attr:`present` (or the first listing)."""
        await self._changed.wait()

    async def wait_synced(self) -> None:
        """Return once the first listing has been taken."""
        while self._present is None:
            await self._changed.wait()

    async def wait_present(self, name: str) -> None:
        """Return once ``name`` is on the host (at once if it is). Cancellation: safe; the
        caller owns the deadline (``with trio.move_on_after(...)``)."""
        while True:
            changed = self._changed
            if self._present is not None and name in self._present:
                return
            await changed.wait()

    async def wait_absent(self, name: str) -> None:
        """Return once ``name`` is not on the host (a parent vanishing, a NIC unplugged; also
        a NIC moved into a jail, which leaves the host's vnet). Cancellation: safe."""
        while True:
            changed = self._changed
            if self._present is not None and name not in self._present:
                return
            await changed.wait()

    # -- keeping it current ------------------------------------------------------------------

    def _set(self, names: set[str]) -> None:
        if names != self._present:
            before = self._present or set()
            for name in sorted(names - before):
                log.info("ifnet.arrived", ifname=name)
            for name in sorted(before - names):
                log.info("ifnet.departed", ifname=name)
            self._present = names
            self._changed.set()
            self._changed = trio.Event()

    async def resync(self) -> None:
        """List the host's interfaces and take that as the truth.

        A listing during which events were applied may predate them: it is taken again.
        Raises ``OSError`` from the platform. Cancellation: safe; nothing is half-applied.
        """
        for _ in range(RESYNC_ATTEMPTS):
            seen = self._applied
            names = {i.name for i in await self._plat.list_ifnets(HOST_JID)}
            if self._applied == seen:
                self.resyncs += 1
                self._set(names)
                return
        # Events keep coming; each is applied as it comes and the next resync settles it.

    async def _apply(self, event: IfnetEvent) -> None:
        self._applied += 1
        if event.kind in ("lost", "rename") or self._present is None:
            await self.resync()
            return
        names = set(self._present)
        if event.kind == "attach":
            names.add(event.name)
        else:
            names.discard(event.name)
        self._set(names)

    async def _consume(self, events: AsyncIterator[IfnetEvent]) -> None:
        async for event in events:
            await self._apply(event)

    async def _serve_events(self, task_status: trio.TaskStatus[None]) -> NoReturn:
        delay = RETRY_FIRST_DELAY
        started = False
        while True:
            try:
                async with self._plat.watch_ifnets() as events:
                    self.watching = True
                    await self.resync()  # after subscribing: nothing falls between
                    delay = RETRY_FIRST_DELAY
                    if not started:
                        started = True
                        task_status.started()
                    await self._consume(events)
            except OSError as exc:
                log.warning("ifnet.watch_failed", errno=exc.errno, error=error_text(exc))
            finally:
                self.watching = False
            if not started:
                # Cannot watch yet: poll instead (serve's resync loop), and keep trying.
                started = True
                try:
                    await self.resync()
                except OSError as exc:
                    log.warning("ifnet.resync_failed", errno=exc.errno, error=error_text(exc))
                task_status.started()
            await trio.sleep(delay)
            delay = min(RETRY_MAX_DELAY, delay * 2)

    async def _serve_resyncs(self) -> NoReturn:
        while True:
            await trio.sleep(self.resync_interval)
            try:
                await self.resync()
            except OSError as exc:
                log.warning("ifnet.resync_failed", errno=exc.errno, error=error_text(exc))

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Keep :attr:`present` current until cancelled; run under ``nursery.start``, which
        returns once a first subscription was tried (and, if it worked, listed).

        Cancellation: the only way out; the subscription is closed.
        """
        async with trio.open_nursery() as nursery:
            await nursery.start(self._serve_events)
            nursery.start_soon(self._serve_resyncs)
            task_status.started()
            await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover
