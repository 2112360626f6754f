"""Start and stop of one vimage, as lists of journaled steps.

Start order: create the jail, build each bridged interface and move it in, move the NICs in,
run ``exec_start``. Each kernel change is one ``Resources.journaled`` step, whose undo goes on
the rollback stack; a failed (or cancelled) start runs the stack in reverse under a shielded
deadline, and whatever the undo does, the journal ends saying ``desired=stopped`` (a
``finally``). Stop order: ``exec_stop``, ``-vnet`` every moved NIC *before* the jail goes (a
dying jail keeps its NICs), shut down the bridged interfaces (before jail removal, the
workaround for FreeBSD PR 238326), remove the jail. The platform removes a bridge with its
last interface.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import structlog
import trio

from vimaged import macs
from vimaged.errors import (
    ConflictError,
    NotFoundError,
    OperationFailedError,
    VimagedError,
    error_text,
)
from vimaged.platforms import HOST_JID, JailSpec
from vimaged.state import Resource

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Container, Iterable

    from vimaged.config import Bridge, Config, VimageConfig
    from vimaged.events import EventHub
    from vimaged.health import HealthMonitor
    from vimaged.hooks import Hooks
    from vimaged.platforms import Platform
    from vimaged.resources import Resources
    from vimaged.state import Journal
    from vimaged.vimage import Vimage
    from vimaged.vnets import ReturnWatcher

log = structlog.get_logger()

CLEANUP_GRACE = 60.0
"""How long shielded cleanup (rollback, reconciliation) may take once cancelled."""

ADDRESS_LOOK_TIMEOUT = 5.0
"""How long a first health check or ``status`` may spend looking at a vimage's addresses."""


class MacBook:
    """The MAC of each bridged interface: explicit, else persisted, else derived once."""

    def __init__(self, platform: Platform, journal: Journal) -> None:
        self._platform = platform
        self._journal = journal
        self._host_uuid: str | None = None
        self.known: dict[tuple[str, int], str] = {}
        """(vimage, bridge index) -> MAC, as persisted; loaded by :meth:`load`."""
        self._known_normalized: set[str] = set()
        """:attr:`known`'s MACs as choose_mac compares them: kept, not rebuilt per choice."""
        self._configured: dict[str, tuple[str, ...]] = {}
        """Vimage -> the explicit MACs of its ``cfg`` and ``next_cfg`` (comparable form)."""
        self._configured_count: Counter[str] = Counter()
        """How many vimages configure each of those: the MACs a derived one must avoid,
        kept as configurations change instead of gathered from every vimage per choice."""

    async def load(self) -> None:
        self.known = await self._journal.macs()
        self._known_normalized = {macs.comparable_mac(m) for m in self.known.values()}

    def follow(self, vimages: Iterable[Vimage]) -> None:
        """Take the explicit MACs of every vimage anew (start-up, a reload)."""
        self._configured.clear()
        self._configured_count.clear()
        for v in vimages:
            self.configured(v)

    def configured(self, v: Vimage) -> None:
        """``v``'s configurations changed (its start applied ``next_cfg``): the MACs they
        name are taken, the ones they no longer name released."""
        self.forget(v.name)
        mine = tuple(
            macs.comparable_mac(b.mac)
            for cfg in (v.cfg, v.next_cfg)
            if cfg is not None
            for b in cfg.bridges
            if b.mac
        )
        if mine:
            self._configured[v.name] = mine
            self._configured_count.update(mine)

    def forget(self, name: str) -> None:
        """Vimage ``name`` is gone: its explicit MACs are free (its derived ones stay known)."""
        for mac in self._configured.pop(name, ()):
            self._configured_count[mac] -= 1
            if self._configured_count[mac] <= 0:
                del self._configured_count[mac]

    def taken_by_config(self) -> frozenset[str]:
        """The explicit MACs of every vimage's configurations (for tests and views)."""
        return frozenset(self._configured_count)

    async def mac_for(self, cfg: VimageConfig, bridge: Bridge, *, config: Config) -> str:
        if bridge.mac is not None:
            return bridge.mac
        key = (cfg.name, bridge.index)
        known = self.known.get(key)
        if known is not None:
            return known
        if self._host_uuid is None:
            self._host_uuid = await self._platform.host_uuid()
        host_ifnets = await self._platform.list_ifnets(HOST_JID)
        taken = {i.mac for i in host_ifnets if i.mac}
        parent_mac = next((i.mac for i in host_ifnets if i.name == bridge.parent and i.mac), None)
        same_parent = [b for b in cfg.bridges if b.parent == bridge.parent]
        mac = macs.choose_mac(
            config.mac_scheme,
            host_uuid=self._host_uuid,
            vimage=cfg.name,
            index=bridge.index,
            parent_mac=parent_mac,
            jng_counter=same_parent.index(bridge),
            taken=taken,
            taken_normalized=_Either(self._known_normalized, self._configured_count),
        )
        await self._journal.save_mac(cfg.name, bridge.index, mac)
        self.known[key] = mac
        self._known_normalized.add(macs.comparable_mac(mac))
        return mac


class _Either:
    """Membership in either of two collections, without building their union."""

    def __init__(self, first: Container[str], second: Container[str]) -> None:
        self._first, self._second = first, second

    def __contains__(self, mac: object) -> bool:
        return mac in self._first or mac in self._second


@dataclass(frozen=True, kw_only=True)
class SharedParts:
    """What the lifecycle and reconciliation both act through, built once by the Supervisor."""

    platform: Platform
    journal: Journal
    events: EventHub
    watcher: ReturnWatcher
    resources: Resources
    health: HealthMonitor
    macs: MacBook


class ActsThroughParts:
    """The parts as attributes (``self.platform``, ...), for :class:`Lifecycle` and
    :class:`~vimaged.reconcile.Reconciler`."""

    def __init__(self, parts: SharedParts) -> None:
        self.platform = parts.platform
        self.journal = parts.journal
        self.events = parts.events
        self.watcher = parts.watcher
        self.resources = parts.resources
        self.health = parts.health
        self.macs = parts.macs


class Lifecycle(ActsThroughParts):
    """Start, stop and fail one vimage; each holds the vimage's lock throughout."""

    def __init__(
        self,
        parts: SharedParts,
        *,
        hooks: Hooks,
        config: Callable[[], Config],
        vimages: Callable[[], Iterable[Vimage]],
        forget_if_gone: Callable[[Vimage], None],
    ) -> None:
        ActsThroughParts.__init__(self, parts)
        self.hooks = hooks
        self._config = config
        self._vimages = vimages
        self._forget_if_gone = forget_if_gone

    # ------------------------------------------------------------------ start

    async def start_vimage(self, v: Vimage, *, waited: trio.CancelScope | None = None) -> None:
        """Start ``v``. ``waited``: the end of that wait (arrivals.py), which starts ``v``
        only if it still waits on it (a stop, or another start, may have come first)."""
        async with v.lock:
            if v.state == "running":
                return
            if waited is not None and (v.state != "waiting" or v.wait_scope is not waited):
                return
            if v.wait_scope is not None:  # a start while waiting: the wait is over
                v.wait_scope.cancel()
            v.wait_scope, v.waiting_for = None, ()
            if v.removed:
                raise NotFoundError(removed_text(v.name))
            if v.next_cfg is not None:
                v.cfg, v.next_cfg = v.next_cfg, None
                self.macs.configured(v)  # the old configuration's MACs are free
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
                v.error = error_text(exc)
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
        res = self.resources
        try:
            if cfg.exec_prestart is not None:
                await self.hooks.host(cfg, "prestart", cfg.exec_prestart, None)
                # as jail(8) does: what exec_prestart set up, exec_poststop takes down
                undo.append(
                    partial(self.hooks.host_logged, cfg, "poststop", cfg.exec_poststop, None)
                )
            await self.journal.set_vimage(cfg.name, desired="running", jid=None)
            async with res.journaled("jail", cfg.name, vimage=cfg.name, undo=undo) as step:
                step.jid = v.jid = jid = await self.platform.create_jail(
                    JailSpec(
                        name=cfg.name,
                        path=cfg.rootdir,
                        hostname=cfg.hostname,
                        devfs_ruleset=cfg.devfs_ruleset,
                        parameters=cfg.parameters,
                    )
                )
            await self.journal.set_vimage(cfg.name, desired="running", jid=jid)
            self.events.emit("jail.created", cfg.name, jid=jid)
            for bridge in cfg.bridges:
                mac = await self.macs.mac_for(cfg, bridge, config=self._config())
                async with res.journaled(
                    "bridge", bridge.ifname, vimage=cfg.name, undo=undo, parent=bridge.parent
                ) as step:
                    await self.platform.create_bridged_ifnet(bridge.parent, bridge.ifname, mac)
                    await self.platform.move_ifnet(bridge.ifname, jid)
                    step.jid = jid
                self.events.emit(
                    "ifnet.bridged", cfg.name, ifname=bridge.ifname, parent=bridge.parent, mac=mac
                )
            host = await self.platform.list_ifnets(HOST_JID) if cfg.vnets else []
            for nic in cfg.vnets:
                # known by its MAC too, so a rename inside does not lose it (issue 11.8)
                nic_mac = next((i.mac for i in host if i.name == nic), None)
                shared = frozenset(i.name for i in host if i.mac == nic_mac and i.name != nic)
                self.watcher.remember(nic, nic_mac, shared)
                async with res.journaled("vnet", nic, vimage=cfg.name, undo=undo, jid=jid):
                    await self.platform.move_ifnet(nic, jid)
                self.events.emit("ifnet.moved", cfg.name, ifname=nic, jid=jid)
            await self.hooks.exec_start(cfg, jid)
            if cfg.exec_poststart is not None:
                await self.hooks.host(cfg, "poststart", cfg.exec_poststart, jid)
        except BaseException as exc:
            with trio.move_on_after(CLEANUP_GRACE, shield=True):
                try:
                    for step_undo in reversed(undo):
                        await _rollback_step(cfg.name, step_undo)
                finally:
                    # whatever the undo did, the journal must not say "running" (issue 11.3)
                    await self.journal.set_vimage(cfg.name, desired="stopped", jid=None)
            self.events.emit("vimage.rolled_back", cfg.name)
            if isinstance(exc, Exception) and not isinstance(exc, (OSError, VimagedError)):
                # a bug or a refused value deep in a platform: a clear error, not "internal"
                log.error("vimage.start_crashed", vimage=cfg.name, exc_info=exc)
                raise OperationFailedError(
                    f"{cfg.name}: start failed: {error_text(exc)} ({type(exc).__name__})"
                ) from exc
            raise

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
            for other in self._vimages():
                if other.name != cfg.name and other.state != "stopped" and nic in other.cfg.vnets:
                    raise ConflictError(f"{cfg.name}: {nic} is held by vimage {other.name}")
        for nic in {*cfg.vnets, *(b.parent for b in cfg.bridges)}:
            where = await self.platform.locate_ifnet(nic)
            if where != HOST_JID:
                place = "absent" if where is None else f"inside jid {where}"
                raise ConflictError(f"{cfg.name}: {nic} is not on the host ({place})")

    # ------------------------------------------------------------------ stop

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
                v.error = error_text(exc)
                v.transition("failed")
                self.events.emit("vimage.stop_failed", v.name, error=v.error)
                raise
            v.jid = None
            v.error = None
            v.transition("stopped")
            self.events.emit("vimage.stopped", v.name)
            self._forget_if_gone(v)
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

    async def _stop_steps(self, v: Vimage) -> None:
        cfg, jid = v.cfg, v.jid
        res = self.resources
        with trio.CancelScope(shield=True):
            if jid is not None:
                await self.hooks.host_logged(cfg, "prestop", cfg.exec_prestop, jid)
            if jid is not None and await self._jail_alive(jid):
                await self.hooks.exec_stop(cfg, jid)
            if jid is not None:
                for nic in reversed(cfg.vnets):
                    await self.watcher.return_home(nic, vimage=cfg.name, jid=jid)
            for bridge in reversed(cfg.bridges):
                await res.destroy_bridged(bridge.ifname)
            if jid is not None:
                # the same undo as a rollback's: a jid that is another jail's now (the
                # platform came back as another host) is left alone
                await res.undo(_jail(cfg.name, jid))
            await self.journal.set_vimage(cfg.name, desired="stopped", jid=None)
            if jid is not None:
                await self.hooks.host_logged(cfg, "poststop", cfg.exec_poststop, jid)

    async def _jail_alive(self, jid: int) -> bool:
        jail = await self.platform.jail_info(jid)
        return jail is not None and not jail.dying


def _jail(name: str, jid: int) -> Resource:
    return Resource(kind="jail", key=name, vimage=name, phase="done", jid=jid)


async def _rollback_step(vimage: str, step: Callable[[], Awaitable[None]]) -> None:
    """One undo step of a failed start. Any failure is logged and the rollback goes on:
    a ValueError from a platform must not leave the later steps (and the NICs) undone."""
    try:
        await step()
    except Exception as exc:
        log.error(
            "vimage.rollback_step_failed",
            vimage=vimage,
            error=error_text(exc),
            exc_info=not isinstance(exc, (OSError, VimagedError)),
        )


def removed_text(name: str) -> str:
    """Why a vimage a reload removed cannot start: ``status`` says the same (render.py)."""
    return f"{name} was removed from the configuration by reload; stop it to let it go"


def refuse_if_removed(v: Vimage) -> None:
    """A vimage a reload removed may only be stopped (issue 13: the same words everywhere)."""
    if v.removed:
        raise NotFoundError(removed_text(v.name))
