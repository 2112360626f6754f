"""The supervisor: desired versus actual state of every vimage.

Domain layer: it decides, the :class:`~vimaged.platforms.Platform` acts. One ``trio.Lock`` per
vimage serializes operations on it while different vimages proceed in parallel; one lock per
parent NIC serializes changes to that NIC's bridge. Every kernel change is journaled before it
is made (``state.Journal``), so :meth:`Supervisor.reconcile` can converge after a crash.

Start order: create the jail, build each bridged interface and move it in, move the NICs in,
run ``exec_start``. Stop order: ``exec_stop``, ``-vnet`` every moved NIC *before* the jail goes
(a dying jail keeps its NICs), shut down the bridged interfaces (before jail removal, the
workaround for FreeBSD PR 238326), remove the jail, remove bridges left without interfaces.
A failed start undoes what it did, in reverse.
"""

from __future__ import annotations

import contextlib
import errno as errnos
import math
from collections import defaultdict
from functools import partial
from typing import TYPE_CHECKING

import structlog
import trio

from vimaged import macs
from vimaged.command_output import CommandOutput
from vimaged.config import VimageConfig
from vimaged.errors import (
    ConflictError,
    NotFoundError,
    OperationFailedError,
    ShuttingDownError,
    VimagedError,
)
from vimaged.health import HealthMonitor
from vimaged.platforms import HOST_JID, JailSpec
from vimaged.protocol import (
    HealthState,
    Interface,
    LinkStats,
    Outcome,
    Reloaded,
    State,
    VimageInfo,
)
from vimaged.vnets import ReturnWatcher

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from vimaged.config import Bridge, Config
    from vimaged.events import EventHub
    from vimaged.platforms import Platform
    from vimaged.state import Journal, Resource

log = structlog.get_logger()

ALLOWED: dict[State, frozenset[State]] = {
    "stopped": frozenset({"starting"}),
    "starting": frozenset({"running", "failed", "stopped"}),
    "running": frozenset({"stopping", "failed"}),
    "stopping": frozenset({"stopped", "failed"}),
    "failed": frozenset({"starting", "stopping", "stopped"}),
}
"""The lifecycle. ``failed`` keeps what could not be cleaned up visible until an operator acts."""

CLEANUP_GRACE = 60.0
"""How long shielded cleanup (rollback, reconciliation) may take once cancelled."""

ADDRESS_LOOK_TIMEOUT = 5.0
"""How long ``status`` may spend looking at the addresses inside the vimages it names."""

PARALLEL_STARTS = 8
"""At most this many vimages start or stop at once (``vimage_parallel_start``)."""


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
        self.start_scope: trio.CancelScope | None = None
        """The scope of a start in progress, so that a stop can interrupt it."""
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


class Supervisor:
    def __init__(self, cfg: Config, platform: Platform, journal: Journal, events: EventHub) -> None:
        self.cfg = cfg
        self.platform = platform
        self.journal = journal
        self.events = events
        self.vimages: dict[str, Vimage] = {v.name: Vimage(v) for v in cfg.vimages}
        self.watcher = ReturnWatcher(platform, journal, events)
        self.health = HealthMonitor(self)
        self.stopping = False
        self._parent_locks: defaultdict[str, trio.Lock] = defaultdict(trio.Lock)
        self.attachment_ifnets: set[str] = set()
        """Host-side names of vimaged-cni's attachments (attachments.py fills it): not orphans."""
        self._limiter = trio.CapacityLimiter(PARALLEL_STARTS)
        self._host_uuid: str | None = None
        self._mac_cache: dict[tuple[str, int], str] = {}
        """Persisted MAC assignments, loaded from the journal by :meth:`reconcile`."""

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
            await nursery.start(self.watcher.run)
            await nursery.start(self.health.run)
            await self.reconcile(resume=not boot)
            task_status.started()
            if boot and self.cfg.enable:
                outcomes = await self.start([v.name for v in self.cfg.vimages])
                for outcome in outcomes:
                    if not outcome.ok:
                        log.error(
                            "vimage.autostart_failed", vimage=outcome.name, error=outcome.message
                        )
            await trio.sleep_forever()

    def _get(self, name: str) -> Vimage:
        try:
            return self.vimages[name]
        except KeyError:
            raise NotFoundError(f"no vimage named {name!r} is configured") from None

    def _refuse_if_stopping(self) -> None:
        if self.stopping:
            raise ShuttingDownError("vimaged is shutting down")

    # ------------------------------------------------------------------ requests

    async def start(self, names: Iterable[str]) -> list[Outcome]:
        """Start ``names`` and what they depend on, dependencies first."""
        self._refuse_if_stopping()
        names = list(names)
        for name in names:
            self._get(name)
            self.health.reset_failures(name)  # an operator acted: close the circuit breaker
        outcomes: dict[str, Outcome] = {}
        for level in self.cfg.start_order(names):
            failed = {n for n, o in outcomes.items() if not o.ok}
            if self.cfg.parallel_start:
                async with trio.open_nursery() as nursery:
                    for name in level:
                        nursery.start_soon(self._start_after_deps, name, failed, outcomes)
            else:
                for name in level:
                    await self._start_after_deps(name, failed, outcomes)
        return [outcomes[n] for n in names] + [
            o for n, o in outcomes.items() if n not in names and not o.ok
        ]

    async def _start_after_deps(
        self, name: str, failed: set[str], outcomes: dict[str, Outcome]
    ) -> None:
        v = self._get(name)
        broken = [d for d in v.cfg.depend if d in failed]
        if broken:
            outcomes[name] = self._outcome(
                v, ConflictError(f"{name}: dependency {', '.join(broken)} did not start")
            )
            return
        async with self._limiter:
            outcomes[name] = await self._guarded(v, self.start_vimage)

    async def stop(self, names: Iterable[str], *, everything: bool = False) -> list[Outcome]:
        """Stop ``names``; with ``everything``, all vimages in reverse dependency order."""
        self._refuse_if_stopping()
        names = list(names)
        for name in names:
            self._get(name)
        if not everything:
            return [await self._guarded(self._get(n), self.stop_vimage) for n in names]
        configured = [n for n in self.vimages if self.cfg.get(n) is not None]
        levels = list(reversed(self.cfg.start_order(configured)))
        # Vimages a reload removed while they ran are in no dependency graph: stop them first.
        levels.insert(0, [n for n in self.vimages if self.cfg.get(n) is None])
        outcomes: dict[str, Outcome] = {}
        for level in levels:
            async with trio.open_nursery() as nursery:
                for name in level:
                    if name in self.vimages:
                        nursery.start_soon(self._stop_one, name, outcomes)
        return list(outcomes.values())

    async def _stop_one(self, name: str, outcomes: dict[str, Outcome]) -> None:
        async with self._limiter:
            outcomes[name] = await self._guarded(self._get(name), self.stop_vimage)

    async def restart(self, names: Iterable[str]) -> list[Outcome]:
        self._refuse_if_stopping()
        names = list(names)
        for name in names:
            self._get(name)
        outcomes = []
        for name in names:
            v = self._get(name)
            stopped = await self._guarded(v, partial(self.stop_vimage, restarting=True))
            if not stopped.ok:
                outcomes.append(stopped)
                continue
            outcomes.append(await self._guarded(v, self.start_vimage))
        return outcomes

    async def _guarded(self, v: Vimage, op: Callable[[Vimage], Awaitable[None]]) -> Outcome:
        try:
            await op(v)
        except VimagedError as exc:
            return self._outcome(v, exc)
        except OSError as exc:
            return self._outcome(v, OperationFailedError(_describe_oserror(exc)))
        return Outcome(name=v.name, ok=True, state=v.state)

    @staticmethod
    def _outcome(v: Vimage, exc: VimagedError) -> Outcome:
        return Outcome(name=v.name, ok=False, state=v.state, code=exc.code, message=str(exc))

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
            elif v.state == "stopped":
                v.cfg = new
                changed.append(new.name)
            else:
                v.next_cfg = new
                changed.append(new.name)
        wanted = {v.name for v in cfg.vimages}
        for name, v in list(self.vimages.items()):
            if name in wanted:
                continue
            removed.append(name)
            if v.state == "stopped" and not self._pending_nics(name):
                del self.vimages[name]
            else:
                v.removed = True  # kept in view until stopped and its NICs are home
        self.cfg = cfg
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
        for name, v in list(self.vimages.items()):
            if v.removed and v.state == "stopped" and not self._pending_nics(name):
                del self.vimages[name]  # its last NIC came home
        return list(self.vimages)

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
                    log.info("vimage.addresses_unreadable", vimage=name, error=_error_text(exc))
                    continue
                v.addresses = {ifnet.name: ifnet.addresses for ifnet in ifnets}

    def _pending_nics(self, vimage: str) -> list[str]:
        return [p.ifname for p in self.watcher.pending.values() if p.vimage == vimage]

    def _info(self, v: Vimage) -> VimageInfo:
        running = v.state in ("starting", "running", "stopping") and v.jid is not None
        interfaces: list[Interface] = []
        macs_now = self._mac_cache
        for b in v.cfg.bridges:
            interfaces.append(
                Interface(
                    name=b.ifname,
                    kind="bridge",
                    parent=b.parent,
                    mac=b.mac or macs_now.get((v.name, b.index)),
                    where="vimage" if running else "absent",
                    addresses=v.addresses.get(b.ifname, ()) if running else (),
                    bridge_mode=self.health.bridge_modes.get(b.parent) if running else None,
                    link=v.link_stats.get(b.ifname) if running else None,
                )
            )
        # a NIC on its way home stays visible even if a reload took it out of the vnets
        dropped = [
            p.ifname
            for p in self.watcher.pending.values()
            if p.vimage == v.name and p.ifname not in v.cfg.vnets
        ]
        for nic in (*v.cfg.vnets, *dropped):
            pending = self.watcher.pending.get(nic)
            if pending is not None and pending.vimage == v.name:
                interfaces.append(
                    Interface(
                        name=nic,
                        kind="vnet",
                        where="pending-return",
                        holder_jid=pending.jid,
                        holder_dying=pending.dying,
                    )
                )
            else:
                interfaces.append(
                    Interface(
                        name=nic,
                        kind="vnet",
                        where="vimage" if running else "host",
                        addresses=v.addresses.get(nic, ()) if running else (),
                    )
                )
        return VimageInfo(
            name=v.name,
            state=v.state,
            jid=v.jid,
            health=v.health if v.state == "running" else "unknown",
            health_reason=v.health_reason if v.state == "running" else None,
            interfaces=tuple(interfaces),
            config_changed=v.next_cfg is not None or v.removed,
            error=v.error,
            restarts=v.restarts,
        )

    # ------------------------------------------------------------------ lifecycle

    async def start_vimage(self, v: Vimage) -> None:
        async with v.lock:
            if v.state == "running":
                return
            if v.removed:
                raise NotFoundError(f"{v.name} was removed from the configuration")
            if v.next_cfg is not None:
                v.cfg, v.next_cfg = v.next_cfg, None
            cfg = v.cfg
            v.transition("starting")
            v.error = None
            v.addresses = {}
            v.link_stats = {}
            self.events.emit("vimage.starting", v.name)
            try:
                with trio.CancelScope() as v.start_scope:
                    await self._start_steps(v, cfg)
                if v.start_scope.cancelled_caught:
                    raise OperationFailedError(f"{v.name}: start interrupted by a stop")
            except BaseException as exc:
                v.jid = None
                v.error = _error_text(exc)
                v.transition("failed")
                self.events.emit("vimage.start_failed", v.name, error=v.error)
                raise
            v.transition("running")
            v.health, v.health_reason = "unknown", None
            self.events.emit("vimage.started", v.name, jid=v.jid)
            with trio.move_on_after(ADDRESS_LOOK_TIMEOUT):
                await self.health.first_check(v)  # list shows a verdict now (issue 15.4)
            self.health.watch(v, checked=True)

    async def _start_steps(self, v: Vimage, cfg: VimageConfig) -> None:
        await self._check_available(cfg)
        undo: list[Callable[[], Awaitable[None]]] = []
        try:
            if cfg.exec_prestart is not None:
                await self._host_hook(cfg, "prestart", cfg.exec_prestart, None)
                # as jail(8) does: what exec_prestart set up, exec_poststop takes down
                undo.append(
                    partial(self._host_hook_logged, cfg, "poststop", cfg.exec_poststop, None)
                )
            await self.journal.set_vimage(cfg.name, desired="running", jid=None)
            await self.journal.intend("jail", cfg.name, vimage=cfg.name)
            undo.append(partial(self.journal.forget, "jail", cfg.name))
            jid = await self.platform.create_jail(
                JailSpec(
                    name=cfg.name,
                    path=cfg.rootdir,
                    hostname=cfg.hostname,
                    devfs_ruleset=cfg.devfs_ruleset,
                    parameters=cfg.parameters,
                )
            )
            v.jid = jid
            await self.journal.mark("jail", cfg.name, "done", jid=jid)
            await self.journal.set_vimage(cfg.name, desired="running", jid=jid)
            undo.append(partial(self._remove_jail, cfg.name, jid))
            self.events.emit("jail.created", cfg.name, jid=jid)
            for bridge in cfg.bridges:
                mac = await self._mac_for(cfg, bridge)
                await self.journal.intend(
                    "bridge", bridge.ifname, vimage=cfg.name, parent=bridge.parent
                )
                undo.append(partial(self._destroy_bridged, bridge.ifname, bridge.parent))
                async with self._parent_locks[bridge.parent]:
                    await self.platform.create_bridged_ifnet(bridge.parent, bridge.ifname, mac)
                await self.platform.move_ifnet(bridge.ifname, jid)
                await self.journal.mark("bridge", bridge.ifname, "done", jid=jid)
                self.events.emit(
                    "ifnet.bridged", cfg.name, ifname=bridge.ifname, parent=bridge.parent, mac=mac
                )
            host = await self.platform.list_ifnets(HOST_JID) if cfg.vnets else []
            for nic in cfg.vnets:
                # known by its MAC too, so a rename inside does not lose it (issue 11.8)
                nic_mac = next((i.mac for i in host if i.name == nic), None)
                shared = frozenset(i.name for i in host if i.mac == nic_mac and i.name != nic)
                self.watcher.remember(nic, nic_mac, shared)
                await self.journal.intend("vnet", nic, vimage=cfg.name, jid=jid)
                undo.append(partial(self._return_nic, cfg.name, nic, jid))
                await self.platform.move_ifnet(nic, jid)
                await self.journal.mark("vnet", nic, "done")
                self.events.emit("ifnet.moved", cfg.name, ifname=nic, jid=jid)
            await self._exec_start(cfg, jid)
            if cfg.exec_poststart is not None:
                await self._host_hook(cfg, "poststart", cfg.exec_poststart, jid)
        except BaseException as exc:
            with trio.move_on_after(CLEANUP_GRACE, shield=True):
                try:
                    for step in reversed(undo):
                        await self._rollback_step(cfg.name, step)
                    parents = {b.parent for b in cfg.bridges}
                    await self._rollback_step(cfg.name, partial(self._release_bridges, parents))
                finally:
                    # whatever the undo did, the journal must not say "running" (issue 11.3)
                    await self.journal.set_vimage(cfg.name, desired="stopped", jid=None)
            self.events.emit("vimage.rolled_back", cfg.name)
            if isinstance(exc, Exception) and not isinstance(exc, (OSError, VimagedError)):
                # a bug or a refused value deep in a platform: a clear error, not "internal"
                log.error("vimage.start_crashed", vimage=cfg.name, exc_info=exc)
                raise OperationFailedError(
                    f"{cfg.name}: start failed: {_error_text(exc)} ({type(exc).__name__})"
                ) from exc
            raise

    @staticmethod
    async def _rollback_step(vimage: str, step: Callable[[], Awaitable[None]]) -> None:
        """One undo step of a failed start. Any failure is logged and the rollback goes on:
        a ValueError from a platform must not leave the later steps (and the NICs) undone."""
        try:
            await step()
        except Exception as exc:
            log.error(
                "vimage.rollback_step_failed",
                vimage=vimage,
                error=_error_text(exc),
                exc_info=not isinstance(exc, (OSError, VimagedError)),
            )

    async def _check_available(self, cfg: VimageConfig) -> None:
        """Refuse a start whose NICs are held elsewhere, before touching anything."""
        for nic in cfg.vnets:
            pending = self.watcher.pending.get(nic)
            if pending is not None:
                holder = f"jid {pending.jid}" + (" (dying)" if pending.dying else "")
                raise ConflictError(
                    f"{cfg.name}: {nic} is pending return from {holder}; it cannot be moved "
                    "until it is back on the host"
                )
            for other in self.vimages.values():
                if other.name != cfg.name and other.state != "stopped" and nic in other.cfg.vnets:
                    raise ConflictError(f"{cfg.name}: {nic} is held by vimage {other.name}")
        for nic in {*cfg.vnets, *(b.parent for b in cfg.bridges)}:
            where = await self.platform.locate_ifnet(nic)
            if where != HOST_JID:
                place = "absent" if where is None else f"inside jid {where}"
                raise ConflictError(f"{cfg.name}: {nic} is not on the host ({place})")

    async def stop_vimage(self, v: Vimage, *, restarting: bool = False) -> None:
        """Stop ``v``. The journal learns first that it should stay stopped (unless this is
        the first half of a restart), so a daemon killed midway does not start it again.

        A start still in progress (an ``exec_start`` that hangs, say) is interrupted and
        rolled back first, as an interrupted jail(8) would be.
        """
        if v.state == "starting" and v.start_scope is not None:
            v.start_scope.cancel()
        async with v.lock:
            if v.state == "stopped":
                return
            self.health.unwatch(v)
            v.transition("stopping")
            self.events.emit("vimage.stopping", v.name)
            try:
                if not restarting:
                    await self.journal.set_vimage(v.name, desired="stopped", jid=v.jid)
                await self._stop_steps(v)
            except BaseException as exc:
                v.error = _error_text(exc)
                v.transition("failed")
                self.events.emit("vimage.stop_failed", v.name, error=v.error)
                raise
            v.jid = None
            v.error = None
            v.transition("stopped")
            self.events.emit("vimage.stopped", v.name)
            if v.removed and not self._pending_nics(v.name):
                del self.vimages[v.name]
            unsaved = self.journal.unsaved_error
            if unsaved is not None:
                # Torn down all the same (NICs home); the journal catches up at its next write.
                raise OperationFailedError(
                    f"{v.name}: stopped, but not recorded: {unsaved}; "
                    "recorded at the journal's next successful write"
                )

    async def fail_vimage(self, v: Vimage, error: str) -> None:
        """Tear down a running vimage that failed (its jail vanished, or the circuit breaker
        opened) and leave it ``failed`` with ``error`` until an operator acts."""
        async with v.lock:
            if v.state != "running":
                return
            self.health.unwatch(v)
            v.transition("stopping")
            try:
                await self._stop_steps(v)
            finally:
                v.jid = None
                v.error = error
                v.transition("failed")
                self.events.emit("vimage.failed", v.name, error=error)

    async def _exec_start(self, cfg: VimageConfig, jid: int) -> None:
        await self._run_command(
            cfg,
            "exec_start",
            cfg.exec_start,
            partial(self.platform.exec_in_jail, jid, cfg.exec_start),
            limit=cfg.exec_timeout,
            limit_variable=f"vimage_{cfg.name}_exec_timeout",
        )

    async def _run_command(
        self,
        cfg: VimageConfig,
        what: str,
        command: str,
        run: Callable[..., Awaitable[int]],
        *,
        limit: float,
        limit_variable: str,
    ) -> None:
        """``run(output=fd)``, one of the vimage's commands, with its output in the console log.

        Raises:
            OperationFailedError: it exited non-zero or outlived ``limit`` (0: no limit); the
                message ends with the last line it wrote.
        """
        consolelog = f"vimage_{cfg.name}_exec_consolelog"
        with CommandOutput.console_log(cfg.exec_consolelog, consolelog) as output:
            with trio.move_on_after(limit or math.inf) as deadline:
                status = await run(output=output.fd)
            if deadline.cancelled_caught:
                raise OperationFailedError(
                    f"{cfg.name}: {what} {command!r} still running after {limit:g} s "
                    f"({limit_variable}){output.said()}"
                )
            if status != 0:
                raise OperationFailedError(
                    f"{cfg.name}: {what} {command!r} exited with status {status}{output.said()}"
                )

    async def _exec_stop(self, cfg: VimageConfig, jid: int) -> None:
        """``exec_stop`` within ``stop_timeout``; its failures are logged, never fatal: the
        NICs and interfaces inside still have to come home."""
        variable = f"vimage_{cfg.name}_exec_consolelog"
        try:
            with CommandOutput.console_log(cfg.exec_consolelog, variable) as output:
                with trio.move_on_after(cfg.stop_timeout) as timeout:
                    status = await self.platform.exec_in_jail(jid, cfg.exec_stop, output=output.fd)
                if timeout.cancelled_caught:
                    log.warning(
                        "vimage.exec_stop_timed_out",
                        vimage=cfg.name,
                        timeout=cfg.stop_timeout,
                        said=output.last_line(),
                    )
                elif status != 0:
                    log.warning(
                        "vimage.exec_stop_failed",
                        vimage=cfg.name,
                        status=status,
                        said=output.last_line(),
                    )
        except (OSError, OperationFailedError) as exc:
            # the jail vanished meanwhile, or the console log cannot be opened
            log.warning("vimage.exec_stop_failed", vimage=cfg.name, error=_error_text(exc))

    async def _stop_steps(self, v: Vimage) -> None:
        cfg, jid = v.cfg, v.jid
        with trio.CancelScope(shield=True):
            if jid is not None:
                await self._host_hook_logged(cfg, "prestop", cfg.exec_prestop, jid)
            if jid is not None and await self._jail_alive(jid):
                await self._exec_stop(cfg, jid)
            if jid is not None:
                for nic in reversed(cfg.vnets):
                    await self._return_nic(cfg.name, nic, jid)
            for bridge in reversed(cfg.bridges):
                await self._destroy_bridged(bridge.ifname, bridge.parent)
            if jid is not None:
                await self._remove_jail(cfg.name, jid)
            await self._release_bridges({b.parent for b in cfg.bridges})
            await self.journal.set_vimage(cfg.name, desired="stopped", jid=None)
            if jid is not None:
                await self._host_hook_logged(cfg, "poststop", cfg.exec_poststop, jid)

    # ------------------------------------------------------------------ steps

    async def _host_hook(self, cfg: VimageConfig, hook: str, command: str, jid: int | None) -> None:
        """``vimage_NAME_exec_<hook>`` on the host, within ``exec_timeout`` for the start
        side and ``stop_timeout`` for the stop side.

        Raises:
            OperationFailedError: it failed or ran too long; ends with its last line.
        """
        stop_side = hook in ("prestop", "poststop")
        env = {
            "VIMAGE_NAME": cfg.name,
            "VIMAGE_JID": "" if jid is None else str(jid),
            "VIMAGE_PATH": cfg.rootdir,
            "VIMAGE_INTERFACES": " ".join([b.ifname for b in cfg.bridges] + list(cfg.vnets)),
        }
        await self._run_command(
            cfg,
            f"vimage_{cfg.name}_exec_{hook}",
            command,
            partial(self.platform.exec_on_host, command, env=env),
            limit=cfg.stop_timeout if stop_side else cfg.exec_timeout,
            limit_variable=f"vimage_{cfg.name}_{'stop' if stop_side else 'exec'}_timeout",
        )
        self.events.emit(f"hook.{hook}", cfg.name)

    async def _host_hook_logged(
        self, cfg: VimageConfig, hook: str, command: str | None, jid: int | None
    ) -> None:
        """A stop-side hook, if configured: a failure is logged, and the stop goes on."""
        if command is None:
            return
        try:
            await self._host_hook(cfg, hook, command, jid)
        except (OSError, OperationFailedError) as exc:
            log.warning("vimage.hook_failed", vimage=cfg.name, hook=hook, error=_error_text(exc))

    async def _jail_alive(self, jid: int) -> bool:
        return any(j.jid == jid and not j.dying for j in await self.platform.list_jails())

    async def _return_nic(self, vimage: str, nic: str, jid: int) -> None:
        await self.watcher.return_home(nic, vimage=vimage, jid=jid)

    async def _destroy_bridged(self, ifname: str, parent: str) -> None:
        async with self._parent_locks[parent]:
            # never created, or already gone: the goal is reached
            with contextlib.suppress(FileNotFoundError):
                await self.platform.destroy_bridged_ifnet(ifname)
        await self.journal.forget("bridge", ifname)

    async def _remove_jail(self, name: str, jid: int) -> None:
        try:
            await self.platform.remove_jail(jid)
        except (FileNotFoundError, ProcessLookupError):
            pass
        except OSError as exc:
            if exc.errno not in (errnos.EINVAL, errnos.ESRCH):
                raise
        await self.journal.forget("jail", name)
        self.events.emit("jail.removed", name, jid=jid)

    async def _release_bridges(self, parents: set[str]) -> None:
        """Remove the bridges of ``parents`` left without interfaces. The platform checks
        emptiness under the parent's lock, so a start adding to the same bridge never races."""
        for parent in sorted(parents):
            async with self._parent_locks[parent]:
                try:
                    if await self.platform.release_bridge(parent):
                        self.events.emit("bridge.removed", None, parent=parent)
                except OSError as exc:
                    log.warning(
                        "bridge.release_failed", parent=parent, error=_describe_oserror(exc)
                    )

    async def _mac_for(self, cfg: VimageConfig, bridge: Bridge) -> str:
        """The MAC of one bridged interface: explicit, else persisted, else derived once."""
        if bridge.mac is not None:
            return bridge.mac
        key = (cfg.name, bridge.index)
        known = self._mac_cache.get(key)
        if known is not None:
            return known
        if self._host_uuid is None:
            self._host_uuid = await self.platform.host_uuid()
        host_ifnets = await self.platform.list_ifnets(HOST_JID)
        taken = {i.mac for i in host_ifnets if i.mac} | set(self._mac_cache.values())
        taken |= {b.mac for v in self.vimages.values() for b in v.cfg.bridges if b.mac}
        parent_mac = next((i.mac for i in host_ifnets if i.name == bridge.parent and i.mac), None)
        same_parent = [b for b in cfg.bridges if b.parent == bridge.parent]
        mac = macs.choose_mac(
            self.cfg.mac_scheme,
            host_uuid=self._host_uuid,
            vimage=cfg.name,
            index=bridge.index,
            parent_mac=parent_mac,
            jng_counter=same_parent.index(bridge),
            taken=taken,
        )
        await self.journal.save_mac(cfg.name, bridge.index, mac)
        self._mac_cache[key] = mac
        return mac

    # ------------------------------------------------------------------ reconciliation

    async def reconcile(self, *, resume: bool = True) -> None:
        """Converge the journal with the kernel after a (re)start of the daemon.

        Vimages that were running and are whole are adopted. Half-done operations are rolled
        back (and a start that was in flight is then retried). Interfaces that carry
        vimaged's naming but that nobody owns are removed; nothing else is ever touched.

        Only objects it can prove it owns are acted on: a row written in this boot (jids are
        reused after a reboot), a jail whose jid *and* name are the journaled ones, a NIC found
        in such a jail. Anything else is left alone and reported (``reconcile.left_alone``).
        """
        self._mac_cache = await self.journal.macs()
        records = await self.journal.vimages()
        resources = await self.journal.resources()
        jails = await self.platform.list_jails()
        by_vimage: defaultdict[str, list[Resource]] = defaultdict(list)
        stale: list[Resource] = []
        for res in resources:
            if _from_another_boot(res.boot, self.journal.boot_id):
                stale.append(res)
            else:
                by_vimage[res.vimage].append(res)
        await self._forget_previous_boot(stale)
        for res in stale:
            by_vimage.setdefault(res.vimage, [])
        retry: list[str] = []
        for name in sorted(set(records) | set(by_vimage)):
            record = records.get(name)
            owned = by_vimage.get(name, [])
            jail_res = next((r for r in owned if r.kind == "jail"), None)
            jail = None
            if jail_res is not None and jail_res.jid is not None:
                jail = next((j for j in jails if j.jid == jail_res.jid and j.name == name), None)
            v = self.vimages.get(name)
            whole = (
                record is not None
                and record.desired == "running"
                and v is not None
                and jail is not None
                and not jail.dying
                and all(r.phase == "done" for r in owned)
                and {r.key for r in owned if r.kind == "bridge"}
                == {b.ifname for b in v.cfg.bridges}
                and {r.key for r in owned if r.kind == "vnet"} == set(v.cfg.vnets)
                and await self._resources_in_place(owned, jail.jid)
            )
            if whole and v is not None and jail is not None:
                v.jid = jail.jid
                v.state = "running"
                self.health.watch(v)
                self.events.emit("vimage.adopted", name, jid=jail.jid)
                continue
            await self._undo_resources(name, owned)
            await self.journal.set_vimage(name, desired="stopped", jid=None)
            self.events.emit("vimage.recovered", name)
            if v is None and self._pending_nics(name):
                self._keep_in_view(name)
            if record is not None and record.desired == "running" and v is not None:
                retry.append(name)
        await self._remove_orphans()
        if retry and resume:
            for outcome in await self.start(retry):
                if not outcome.ok:
                    log.error(
                        "vimage.restart_after_recovery_failed",
                        vimage=outcome.name,
                        error=outcome.message,
                    )

    def _keep_in_view(self, name: str) -> None:
        """List a vimage gone from the configuration while one of its NICs is pending return,
        as a reload does, until the NIC is home: a NIC is never out of sight."""
        v = Vimage(VimageConfig(name=name, hostname=name, ifname=name))
        v.removed = True
        self.vimages[name] = v

    async def _resources_in_place(self, owned: list[Resource], jid: int) -> bool:
        for res in owned:
            if res.kind in ("bridge", "vnet") and await self.platform.locate_ifnet(res.key) != jid:
                return False
        return True

    def _left_alone(self, name: str, what: str, reason: str) -> None:
        """Report a kernel object reconciliation will not touch: it cannot prove it is ours."""
        log.warning("reconcile.left_alone", vimage=name, object=what, reason=reason)
        self.events.emit("reconcile.left_alone", name, object=what, reason=reason)

    async def _forget_previous_boot(self, stale: list[Resource]) -> None:
        """Rows of an earlier boot: what they name died with that boot (jails, vnets and
        netgraph nodes do not survive a reboot); their jids may be another jail's now."""
        jids = {j.jid for j in await self.platform.list_jails()} if stale else set()
        for res in stale:
            where = await self.platform.locate_ifnet(res.key) if res.kind == "vnet" else None
            if res.kind == "jail" and res.jid in jids:
                self._left_alone(
                    res.vimage,
                    f"jail {res.jid}",
                    "journaled in an earlier boot; that jid is another jail's now",
                )
            elif where not in (None, HOST_JID):
                self._left_alone(
                    res.vimage,
                    f"{res.kind} {res.key}",
                    f"journaled in an earlier boot; now inside jid {where}, not ours",
                )
            else:
                log.info("reconcile.previous_boot", vimage=res.vimage, kind=res.kind, key=res.key)
            await self.journal.forget(res.kind, res.key)

    async def _ours(self, name: str, jid: int | None) -> bool | None:
        """Whether jail ``jid`` is vimage ``name``'s: True (jid and name match), False (a jail
        of another name has that jid), None (no such jail)."""
        if jid is None:
            return None
        jail = next((j for j in await self.platform.list_jails() if j.jid == jid), None)
        return None if jail is None else jail.name == name

    async def _undo_resources(self, name: str, owned: list[Resource]) -> None:
        jail_jid = next((r.jid for r in owned if r.kind == "jail"), None)
        with trio.move_on_after(CLEANUP_GRACE, shield=True):
            for res in reversed(owned):
                try:
                    if res.kind == "vnet":
                        await self._undo_vnet(name, res, jail_jid)
                    elif res.kind == "bridge":
                        await self._destroy_bridged(res.key, res.parent or "")
                    elif res.kind == "jail" and res.jid is not None:
                        if await self._ours(name, res.jid) is False:
                            self._left_alone(
                                name, f"jail {res.jid}", "its name is not the journaled one"
                            )
                            await self.journal.forget("jail", res.key)
                        else:
                            await self._remove_jail(name, res.jid)
                    elif res.kind == "jail":
                        await self._remove_unjournaled_jail(name)
                    else:
                        await self.journal.forget(res.kind, res.key)
                except (OSError, VimagedError) as exc:
                    log.error(
                        "reconcile.undo_failed",
                        vimage=name,
                        resource=res.key,
                        error=_error_text(exc),
                    )
            await self._release_bridges(
                {r.parent for r in owned if r.kind == "bridge" and r.parent}
            )

    async def _undo_vnet(self, name: str, res: Resource, jail_jid: int | None) -> None:
        """Bring a journaled NIC home only from a jail proven to be ``name``'s."""
        where = await self.platform.locate_ifnet(res.key)
        if where == HOST_JID:
            await self.journal.forget("vnet", res.key)
            return
        holder = where if where is not None else (res.jid or jail_jid)
        if await self._ours(name, holder) is False or (
            where is not None and holder not in (res.jid, jail_jid)
        ):
            self._left_alone(
                name, f"vnet {res.key}", f"it is inside jid {holder}, a jail vimaged does not own"
            )
            await self.journal.forget("vnet", res.key)
            return
        await self._return_nic(name, res.key, holder or 0)

    async def _remove_unjournaled_jail(self, name: str) -> None:
        """The daemon was killed after creating the jail and before journaling its jid: the
        live jail of that name is the one it made (a taken name would have failed the create
        with EEXIST, and the rollback would have forgotten the intent)."""
        for jail in await self.platform.list_jails():
            if jail.name == name and not jail.dying:
                await self._remove_jail(name, jail.jid)
                return
        await self.journal.forget("jail", name)

    async def _remove_orphans(self) -> None:
        # First what a killed daemon left half-made (an eiface not named yet): only now,
        # before any start, can it not be a create in flight.
        strays = await self.platform.remove_stray_bridged_ifnets()
        for stray in strays:
            log.warning("reconcile.stray_removed", ifname=stray.name, parent=stray.parent)
        await self._release_bridges({s.parent for s in strays})
        journaled = {r.key for r in await self.journal.resources() if r.kind == "bridge"}
        journaled |= self.attachment_ifnets
        orphans = [b for b in await self.platform.list_bridged_ifnets() if b.name not in journaled]
        for orphan in orphans:
            log.warning("reconcile.orphan_removed", ifname=orphan.name, parent=orphan.parent)
            async with self._parent_locks[orphan.parent]:
                with contextlib.suppress(FileNotFoundError):
                    await self.platform.destroy_bridged_ifnet(orphan.name)
        await self._release_bridges({o.parent for o in orphans})


def _from_another_boot(row_boot: str | None, current: str | None) -> bool:
    # A row without a boot (written before boots were recorded) is judged by name and jid.
    return row_boot is not None and current is not None and row_boot != current


def _describe_oserror(exc: OSError) -> str:
    code = errnos.errorcode.get(exc.errno or 0, str(exc.errno))
    subject = f" ({exc.filename})" if exc.filename else ""
    return f"{exc.strerror or exc}{subject} [{code}]"


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return _describe_oserror(exc)
    if isinstance(exc, trio.Cancelled):
        return "cancelled"
    return str(exc) or type(exc).__name__
