"""The kernel objects a vimage owns, journaled: one step helper and one UNDO table.

Every start step is ``async with resources.journaled(kind, key, ...)``: the intent is written
before the body acts, ``done`` after it, and the resource's undo is pushed on the start's
rollback stack as soon as the intent is written. The undo of each kind (:data:`UNDO`) is the
one place that knows how to take that kind of object away again, and it is used by a failed
start's rollback, by stop and by reconciliation alike, with the same ownership checks: a jail
is removed only if its jid *and* name are the vimage's, a NIC reclaimed only from such a jail.
Anything else is left alone and reported (``reconcile.left_alone``).
"""

from __future__ import annotations

import contextlib
import errno as errnos
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from vimaged.platforms import HOST_JID
from vimaged.state import Resource

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from vimaged.events import EventHub
    from vimaged.platforms import Platform
    from vimaged.state import Journal, ResourceKind
    from vimaged.vnets import ReturnWatcher

log = structlog.get_logger()


@dataclass
class Step:
    """A journaled step in progress: the body sets ``jid`` once it knows it."""

    resource: Resource
    jid: int | None = None
    acted: bool = False
    """The body ran to its end; ``done`` is journaled."""


class Resources:
    def __init__(
        self, platform: Platform, journal: Journal, events: EventHub, watcher: ReturnWatcher
    ) -> None:
        self.platform = platform
        self.journal = journal
        self.events = events
        self.watcher = watcher

    @contextlib.asynccontextmanager
    async def journaled(
        self,
        kind: ResourceKind,
        key: str,
        *,
        vimage: str,
        undo: list[Callable[[], Awaitable[None]]],
        jid: int | None = None,
        parent: str | None = None,
    ) -> AsyncIterator[Step]:
        """Intend, act (the body), mark done; the undo of the resource goes on ``undo`` once
        the intent is written, so a body that raises halfway is undone too."""
        res = Resource(kind=kind, key=key, vimage=vimage, phase="intent", jid=jid, parent=parent)
        await self.journal.intend(kind, key, vimage=vimage, jid=jid, parent=parent)
        step = Step(res, jid=jid)
        undo.append(lambda: self._undo_step(step))
        yield step
        await self.journal.mark(kind, key, "done", jid=step.jid)
        step.acted = True

    async def _undo_step(self, step: Step) -> None:
        res = step.resource
        if step.jid is not None:
            res = Resource(
                kind=res.kind, key=res.key, vimage=res.vimage, phase="done", jid=step.jid,
                parent=res.parent,
            )  # fmt: skip
        elif ATOMIC[res.kind]:
            # the act made the object whole or not at all, and it raised: nothing to take away
            # (and a live object of that name is someone else's: jail_set said EEXIST)
            await self.journal.forget(res.kind, res.key)
            return
        await self.undo(res, jail_jid=res.jid)

    async def undo(self, res: Resource, *, jail_jid: int | None = None) -> None:
        """Take ``res`` away (or leave it alone if it is not provably the vimage's), and
        forget its row."""
        undo = UNDO.get(res.kind)
        if undo is None:  # a kind this version does not know: nothing it could undo
            await self.journal.forget(res.kind, res.key)
            return
        await undo(self, res, jail_jid)

    # ------------------------------------------------------------------ per kind

    async def undo_jail(self, res: Resource, jail_jid: int | None = None) -> None:
        name = res.vimage
        if res.jid is None:
            await self._remove_unjournaled_jail(name)
        elif await self.ours(name, res.jid) is False:
            self.left_alone(name, f"jail {res.jid}", "its name is not the journaled one")
            await self.journal.forget("jail", res.key)
        else:
            await self.remove_jail(name, res.jid)

    async def undo_bridge(self, res: Resource, jail_jid: int | None = None) -> None:
        await self.destroy_bridged(res.key)

    async def undo_vnet(self, res: Resource, jail_jid: int | None = None) -> None:
        """Bring a journaled NIC home only from a jail proven to be the vimage's."""
        name = res.vimage
        where = await self.platform.locate_ifnet(res.key)
        if where == HOST_JID:
            await self.journal.forget("vnet", res.key)
            self.watcher.identities.pop(res.key, None)
            return
        holder = where if where is not None else (res.jid or jail_jid)
        if await self.ours(name, holder) is False or (
            where is not None and holder not in (res.jid, jail_jid)
        ):
            self.left_alone(
                name, f"vnet {res.key}", f"it is inside jid {holder}, a jail vimaged does not own"
            )
            await self.journal.forget("vnet", res.key)
            return
        await self.watcher.return_home(res.key, vimage=name, jid=holder or 0)

    # ------------------------------------------------------------------ acts

    async def remove_jail(self, name: str, jid: int) -> None:
        try:
            await self.platform.remove_jail(jid)
        except (FileNotFoundError, ProcessLookupError):
            pass
        except OSError as exc:
            if exc.errno not in (errnos.EINVAL, errnos.ESRCH):
                raise
        await self.journal.forget("jail", name)
        self.events.emit("jail.removed", name, jid=jid)

    async def _remove_unjournaled_jail(self, name: str) -> None:
        """The daemon was killed after creating the jail and before journaling its jid: the
        live jail of that name is the one it made (a taken name would have failed the create
        with EEXIST, and the rollback would have forgotten the intent)."""
        for jail in await self.platform.list_jails():
            if jail.name == name and not jail.dying:
                await self.remove_jail(name, jail.jid)
                return
        await self.journal.forget("jail", name)

    async def destroy_bridged(self, ifname: str) -> None:
        # The platform releases the parent's bridge with its last interface, under its lock.
        try:
            released = await self.platform.destroy_bridged_ifnet(ifname)
        except FileNotFoundError:
            released = None  # never created, or already gone: the goal is reached
        await self.journal.forget("bridge", ifname)
        if released is not None:
            self.events.emit("bridge.removed", None, parent=released)

    async def remove_unowned_bridged(self, journaled: set[str]) -> None:
        """Remove what carries vimaged's naming but no row owns: first what a killed daemon
        left half-made (an eiface not named yet), then named ones no row journals. Only
        safe while no start is in flight (at start-up, or holding every vimage's lock)."""
        for stray in await self.platform.reconcile_strays():
            log.warning("reconcile.stray_removed", ifname=stray.name, parent=stray.parent)
        orphans = [b for b in await self.platform.list_bridged_ifnets() if b.name not in journaled]
        for orphan in orphans:
            log.warning("reconcile.orphan_removed", ifname=orphan.name, parent=orphan.parent)
            with contextlib.suppress(FileNotFoundError):
                if released := await self.platform.destroy_bridged_ifnet(orphan.name):
                    self.events.emit("bridge.removed", None, parent=released)

    # ------------------------------------------------------------------ ownership

    async def ours(self, name: str, jid: int | None) -> bool | None:
        """Whether jail ``jid`` is vimage ``name``'s: True (jid and name match), False (a jail
        of another name has that jid), None (no such jail)."""
        if jid is None:
            return None
        jail = next((j for j in await self.platform.list_jails() if j.jid == jid), None)
        return None if jail is None else jail.name == name

    def left_alone(self, name: str, what: str, reason: str) -> None:
        """Report a kernel object vimaged will not touch: it cannot prove it is its own."""
        log.warning("reconcile.left_alone", vimage=name, object=what, reason=reason)
        self.events.emit("reconcile.left_alone", name, object=what, reason=reason)


UNDO: dict[str, Callable[[Resources, Resource, int | None], Awaitable[None]]] = {
    "jail": Resources.undo_jail,
    "bridge": Resources.undo_bridge,
    "vnet": Resources.undo_vnet,
}
"""How each kind of resource is taken away: by a rollback, a stop and reconciliation."""

ATOMIC: dict[str, bool] = {"jail": True, "bridge": False, "vnet": False}
"""Whether a failed act left nothing behind: jail_set(2) makes a jail whole or not at all
(sys/kern/kern_jail.c, kern_jail_set), while a bridged ifnet may be half-built and a NIC's
move may have happened before the error (both undo idempotently)."""
