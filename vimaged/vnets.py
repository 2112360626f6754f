"""Moved NICs (``vimage_NAME_vnets``) on their way home: the return watcher.

A NIC moved into a vimage is tracked until it is back on the host. ``ifconfig IF -vnet JID``
can fail, and a jail that died on its own keeps its NICs until its last reference is gone
(field survey problem 1: up to 15 minutes), so a NIC that did not come back is handed to the
watcher: it retries with capped exponential backoff and jitter, watches for the NIC's
reappearance, reports it as ``pending-return`` with its holder, and keeps it from any other
vimage until it is home. The journal row of the NIC is dropped only when the NIC is seen home.

A NIC is known by its MAC as well as its name: renamed inside the vimage
(``ifconfig em1 name lan0``), it is reclaimed under its new name, and one that came home
renamed (``vnet_if_return`` and ``if_vmove_reclaim`` move it under whatever name it has,
sys/net/if.c) is renamed back. The platforms report no ifindex, so the MAC is the identity;
a MAC that does not point at exactly one interface is never acted on.
"""

from __future__ import annotations

import errno as errnos
import random
from typing import TYPE_CHECKING

import msgspec
import structlog
import trio

from vimaged.platforms import HOST_JID

if TYPE_CHECKING:
    from vimaged.events import EventHub
    from vimaged.platforms import Platform
    from vimaged.state import Journal

log = structlog.get_logger()

FIRST_DELAY = 0.5
MAX_DELAY = 30.0


class PendingReturn(msgspec.Struct, kw_only=True):
    ifname: str
    vimage: str
    jid: int
    """The jail that held the NIC when it was last seen or moved."""
    dying: bool | None = None
    attempts: int = 0
    last_errno: int | None = None


class Identity(msgspec.Struct, frozen=True, kw_only=True):
    """What survives a rename of a moved NIC."""

    mac: str
    shared: frozenset[str] = frozenset()
    """Host interfaces that had the same MAC when the NIC moved (its vlan(4) children, a
    lagg): never taken for the NIC coming home."""


def next_delay(attempt: int) -> float:
    """Capped exponential backoff with jitter (half to full of the step), so many stuck NICs
    do not retry in lockstep."""
    step = min(MAX_DELAY, FIRST_DELAY * 2**attempt)
    return random.uniform(step / 2, step)


class ReturnWatcher:
    def __init__(self, platform: Platform, journal: Journal, events: EventHub) -> None:
        self._platform = platform
        self._journal = journal
        self._events = events
        self._nursery: trio.Nursery | None = None
        self.pending: dict[str, PendingReturn] = {}
        self.identities: dict[str, Identity] = {}
        """Configured name → identity of each NIC moved into a vimage, until it is home."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the watch tasks; NICs tracked before this started are picked up now."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for ifname in self.pending:
                nursery.start_soon(self._watch, ifname)
            task_status.started()
            await trio.sleep_forever()

    def track(self, ifname: str, *, vimage: str, jid: int) -> None:
        """Keep retrying until ``ifname`` is back on the host."""
        if ifname in self.pending:
            return
        self.pending[ifname] = PendingReturn(ifname=ifname, vimage=vimage, jid=jid)
        self._events.emit("ifnet.return_pending", vimage, ifname=ifname, jid=jid)
        if self._nursery is not None:
            self._nursery.start_soon(self._watch, ifname)

    def remember(self, ifname: str, mac: str | None, shared: frozenset[str] = frozenset()) -> None:
        """Know ``ifname`` by ``mac`` until it is home (at its move, or seen by a health poll
        after a daemon restart); the first identity learnt stays."""
        if mac is not None and ifname not in self.identities:
            self.identities[ifname] = Identity(mac=mac, shared=shared)

    async def current_name(self, ifname: str, jid: int) -> tuple[str, int | None]:
        """``(name, where)`` of the NIC configured as ``ifname``: on the host (``HOST_JID``),
        in jail ``jid`` or another, or ``(ifname, None)`` if it cannot be found."""
        where = await self._platform.locate_ifnet(ifname)
        identity = self.identities.get(ifname)
        if identity is None or where == HOST_JID:
            return ifname, where
        if where is not None:
            found = await self._by_mac(identity, where)
            return (found, where) if found is not None else (ifname, where)
        for vnet in (jid, HOST_JID):
            found = await self._by_mac(identity, vnet)
            if found is not None:
                return found, vnet
        return ifname, None

    async def _by_mac(self, identity: Identity, vnet: int) -> str | None:
        try:
            ifnets = await self._platform.list_ifnets(vnet)
        except OSError:  # a dying jail cannot be attached to: its NICs come home by name
            return None
        exclude = identity.shared if vnet == HOST_JID else frozenset()
        names = [i.name for i in ifnets if i.mac == identity.mac and i.name not in exclude]
        return names[0] if len(names) == 1 else None

    async def return_home(self, ifname: str, *, vimage: str, jid: int) -> bool:
        """``-vnet`` one NIC and check that it is home; on failure hand it to the watcher.

        Returns True if the NIC is on the host now.
        """
        try:
            if await self._try_once(ifname, jid, vimage):
                return True
        except OSError as exc:
            log.warning("ifnet.return_failed", ifname=ifname, jid=jid, errno=exc.errno)
        self.track(ifname, vimage=vimage, jid=jid)
        return False

    async def _try_once(self, ifname: str, jid: int, vimage: str) -> bool:
        current, where = await self.current_name(ifname, jid)
        if where != HOST_JID:
            holder = jid if where is None else where
            await self._platform.reclaim_ifnet(current, holder)
            current, where = await self.current_name(ifname, jid)
        if where == HOST_JID:
            if current != ifname:
                # home under the name it was given inside: the host's config knows the other
                await self._platform.rename_ifnet(current, ifname)
                self._events.emit("ifnet.renamed_back", vimage, ifname=ifname, was=current)
            await self._journal.forget("vnet", ifname)
            self.identities.pop(ifname, None)
            self.pending.pop(ifname, None)
            self._events.emit("ifnet.returned", vimage, ifname=ifname)
            return True
        return False

    async def _watch(self, ifname: str) -> None:
        # Spawned by whichever request or rollback gave up on the NIC; it outlives that.
        structlog.contextvars.clear_contextvars()
        pending = self.pending[ifname]
        while ifname in self.pending:
            try:
                jails = {j.jid: j for j in await self._platform.list_jails()}
                _, where = await self.current_name(ifname, pending.jid)
                if where not in (None, HOST_JID):
                    pending.jid = where
                holder = jails.get(pending.jid)
                pending.dying = None if holder is None else holder.dying
                if await self._try_once(ifname, pending.jid, pending.vimage):
                    return
            except OSError as exc:
                pending.last_errno = exc.errno
                log.warning(
                    "ifnet.return_retry",
                    ifname=ifname,
                    jid=pending.jid,
                    errno=errnos.errorcode.get(exc.errno or 0, exc.errno),
                    attempt=pending.attempts,
                )
            pending.attempts += 1
            await trio.sleep(next_delay(pending.attempts))
