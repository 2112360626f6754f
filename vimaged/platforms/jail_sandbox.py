"""FreeBSD half of CNI attachments (freebsd and sim): the sandbox is a VNET jail, by name or jid.

FreeBSD's CNI callers (containerd with runj or ocijail, Podman) name the jail in CNI_NETNS. The
interface, an ng_eiface made by the bridge code, is renamed on the host to CNI_IFNAME and then
moved (SIOCSIFNAME, then SIOCSIFVNET: if_vmove_loan answers EEXIST for a name taken in the
jail's vnet, sys/net/if.c); both happen under one lock, so two ADDs never hold the same name on
the host at once. Its netgraph node keeps the host-side name (ng_eiface.c has no rename
handler), which is how DEL finds and destroys it wherever it lives. Its MTU, addresses and
routes are then set inside the jail (:mod:`jail_inet`: ioctls and RTM_ADD from a jail_attach'ed
child of vimaged's own; the sim models the same calls); any failure destroys the interface,
which takes whatever was already applied with it. CHECK reads them back the same way (the
address child, and sysctl NET_RT_DUMP for the routes: :mod:`freebsd_routes`).
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Protocol, cast

import trio

from vimaged.platforms import jail_inet

if TYPE_CHECKING:
    from collections.abc import Sequence

    from vimaged.platforms import IfnetInfo, Platform


class InetPlatform(Protocol):
    """What the netgraph platforms (freebsd, sim) add for a jail sandbox's layer 3."""

    async def configure_in_jail(self, jid: int, inet: jail_inet.InetPlan) -> None:
        """Apply ``inet`` to its interface in jail ``jid``; the kernel's errno as OSError."""

    async def inspect_in_jail(self, jid: int, ifname: str) -> IfnetInfo | None:
        """``ifname`` in jail ``jid`` with the routes of the jail's vnet through it (sysctl
        NET_RT_DUMP there, :mod:`freebsd_routes`), or None if it is not there."""


CLEANUP_GRACE = 5.0


async def resolve(plat: Platform, sandbox: str) -> int:
    """The jid of the live jail ``sandbox`` names (a jid, or a name); ENOENT if there is none
    (a dying jail is a gone sandbox: jail_attach(2) refuses it)."""
    jails = await plat.list_jails()
    if sandbox.isdigit():
        found = [j for j in jails if j.jid == int(sandbox)]
    else:
        found = [j for j in jails if j.name == sandbox]
    live = [j for j in found if not j.dying]
    if not live:
        raise OSError(errno.ENOENT, "no such live jail", sandbox)
    return live[0].jid


async def create(
    plat: Platform,
    lock: trio.Lock,
    parent: str,
    ifname: str,
    mac: str,
    sandbox: str,
    newname: str,
    *,
    mtu: int | None,
    addresses: Sequence[str],
    routes: Sequence[tuple[str, str | None]],
) -> None:
    inet = jail_inet.plan(newname, mtu, addresses, routes, mac=mac)  # EINVAL before anything
    jid = await resolve(plat, sandbox)
    await plat.create_bridged_ifnet(parent, ifname, mac)
    try:
        async with lock:
            await plat.rename_ifnet(ifname, newname)
            try:
                await plat.move_ifnet(newname, jid)
            except BaseException:
                with trio.move_on_after(CLEANUP_GRACE, shield=True):
                    await plat.rename_ifnet(newname, ifname)
                raise
        if inet.mtu is not None or inet.addresses or inet.routes:
            await cast("InetPlatform", plat).configure_in_jail(jid, inet)
    except BaseException:
        with trio.move_on_after(CLEANUP_GRACE, shield=True):
            await plat.destroy_bridged_ifnet(ifname)  # by its node's name, wherever it is
        raise


async def inspect(plat: Platform, sandbox: str, ifname: str) -> IfnetInfo | None:
    """``ifname`` in the jail with its routes; the caller compares its MAC (an ifnet carries
    no mark)."""
    jid = await resolve(plat, sandbox)
    return await cast("InetPlatform", plat).inspect_in_jail(jid, ifname)


async def _find(plat: Platform, sandbox: str, ifname: str) -> IfnetInfo | None:
    jid = await resolve(plat, sandbox)
    return next((i for i in await plat.list_ifnets(jid) if i.name == ifname), None)


async def detach(plat: Platform, sandbox: str, ifname: str, mac: str) -> None:
    """Nothing to do once the node is destroyed (destroy_bridged_ifnet by its host-side name,
    which the caller does first): ENOENT if ``ifname`` with ``mac`` is gone from the jail,
    EBUSY if it is still there (an eiface whose node vimaged cannot name)."""
    try:
        info = await _find(plat, sandbox, ifname)  # no routes needed
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EINVAL):
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), sandbox) from None
        raise
    if info is None or info.mac != mac:
        raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), ifname)
    raise OSError(errno.EBUSY, "still in the jail after its node was destroyed", ifname)
