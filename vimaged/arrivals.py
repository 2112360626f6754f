"""Vimages whose NICs arrive late, and parents that come and go (issue 13 item 5).

A start whose NIC (``_vnets``) or parent (``_bridges``) is in no vnet at all (the watcher's
hint, confirmed by ``locate_ifnet``) does not fail: the vimage goes ``waiting``, nothing made,
``waiting_for`` naming what is absent, and a task here starts it (through the supervisor's
``resume``) once every one of them is on the host. A NIC inside some jail (held by another
vimage, pending return) is not absent: the start's own check refuses it as before. ``stop``
ends the wait (:meth:`Arrivals.cancel`). The journal says ``desired=running`` meanwhile, so a
daemon restarted later waits again.

A parent that leaves the host under running vimages makes them degraded (health.py: "parent
em0 is gone", checked at once); when it is back they are restarted (stop, then start). That is
the simplest correct re-wiring: the parent's ng_ether node went with it (ng_ether_detach,
sys/netgraph/ng_ether.c), so the bridge lost its link, and a start builds the bridge on the new
node through the one code path that already does it. Only parents are watched for absence: a
moved NIC leaves the host by design (if_vmove).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import structlog
import trio

from vimaged.errors import VimagedError, error_text
from vimaged.ifwatch import IfnetWatcher

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Mapping

    from vimaged.config import VimageConfig
    from vimaged.health import HealthMonitor
    from vimaged.platforms import Platform
    from vimaged.protocol import Outcome
    from vimaged.state import Journal
    from vimaged.vimage import Vimage

log = structlog.get_logger()


class Startable(Protocol):
    """What a wait's end and a re-wiring need of the daemon (the supervisor)."""

    @property
    def stopping(self) -> bool: ...

    async def start(self, names: Iterable[str]) -> list[Outcome]: ...

    async def restart(self, names: Iterable[str]) -> list[Outcome]: ...

    async def start_waited(self, v: Vimage, scope: trio.CancelScope) -> Outcome: ...

    def emit(self, event: str, vimage: str | None, **fields: Any) -> None: ...


def needed_ifnets(cfg: VimageConfig) -> tuple[str, ...]:
    """The host interfaces a start needs: its NICs, then its parents, each once."""
    return tuple(dict.fromkeys((*cfg.vnets, *(b.parent for b in cfg.bridges))))


class Arrivals:
    """The waits of ``waiting`` vimages and the watch on running vimages' parents."""

    def __init__(
        self,
        daemon: Startable,
        *,
        platform: Platform,
        journal: Journal,
        health: HealthMonitor,
        vimages: Callable[[], Mapping[str, Vimage]],
        pending: Callable[[], Collection[str]],
    ) -> None:
        self._daemon = daemon
        self._platform = platform
        self._journal = journal
        self._health = health
        self._vimages = vimages
        self._pending = pending
        """NICs on their way home: in a (dying) jail, never absent (locate may not see it)."""
        self.ifnets = IfnetWatcher(platform)
        self._nursery: trio.Nursery | None = None
        self._progress = trio.Event()
        """Set when a wait ended: a dependent waiting on that vimage looks again."""
        self._gone: dict[str, set[str]] = {}
        """Running vimage -> its parents seen gone from the host."""
        self._by_parent: dict[str, list[str]] | None = None
        """Parent -> the vimages bridged to it, built on demand (:meth:`config_changed`)."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the interface watcher going, the waits and the parents' watch; returns once
        the watcher has tried its first listing."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.ifnets.serve)
            self._nursery = nursery
            nursery.start_soon(self._watch_parents)
            task_status.started()
            await trio.sleep_forever()

    # ------------------------------------------------------------------ waiting

    async def absent(self, cfg: VimageConfig) -> tuple[str, ...]:
        """What ``cfg`` needs that is in no vnet; () until the watcher runs (then the start's
        own check decides, as before)."""
        if self._nursery is None:
            return ()
        pending = self._pending()
        hinted = [
            n for n in needed_ifnets(cfg) if self.ifnets.is_present(n) is False and n not in pending
        ]
        return tuple([n for n in hinted if await self._platform.locate_ifnet(n) is None])

    async def defer(self, v: Vimage, missing: tuple[str, ...]) -> bool:
        """Make ``v`` wait for ``missing`` (absent NICs, waiting dependencies) instead of
        starting now. False: it cannot wait (not stopped or failed, removed, no watcher)."""
        async with v.lock:
            if (
                self._nursery is None
                or v.removed
                or v.state not in ("stopped", "failed", "waiting")
            ):
                return False
            if v.state == "waiting" and v.wait_scope is not None:
                v.waiting_for = missing
                return True  # its task starts it
            await self._journal.set_vimage(v.name, desired="running", jid=None)
            v.transition("waiting")
            v.error, v.waiting_for = None, missing
            v.wait_scope = scope = trio.CancelScope()
            self._daemon.emit("vimage.waiting", v.name, waiting_for=" ".join(missing))
            self._nursery.start_soon(self._wait_then_start, v, scope)
            return True

    async def cancel(self, v: Vimage, *, record: bool = True) -> None:
        """End ``v``'s wait (a stop); the caller holds ``v.lock`` and saw it ``waiting``."""
        if v.wait_scope is not None:
            v.wait_scope.cancel()
        v.wait_scope, v.waiting_for = None, ()
        if record:
            await self._journal.set_vimage(v.name, desired="stopped", jid=None)
        v.transition("stopped")
        self._daemon.emit("vimage.stopped", v.name, waited=True)

    def _missing(self, v: Vimage) -> tuple[str, ...]:
        """What ``v`` still waits for, by the watcher's hint alone: one look per change for
        each waiting vimage, no system call (start's own check confirms)."""
        pending = self._pending()
        absent = [n for n in needed_ifnets(v.cfg) if not self.ifnets.is_present(n)]
        vimages = self._vimages()
        waiting = [d for d in v.cfg.depend if d in vimages and vimages[d].state == "waiting"]
        return (*(n for n in absent if n not in pending), *waiting)

    async def _wait_then_start(self, v: Vimage, scope: trio.CancelScope) -> None:
        structlog.contextvars.clear_contextvars()  # spawned by a request; not its log lines
        while True:
            with scope:
                while True:
                    changes = (self.ifnets.next_change, self._progress)  # before looking
                    missing = self._missing(v)
                    if not missing:
                        break
                    v.waiting_for = missing
                    await _first_of(changes)
            if scope.cancel_called:
                return
            log.info("vimage.wait_ended", vimage=v.name)
            again = await self._resume(v, scope)
            self._progress.set()
            self._progress = trio.Event()
            if not again or v.state != "waiting" or v.wait_scope is not scope:
                return
            v.wait_scope = scope = trio.CancelScope()  # a scope is entered once

    async def _resume(self, v: Vimage, scope: trio.CancelScope) -> bool:
        """Start ``v``, whose wait ended: its dependencies first (True: one of them waits
        now, so ``v`` waits on), then ``v`` itself, unless a stop ended the wait meanwhile."""
        daemon = self._daemon
        if daemon.stopping:
            return False
        if v.cfg.depend:
            try:
                outcomes = await daemon.start(v.cfg.depend)
            except VimagedError:
                return False  # shutting down
            if any(o.state == "waiting" for o in outcomes):
                return True
            broken = [o.name for o in outcomes if not o.ok]
            if broken:
                async with v.lock:
                    if v.state == "waiting" and v.wait_scope is scope:
                        v.wait_scope, v.waiting_for = None, ()
                        v.error = f"{v.name}: dependency {', '.join(broken)} did not start"
                        await self._journal.set_vimage(v.name, desired="stopped", jid=None)
                        v.transition("failed")
                        daemon.emit("vimage.start_failed", v.name, error=v.error)
                return False
        outcome = await daemon.start_waited(v, scope)
        if not outcome.ok:
            log.warning("vimage.start_after_wait_failed", vimage=v.name, error=outcome.message)
        return False

    # ------------------------------------------------------------------ parents

    async def _rewire(self, v: Vimage) -> None:
        """A parent of running ``v`` came back: restart it, which builds its bridges anew."""
        self._health.recheck("a parent came back")  # the wiring seen while it was gone is stale
        try:
            [outcome] = await self._daemon.restart([v.name])
        except VimagedError as exc:  # shutting down
            log.warning("vimage.rewire_failed", vimage=v.name, error=error_text(exc))
            return
        if not outcome.ok:
            log.warning("vimage.rewire_failed", vimage=v.name, error=outcome.message)
        else:
            self._daemon.emit("vimage.rewired", v.name, jid=v.jid)

    def config_changed(self) -> None:
        """A vimage's configuration changed (a reload, or a start that applied one)."""
        self._by_parent = None

    async def _watch_parents(self) -> NoReturn:
        last = self.ifnets.present
        while True:
            await self.ifnets.wait_changed()
            present = self.ifnets.present
            changed, last = present ^ last, present
            if self._by_parent is None:
                self._by_parent = {}
                for v in self._vimages().values():
                    for parent in dict.fromkeys(b.parent for b in v.cfg.bridges):
                        self._by_parent.setdefault(parent, []).append(v.name)
            # only the vimages of parents that came or went: a start --all of 10,000 changes
            # the host's interfaces 10,000 times
            touched = {n for parent in changed for n in self._by_parent.get(parent, ())}
            if touched:
                self.parents_changed(present, touched)

    def parents_changed(self, present: frozenset[str], names: Iterable[str]) -> None:
        """Compare the parents of running vimages ``names`` with ``present``: newly gone ones
        are logged and checked at once (degraded); one whose parents are back is re-wired."""
        lost = False
        vimages = self._vimages()
        for v in [vimages[n] for n in sorted(names) if n in vimages]:
            if v.state != "running" or not v.cfg.bridges:
                self._gone.pop(v.name, None)
                continue
            before = self._gone.get(v.name, set())
            now = {b.parent for b in v.cfg.bridges if b.parent not in present}
            for parent in sorted(now - before):
                lost = True
                self._daemon.emit("ifnet.parent_gone", v.name, ifname=parent)
            if now:
                self._gone[v.name] = now
                continue
            self._gone.pop(v.name, None)
            if before and self._nursery is not None:
                self._daemon.emit("ifnet.parent_back", v.name, ifnames=" ".join(sorted(before)))
                self._nursery.start_soon(self._rewire, v)
        if lost:
            self._health.recheck("a parent left the host")


async def _first_of(events: tuple[trio.Event, ...]) -> None:
    """Until one of ``events`` is set: an interface came or went, or another wait ended."""
    async with trio.open_nursery() as race:

        async def first(event: trio.Event) -> None:
            await event.wait()
            race.cancel_scope.cancel()

        for event in events:
            race.start_soon(first, event)
