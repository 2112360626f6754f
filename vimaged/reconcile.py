"""Reconciliation: converge the journal with the kernel.

Run at start-up, before requests are served, and again after the platform came back (the sim
host was restarted: its jails and interfaces are not the ones the journal names). Vimages
that were running and are whole are adopted. Half-done operations are rolled back (and a
start that was in flight is then retried). Interfaces that carry vimaged's naming but that
nobody owns are removed; nothing else is ever touched.

Only objects it can prove it owns are acted on: a row written in this boot (jids are reused
after a reboot), a jail whose jid *and* name are the journaled ones, a NIC found in such a jail.
Anything else is left alone and reported (``reconcile.left_alone``).

While requests are served (``live``) it holds every vimage's lock, so that no start or stop
step runs meanwhile, and it leaves running vimages to the health checks: their failure path
(``fail_vimage``, then the restart policy) already undoes them under the same ownership
rules, and an adopted vimage stays as it is.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from typing import TYPE_CHECKING

import structlog
import trio

from vimaged.config import VimageConfig
from vimaged.errors import VimagedError, error_text
from vimaged.lifecycle import CLEANUP_GRACE, ActsThroughParts
from vimaged.platforms import HOST_JID
from vimaged.vimage import Vimage

if TYPE_CHECKING:
    from collections.abc import Callable, MutableMapping, Set

    from vimaged.lifecycle import SharedParts
    from vimaged.state import Resource

log = structlog.get_logger()


class Reconciler(ActsThroughParts):
    def __init__(
        self,
        parts: SharedParts,
        *,
        vimages: MutableMapping[str, Vimage],
        pending_nics: Callable[[str], list[str]],
        spared: Set[str] = frozenset(),
    ) -> None:
        super().__init__(parts)
        self.vimages = vimages
        self._pending_nics = pending_nics
        self._spared = spared
        """Bridged ifnets others own (vimaged-cni's attachments): never orphans."""

    async def reconcile(self, *, live: bool = False) -> list[str]:
        """Converge; returns the vimages whose interrupted start should be retried.

        ``live``: requests are being served; every vimage's lock is held meanwhile.
        """
        if not live:
            return await self._reconcile(live=False)
        async with contextlib.AsyncExitStack() as stack:
            for name in sorted(self.vimages):  # one order, so two callers cannot deadlock
                await stack.enter_async_context(self.vimages[name].lock)
            return await self._reconcile(live=True)

    async def _reconcile(self, *, live: bool) -> list[str]:
        await self.macs.load()
        records = await self.journal.vimages()
        resources = await self.journal.resources()
        jails = await self.platform.list_jails()
        running = {n for n, v in self.vimages.items() if live and v.state == "running"}
        by_vimage: defaultdict[str, list[Resource]] = defaultdict(list)
        stale: list[Resource] = []
        for res in resources:
            if res.vimage in running:
                continue  # its health check owns it (see the module's docstring)
            if _from_another_boot(res.boot, self.journal.boot_id):
                stale.append(res)
            else:
                by_vimage[res.vimage].append(res)
        await self._forget_previous_boot(stale)
        for res in stale:
            by_vimage.setdefault(res.vimage, [])
        retry: list[str] = []
        for name in sorted((set(records) | set(by_vimage)) - running):
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
            if live and not owned and (record is None or record.desired == "stopped"):
                continue  # nothing to converge: do not announce a recovery
            await self._undo_resources(name, owned)
            await self.journal.set_vimage(name, desired="stopped", jid=None)
            self.events.emit("vimage.recovered", name)
            if v is None and self._pending_nics(name):
                self._keep_in_view(name)
            if not live and record is not None and record.desired == "running" and v is not None:
                retry.append(name)
        journaled = {r.key for r in await self.journal.resources() if r.kind == "bridge"}
        await self.resources.remove_unowned_bridged(journaled | self._spared)
        return retry

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

    async def _forget_previous_boot(self, stale: list[Resource]) -> None:
        """Rows of an earlier boot: what they name died with that boot (jails, vnets and
        netgraph nodes do not survive a reboot); their jids may be another jail's now."""
        jids = {j.jid for j in await self.platform.list_jails()} if stale else set()
        for res in stale:
            where = await self.platform.locate_ifnet(res.key) if res.kind == "vnet" else None
            if res.kind == "jail" and res.jid in jids:
                self.resources.left_alone(
                    res.vimage,
                    f"jail {res.jid}",
                    "journaled in an earlier boot; that jid is another jail's now",
                )
            elif where not in (None, HOST_JID):
                self.resources.left_alone(
                    res.vimage,
                    f"{res.kind} {res.key}",
                    f"journaled in an earlier boot; now inside jid {where}, not ours",
                )
            else:
                log.info("reconcile.previous_boot", vimage=res.vimage, kind=res.kind, key=res.key)
            await self.journal.forget(res.kind, res.key)

    async def _undo_resources(self, name: str, owned: list[Resource]) -> None:
        jail_jid = next((r.jid for r in owned if r.kind == "jail"), None)
        with trio.move_on_after(CLEANUP_GRACE, shield=True):
            for res in reversed(owned):
                try:
                    await self.resources.undo(res, jail_jid=jail_jid)
                except (OSError, VimagedError) as exc:
                    log.error(
                        "reconcile.undo_failed",
                        vimage=name,
                        resource=res.key,
                        error=error_text(exc),
                    )


def _from_another_boot(row_boot: str | None, current: str | None) -> bool:
    # A row without a boot (written before boots were recorded) is judged by name and jid.
    return row_boot is not None and current is not None and row_boot != current
