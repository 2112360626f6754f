"""The supervisor: the requests, and the wiring of the domain layer.

It answers ``start``/``stop``/``restart`` (dependencies first, at most
``vimage_parallel_start`` at once, each vimage under its own lock), ``list``/``status``, and
``reload`` (with ``host_nics``, the one check that a configuration's NICs exist).
:meth:`Supervisor.run` keeps the return watcher and the health polls going and reconciles at
start-up and again whenever the platform comes back after it was lost.

The steps themselves have their own owners: ``lifecycle`` (start/stop as journaled steps),
``resources`` (the journaled step and the UNDO table), ``reconcile``, ``hooks``, ``views``,
``health`` (verdicts) and ``restarts`` (policy). docs/design.md has the map.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import structlog
import trio

from vimaged.arrivals import Arrivals
from vimaged.dependents import UP, dependents_of, stop_levels
from vimaged.errors import (
    ConflictError,
    DependentsRunningError,
    NotFoundError,
    OperationFailedError,
    ShuttingDownError,
    VimagedError,
    describe_oserror,
    errno_name,
    error_text,
)
from vimaged.health import HealthMonitor
from vimaged.hooks import Hooks
from vimaged.host_nics import host_nic_warnings
from vimaged.lifecycle import (
    ADDRESS_LOOK_TIMEOUT,
    CLEANUP_GRACE,
    Lifecycle,
    MacBook,
    SharedParts,
    refuse_if_removed,
)
from vimaged.protocol import Outcome, Reloaded
from vimaged.reconcile import Reconciler
from vimaged.resources import Resources
from vimaged.restarts import RestartPolicy
from vimaged.views import vimage_info
from vimaged.vimage import ALLOWED, Vimage
from vimaged.vnets import ReturnWatcher

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from vimaged.config import Config
    from vimaged.events import EventHub
    from vimaged.platforms import Platform
    from vimaged.protocol import VimageInfo
    from vimaged.state import Journal

__all__ = [
    "ALLOWED",
    "CLEANUP_GRACE",
    "PARALLEL_STARTS",
    "Supervisor",
    "Vimage",
]

log = structlog.get_logger()

PARALLEL_STARTS = 8
"""At most this many vimages start or stop at once (``vimage_parallel_start``)."""


class Supervisor:
    def __init__(self, cfg: Config, platform: Platform, journal: Journal, events: EventHub) -> None:
        self.cfg = cfg
        self.platform = platform
        self.journal = journal
        self.events = events
        self.vimages: dict[str, Vimage] = {v.name: Vimage(v) for v in cfg.vimages}
        self.watcher = ReturnWatcher(platform, journal, events)
        self.restarts = RestartPolicy(self)
        self.health = HealthMonitor(platform, self.watcher, events, self.restarts.recover)
        self.arrivals = Arrivals(
            self,
            platform=platform,
            journal=journal,
            health=self.health,
            vimages=lambda: self.vimages,
            pending=lambda: self.watcher.pending,
        )
        self.stopping = False
        self.attachment_ifnets: set[str] = set()
        """Host-side names of vimaged-cni's attachments (attachments.py fills it): not orphans."""
        self._limiter = trio.CapacityLimiter(PARALLEL_STARTS)
        self.macs = MacBook(platform, journal)
        self.macs.follow(self.vimages.values())
        self.resources = Resources(platform, journal, events, self.watcher)
        parts = SharedParts(
            platform=platform,
            journal=journal,
            events=events,
            watcher=self.watcher,
            resources=self.resources,
            health=self.health,
            macs=self.macs,
        )
        self.lifecycle = Lifecycle(
            parts,
            hooks=Hooks(platform, events),
            config=lambda: self.cfg,
            vimages=lambda: list(self.vimages.values()),
            forget_if_gone=self._forget_if_gone,
        )
        self.reconciler = Reconciler(
            parts,
            vimages=self.vimages,
            pending_nics=self._pending_nics,
            spared=self.attachment_ifnets,
        )

    # ------------------------------------------------------------------ running

    async def run(
        self, *, boot: bool = True, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Reconcile with the kernel, then keep the watchers and health polls going.

        ``boot`` is the first daemon since the host booted: ``vimage_enable`` starts
        ``vimage_list`` then, as rc.d would. A later daemon (an upgrade, a crash restarted by
        daemon(8)) instead restores what the journal says the operator wanted, so a vimage
        stopped by hand stays stopped.
        """
        async with trio.open_nursery() as nursery:
            await nursery.start(self.arrivals.run)  # interfaces listed: absent NICs known
            await nursery.start(self.watcher.run)
            await nursery.start(self.health.run)
            for name, record in (await self.journal.vimages()).items():
                if name in self.vimages:  # before reconcile rewrites what it rolls back
                    self.vimages[name].intent = record.desired
            await self.reconcile(resume=not boot)
            wait_reconnected = getattr(self.platform, "wait_reconnected", None)
            if wait_reconnected is not None:
                nursery.start_soon(self._reconcile_on_reconnect, wait_reconnected)
            task_status.started()
            if boot and self.cfg.enable:
                outcomes = await self.start([v.name for v in self.cfg.vimages])
                for outcome in outcomes:
                    if not outcome.ok:
                        log.error(
                            "vimage.autostart_failed", vimage=outcome.name, error=outcome.message
                        )
            await trio.sleep_forever()

    async def reconcile(self, *, resume: bool = True) -> None:
        """Converge the journal with the kernel (reconcile.py), before requests are served;
        with ``resume``, start again what was being started when the daemon was killed."""
        retry = await self.reconciler.reconcile()
        if retry and resume:
            for outcome in await self.start(retry):
                if not outcome.ok:
                    log.error(
                        "vimage.restart_after_recovery_failed",
                        vimage=outcome.name,
                        error=outcome.message,
                    )

    async def _reconcile_on_reconnect(
        self, wait_reconnected: Callable[[], Awaitable[None]]
    ) -> None:
        """The platform was lost and found (the sim host restarted: a new boot, other jails):
        reconcile against it while requests are served, then check every vimage at once."""
        while True:
            await wait_reconnected()
            structlog.contextvars.clear_contextvars()
            try:
                self.journal.boot_id = await self.platform.boot_id()  # rows are of this boot now
                await self.reconciler.reconcile(live=True)
            except (OSError, VimagedError) as exc:  # lost again: the next reconnect retries
                log.warning("reconcile.after_reconnect_failed", error=error_text(exc))
            else:
                self.events.emit("platform.reconciled", None)
            self.health.recheck("platform reconnected")

    def _get(self, name: str) -> Vimage:
        try:
            return self.vimages[name]
        except KeyError:
            raise NotFoundError(f"no vimage named {name!r} is configured") from None

    def _refuse_if_stopping(self) -> None:
        if self.stopping:
            raise ShuttingDownError("vimaged is shutting down")

    # ------------------------------------------------------------------ the lifecycle

    async def start_vimage(self, v: Vimage) -> None:
        """Start ``v``, or make it wait (``waiting``) if a NIC or parent it needs is absent."""
        if v.state in ("stopped", "failed", "waiting"):
            missing = await self.arrivals.absent(v.cfg)
            if missing and await self.arrivals.defer(v, missing):
                return
        cfg = v.cfg
        try:
            await self.lifecycle.start_vimage(v)
        finally:
            if v.cfg is not cfg:  # a reloaded configuration was applied
                self.arrivals.config_changed()

    async def stop_vimage(self, v: Vimage, *, restarting: bool = False) -> None:
        if v.state == "waiting":
            async with v.lock:
                if v.state == "waiting":  # nothing was made: the wait ends, that is all
                    await self.arrivals.cancel(v, record=not restarting)
                    return
        await self.lifecycle.stop_vimage(v, restarting=restarting)

    async def start_waited(self, v: Vimage, scope: trio.CancelScope) -> Outcome:
        """Start ``v`` whose wait (``scope``) ended, unless a stop came first (arrivals.py)."""
        return await _guarded(v, partial(self.lifecycle.start_vimage, waited=scope))

    async def fail_vimage(self, v: Vimage, error: str) -> None:
        await self.lifecycle.fail_vimage(v, error)

    def emit(self, event: str, vimage: str | None, **fields: Any) -> None:
        self.events.emit(event, vimage, **fields)

    # ------------------------------------------------------------------ requests

    async def start(self, names: Iterable[str]) -> list[Outcome]:
        """Start ``names`` and what they depend on, dependencies first."""
        self._refuse_if_stopping()
        names = list(names)
        for name in names:
            refuse_if_removed(self._get(name))
            self.restarts.reset(name)  # an operator acted: close the circuit breaker
        levels = self.cfg.start_order(names)
        was_running = {n for level in levels for n in level if self._get(n).state == "running"}
        for level in levels:
            for name in level:
                self._get(name).intent = "running"
        outcomes: dict[str, Outcome] = {}
        for level in levels:
            failed = {n for n, o in outcomes.items() if not o.ok}
            if self.cfg.parallel_start:
                async with trio.open_nursery() as nursery:
                    for name in level:
                        nursery.start_soon(self._start_after_deps, name, failed, outcomes)
            else:
                for name in level:
                    await self._start_after_deps(name, failed, outcomes)
        # the dependencies it started (or could not) first, in start order, then the named
        named = set(names)  # not the list: N² at 10,000
        started = [n for level in levels for n in level if n not in named]
        return [outcomes[n] for n in started if n not in was_running or not outcomes[n].ok] + [
            outcomes[n] for n in names
        ]

    async def _start_after_deps(
        self, name: str, failed: set[str], outcomes: dict[str, Outcome]
    ) -> None:
        v = self._get(name)
        broken = [d for d in v.cfg.depend if d in failed]
        if broken:
            outcomes[name] = _outcome(
                v, ConflictError(f"{name}: dependency {', '.join(broken)} did not start")
            )
            return
        waiting = tuple(d for d in v.cfg.depend if d in outcomes and outcomes[d].state == "waiting")
        if waiting and await self.arrivals.defer(v, (*await self.arrivals.absent(v.cfg), *waiting)):
            outcomes[name] = Outcome(name=name, ok=True, state=v.state)
            return
        async with self._limiter:
            outcomes[name] = await _guarded(v, self.start_vimage)

    async def stop(
        self, names: Iterable[str], *, everything: bool = False, with_dependents: bool = False
    ) -> list[Outcome]:
        """Stop ``names``; with ``everything``, all vimages in reverse dependency order.

        A vimage that running ones depend on is refused (``DependentsRunningError``, before
        anything is stopped) unless ``with_dependents``: they are then stopped first, each
        level of dependents before what it depends on, one outcome per vimage stopped.
        """
        self._refuse_if_stopping()
        names = list(names)
        for name in names:
            self._get(name)
        if not everything:
            return await self._stop_named(names, with_dependents=with_dependents)
        for v in self.vimages.values():
            v.intent = "stopped"
        in_config = {c.name for c in self.cfg.vimages}  # not cfg.get per vimage: N² at 10,000
        configured = [n for n in self.vimages if n in in_config]
        levels = list(reversed(self.cfg.start_order(configured)))
        # Vimages a reload removed while they ran are in no dependency graph: stop them first.
        levels.insert(0, [n for n in self.vimages if n not in in_config])
        outcomes: dict[str, Outcome] = {}
        with self.health.stop_begun(list(self.vimages)):  # no polls of what queues to stop
            for level in levels:
                async with trio.open_nursery() as nursery:
                    for name in level:
                        if name in self.vimages:
                            nursery.start_soon(self._stop_one, name, outcomes)
        return list(outcomes.values())

    async def _stop_named(self, names: list[str], *, with_dependents: bool) -> list[Outcome]:
        dependents = dependents_of(self.vimages.values(), names)
        up = [n for n in self.vimages if n in dependents and n not in names
              and self.vimages[n].state in UP]  # fmt: skip
        if up and not with_dependents:
            them = "it" if len(names) == 1 else "them"
            raise DependentsRunningError(
                f"{', '.join(names)}: {', '.join(up)} depend on {them} and are running; stop "
                "them first, or stop with_dependents (vimagectl stop --with-dependents)"
            )
        chosen = set(names) | set(up)
        for name in chosen:
            self.vimages[name].intent = "stopped"
        outcomes: dict[str, Outcome] = {}
        for level in stop_levels(self.vimages, [*up, *names], chosen):
            for name in level:
                v = self.vimages[name]
                still_up = [d for d in dependents.get(name, ()) if d in chosen and d in outcomes
                            and not outcomes[d].ok]  # fmt: skip
                if still_up:
                    outcomes[name] = _outcome(v, ConflictError(
                        f"{name}: dependent {', '.join(still_up)} did not stop"
                    ))  # fmt: skip
                    continue
                outcomes[name] = await _guarded(v, self.stop_vimage)
        return list(outcomes.values())

    async def _stop_one(self, name: str, outcomes: dict[str, Outcome]) -> None:
        async with self._limiter:
            outcomes[name] = await _guarded(self._get(name), self.stop_vimage)

    async def restart(self, names: Iterable[str]) -> list[Outcome]:
        self._refuse_if_stopping()
        names = list(names)
        for name in names:
            refuse_if_removed(self._get(name))  # before stopping any: nothing half-done
        outcomes = []
        for name in names:
            v = self._get(name)
            v.intent = "running"  # the operator wants it running (health: issue 13.3)
            stopped = await _guarded(v, partial(self.stop_vimage, restarting=True))
            if not stopped.ok:
                outcomes.append(stopped)
                continue
            outcomes.append(await _guarded(v, self.start_vimage))
        return outcomes

    async def check_reload(self, cfg: Config) -> None:
        """Warn about a configuration naming a NIC that is nowhere (:func:`host_nic_warnings`;
        its vimages wait for it); NICs held by a vimage that runs, or on their way home,
        count as present."""
        held = {nic for v in self.vimages.values() if v.state != "stopped" for nic in v.cfg.vnets}
        held |= set(self.watcher.pending)  # still in a (dying) jail, on its way home
        for line in await host_nic_warnings(cfg, self.platform, held):
            log.warning("config.nic_absent", problem=line)

    def reload(self, cfg: Config) -> Reloaded:
        """Adopt a newly read configuration. Running vimages keep theirs until restarted."""
        self._refuse_if_stopping()
        added, removed, changed = [], [], []
        for new in cfg.vimages:
            v = self.vimages.get(new.name)
            if v is None:
                self.vimages[new.name] = Vimage(new)
                added.append(new.name)
                continue
            v.removed = False
            if new == v.cfg:
                v.next_cfg = None
            elif v.state in ("stopped", "waiting"):  # a wait looks at v.cfg again
                v.cfg, v.next_cfg = new, None  # not one reloaded while it ran, and stale
                changed.append(new.name)
            else:
                v.next_cfg = new
                changed.append(new.name)
        wanted = {v.name for v in cfg.vimages}
        for name, v in list(self.vimages.items()):
            if name in wanted:
                continue
            removed.append(name)
            if v.state == "waiting" and v.wait_scope is not None:
                v.wait_scope.cancel()  # nothing was made: it goes now, like a stopped one
                v.wait_scope, v.waiting_for = None, ()
                v.transition("stopped")
            if v.state == "stopped" and not self._pending_nics(name):
                del self.vimages[name]
            else:
                v.removed = True  # kept in view until stopped and its NICs are home
        self.cfg = cfg
        self.macs.follow(self.vimages.values())  # explicit MACs added, changed, released
        self.arrivals.config_changed()
        self.events.emit("config.reloaded", None, added=len(added), removed=len(removed))
        return Reloaded(added=tuple(added), removed=tuple(removed), changed=tuple(changed))

    # ------------------------------------------------------------------ views

    def info(self, name: str) -> VimageInfo:
        return self._info(self._get(name))

    def infos(self) -> list[VimageInfo]:
        return [self._info(self.vimages[name]) for name in self.listed_names()]

    def listed_names(self) -> list[str]:
        """The names a listing shows, in order (a snapshot: streamed listings look each one up
        as they go); drops vimages a reload removed once stopped with their NICs home."""
        for v in list(self.vimages.values()):
            self._forget_if_gone(v)  # its last NIC came home
        return list(self.vimages)

    def _info(self, v: Vimage) -> VimageInfo:
        return vimage_info(
            v, macs=self.macs.known, bridge_modes=self.health.bridge_modes,
            pending=self.watcher.pending, wanted=self.wanted(v),
        )  # fmt: skip

    def wanted(self, v: Vimage) -> bool:
        """Wanted running: the operator's last word, else vimage_enable's autostart."""
        if v.intent is not None:
            return v.intent == "running"
        return self.cfg.enable and not v.removed

    async def observe_addresses(self, names: Iterable[str]) -> None:
        """Look again at the addresses inside the named running vimages (``status``). Bounded:
        a slow platform leaves the last poll's addresses in the reply."""
        with trio.move_on_after(ADDRESS_LOOK_TIMEOUT):
            for name in names:
                v = self.vimages.get(name)
                if v is None or v.state != "running" or v.jid is None:
                    continue
                try:
                    ifnets = await self.platform.list_ifnets(v.jid)
                except OSError as exc:  # the jail is going away: the health poll will see it
                    log.info("vimage.addresses_unreadable", vimage=name, error=error_text(exc))
                    continue
                v.addresses = {ifnet.name: ifnet.addresses for ifnet in ifnets}

    def _pending_nics(self, vimage: str) -> list[str]:
        return [p.ifname for p in self.watcher.pending.values() if p.vimage == vimage]

    def _forget_if_gone(self, v: Vimage) -> None:
        """Drop a vimage a reload removed, once it is stopped and its last NIC is home."""
        if v.removed and v.state == "stopped" and not self._pending_nics(v.name):
            self.vimages.pop(v.name, None)
            self.macs.forget(v.name)


async def _guarded(v: Vimage, op: Callable[[Vimage], Awaitable[None]]) -> Outcome:
    try:
        await op(v)
    except VimagedError as exc:
        return _outcome(v, exc)
    except OSError as exc:
        return _outcome(v, OperationFailedError(describe_oserror(exc), errno_name=errno_name(exc)))
    return Outcome(name=v.name, ok=True, state=v.state)


def _outcome(v: Vimage, exc: VimagedError) -> Outcome:
    return Outcome(
        name=v.name,
        ok=False,
        state=v.state,
        code=exc.code,
        message=str(exc),
        errno_name=getattr(exc, "errno_name", None) or _cause_errno(exc),
    )


def _cause_errno(exc: BaseException) -> str | None:
    """The errno name of the OSError behind a domain error, if it was raised from one."""
    cause = exc.__cause__
    return errno_name(cause) if cause is not None else None
