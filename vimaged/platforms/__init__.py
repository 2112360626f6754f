"""The platform seam: everything the daemon asks of the kernel.

Three implementations sit behind :class:`Platform`: ``freebsd`` (jails, ioctls, PF_NETGRAPH
sockets), ``sim`` (a simulated FreeBSD host in its own process) and ``linux`` (network
namespaces). Domain code (supervisor, vnets, bridges) sees only this module's types.

Every method raises ``OSError(errno, strerror, subject)`` for kernel errors, so callers use
PEP 3151 classes (``FileExistsError``, ``ProcessLookupError``, ...), and nothing else: names
are checked by the domain before a platform is called, and a platform that meets a bad one
anyway answers as the kernel would (EINVAL, ENAMETOOLONG), never with ``ValueError``.

:func:`load` is the one selection point: a table of factories, each importing its module on
first use, that type checkers read (``trio/_subprocess_platform/__init__.py`` is the model),
so mypy proves every implementation satisfies :class:`Platform`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol

import msgspec

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping
    from contextlib import AbstractAsyncContextManager

    from vimaged.platforms.ifnet_events import IfnetEvent

HOST_JID = 0
"""The host's own vnet, where :meth:`Platform.locate_ifnet` reports a NIC that is home."""


class JailSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`Platform.create_jail` needs: jail(8) parameters of one vimage."""

    name: str
    path: str = "/"
    hostname: str
    devfs_ruleset: int | None = None
    parameters: tuple[str, ...] = ()
    """Extra jail(8) parameters, each ``key=value`` or a bare boolean ``key``."""


class JailInfo(msgspec.Struct, frozen=True, kw_only=True):
    jid: int
    name: str
    dying: bool = False


class IfnetInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One network interface as seen in one vnet."""

    name: str
    mac: str | None = None
    """``xx:xx:xx:xx:xx:xx`` in lower case, ``None`` for interfaces without one (lo0)."""
    up: bool = False
    addresses: tuple[str, ...] = ()
    """Its IPv4 and IPv6 addresses with prefix length (``192.0.2.10/24``, ``fe80::1/64``), in
    the kernel's order (the sim host: what SIOCAIFADDR(_IN6) set, vimaged.simhost.inet)."""
    mtu: int | None = None
    """if_mtu where the platform reports it (freebsd: ``struct if_data``; sim), else None."""
    routes: tuple[tuple[str, str | None], ...] = ()
    """The routes of its vnet through it, (destination CIDR, gateway or ``None`` on-link), in
    the kernel's order: reported by :meth:`Platform.sandbox_ifnet` only (empty elsewhere)."""


class BridgedIfnet(msgspec.Struct, frozen=True, kw_only=True):
    """An interface vimaged created and bridged to a host NIC, found by its naming scheme."""

    name: str
    """The interface name (``ng0_web``) wherever it lives."""
    parent: str
    """The host NIC it is bridged to."""
    jid: int | None = None
    """Where the interface is now, when the platform knows it without searching (linux);
    ``None`` otherwise (freebsd, sim)."""


class BridgeInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A bridge vimaged built (FreeBSD and sim: ``vimaged_br_<parent>``)."""

    parent: str
    mode: str
    """Its wiring: ``"classic"`` (``lower``/``upper`` on ``link0``/``link1``) or ``"uplink"``
    (``lower`` on ``uplink1``: ng_bridge's restrictive mode, see docs/netgraph.md). A bridge
    keeps the wiring it was built with until it is released."""
    ifnets: tuple[str, ...] = ()
    """The bridged interfaces of ours on it."""


class SandboxIfnet(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`Platform.create_in_sandbox` makes: one value, not eight parameters repeated
    by every platform and its helpers."""

    parent: str
    """The host NIC it is bridged to."""
    ifname: str
    """Its host-side name (the name its bridge code gives it)."""
    mac: str
    sandbox: str
    """CNI_NETNS: a netns path on linux, a VNET jail's name or jid on FreeBSD."""
    newname: str
    """Its name inside the sandbox (CNI_IFNAME)."""
    mtu: int | None = None
    addresses: tuple[str, ...] = ()
    """CIDR."""
    routes: tuple[tuple[str, str | None], ...] = ()
    """(destination, gateway)."""


class LinkCounters(msgspec.Struct, frozen=True, kw_only=True):
    """One bridge link's counters (``struct ng_bridge_link_stats``, NGM_BRIDGE_GET_STATS).

    C spelling, so one grep finds both sides. ``memoryFailures`` counts failed MAC learning
    (a failed NGM_BRIDGE_MOVE_HOST) as well as mbuf shortages; ``loopDetects`` a loop.
    A deliberate copy of ``vimaged.netgraph.codec.LinkStats``: the seam does not import the
    binding (linux has none); a test keeps the two field lists equal.
    """

    recvOctets: int = 0  # noqa: N815
    recvPackets: int = 0  # noqa: N815
    recvMulticasts: int = 0  # noqa: N815
    recvBroadcasts: int = 0  # noqa: N815
    recvUnknown: int = 0  # noqa: N815
    recvRunts: int = 0  # noqa: N815
    recvInvalid: int = 0  # noqa: N815
    xmitOctets: int = 0  # noqa: N815
    xmitPackets: int = 0  # noqa: N815
    xmitMulticasts: int = 0  # noqa: N815
    xmitBroadcasts: int = 0  # noqa: N815
    loopDrops: int = 0  # noqa: N815
    loopDetects: int = 0  # noqa: N815
    memoryFailures: int = 0  # noqa: N815


def os_error(code: int, subject: str) -> OSError:
    """``OSError(code, strerror, subject)``: the one kind of error a platform raises."""
    return OSError(code, os.strerror(code), subject)


class Platform(Protocol):
    """The narrow interface between vimaged's domain code and a kernel.

    What a domain asks, and nothing a platform needs only for itself: how a bridged interface
    is wired (netgraph bridges and their one per-parent lock on FreeBSD and sim, macvlans on
    Linux) is the platform's business, so there is no bridge to release and no ``ifconfig up``
    for the bridge code here.
    """

    name: str

    async def preflight(self) -> None:
        """Check that vimages can run here; raise ``PlatformError`` saying what to do."""

    # -- identity

    async def host_uuid(self) -> str:
        """The host's identity (``kern.hostuuid`` on FreeBSD), used to derive MACs."""

    async def boot_id(self) -> str:
        """This boot's identity: it changes at every boot and only then (``kern.boottime`` on
        FreeBSD, ``/proc/sys/kernel/random/boot_id`` on Linux). Jails, vnets and netgraph
        nodes do not survive a reboot and jids are reused, so a journal row is acted on only
        in the boot that wrote it."""

    # -- jails (vimages) and commands in them

    async def create_jail(self, spec: JailSpec) -> int:
        """Create a persistent vnet jail and return its jid. EEXIST if the name is taken."""

    async def remove_jail(self, jid: int) -> None:
        """Remove the jail (``jail -r``). It may linger dying while references remain."""

    async def list_jails(self) -> list[JailInfo]:
        """All jails, dying ones included (``jls -d``)."""

    async def jail_info(self, jid: int) -> JailInfo | None:
        """The jail ``jid``, dying or not; ``None`` if there is none. One lookup, not a
        listing: the health checks and stops ask it for every vimage."""

    async def exec_in_jail(self, jid: int, command: str, *, output: int | None = None) -> int:
        """Run ``command`` with ``/bin/sh -c`` inside the jail; return its exit status.

        ``output``: a file descriptor for the command's stdout and stderr (a console log, a
        capture); ``None`` leaves them the daemon's own. Cancellation: the caller owns the
        deadline; on cancel the command is killed.
        """

    async def exec_on_host(
        self, command: str, *, env: Mapping[str, str], output: int | None = None
    ) -> int:
        """Run ``command`` with ``/bin/sh -c`` on the host, outside any jail, with ``env``
        added to the daemon's environment (the ``exec_prestart`` family, as jail(8)'s
        ``exec.prestart``); return its exit status. ``output`` and cancellation as for
        :meth:`exec_in_jail`."""

    # -- interfaces: looking, moving (``_vnets``), and the renamed-NIC tracking

    async def list_ifnets(self, jid: int = HOST_JID) -> list[IfnetInfo]:
        """Interfaces visible in the vnet of ``jid`` (``HOST_JID`` for the host)."""

    async def locate_ifnet(self, ifname: str) -> int | None:
        """Where ``ifname`` is: ``HOST_JID``, the jid of the jail holding it, or ``None``."""

    async def move_ifnet(self, ifname: str, jid: int) -> None:
        """``ifconfig IF vnet JID``. An interface that was up is up inside the vimage:
        FreeBSD's if_vmove takes it down (if_detach_internal → if_down), so the platform
        raises it again there."""

    async def reclaim_ifnet(self, ifname: str, jid: int) -> None:
        """``ifconfig IF -vnet JID``: bring the interface back to the host."""

    async def rename_ifnet(self, ifname: str, newname: str) -> None:
        """``ifconfig IF name NEW`` on the host (SIOCSIFNAME): a moved NIC that came home
        renamed is renamed back (vnets' renamed-NIC tracking)."""

    # -- bridged interfaces (``_bridges``)

    async def create_bridged_ifnet(self, parent: str, ifname: str, mac: str) -> None:
        """Create interface ``ifname`` on the host, bridged to NIC ``parent``, with ``mac``, up.

        FreeBSD and sim: an ng_eiface on the per-parent ng_bridge, built on first use under
        the platform's lock of that parent; Linux: a macvlan. EEXIST if ``ifname`` exists.
        Nothing is left behind on failure (a bridge this call built goes again).
        """

    async def destroy_bridged_ifnet(self, ifname: str) -> str | None:
        """Destroy an interface made by :meth:`create_bridged_ifnet`, wherever it lives now,
        and what it alone needed: on FreeBSD and sim the parent's bridge once its last
        interface goes (the parent NIC gets promiscuous mode off, autosrc and its offloads
        back). Returns the parent whose bridge was removed, else None (always on Linux).

        ENOENT if there is no such interface of ours.
        """

    async def list_bridged_ifnets(self) -> list[BridgedIfnet]:
        """Every interface of ours that exists, for reconciliation after a restart."""

    async def reconcile_strays(self) -> list[BridgedIfnet]:
        """Remove what a killed daemon left half-made, which :meth:`list_bridged_ifnets` cannot
        name (an eiface not yet named, a macvlan not yet aliased), and return it; on FreeBSD
        and sim also release every bridge left with no interface (a kill between the last
        destroy and its release), restoring its parent NIC. Only at reconciliation, while
        nothing is being created: a create in flight looks the same."""

    # -- status of the data plane (health, ``vimagectl status``)

    async def list_bridges(self) -> list[BridgeInfo]:
        """The bridges vimaged built, with their wiring, for status (FreeBSD and sim)."""

    async def bridged_ifnet_stats(self, ifname: str) -> LinkCounters:
        """The bridge's counters for the link of bridged interface ``ifname`` (FreeBSD and
        sim). ENOENT if there is no such interface of ours, ENOTCONN if it is on no bridge."""

    # -- interface arrival and departure (issue 13 item 5) --------------------------------
    def watch_ifnets(self) -> AbstractAsyncContextManager[AsyncIterator[IfnetEvent]]:
        """Subscribe to interfaces arriving in and leaving the host's vnet.

        Entering subscribes (``OSError`` if the source is not there: devd down), so a
        ``list_ifnets`` done after entering misses nothing; the iterator yields
        :class:`~vimaged.platforms.ifnet_events.IfnetEvent` values, reopens a lost source
        itself and then yields a ``lost`` event (list again). FreeBSD: devd's seqpacket pipe;
        Linux: rtnetlink RTNLGRP_LINK; sim: the sim host's ``watch_ifnets`` long poll.
        ``vimaged.ifwatch`` turns this into "present/absent". Cancellation: safe.
        """

    # -- end of interface arrival and departure ---------------------------------------------

    async def aclose(self) -> None:
        """Release what the platform holds (connections, fds). Idempotent."""

    # -- CNI attachments (vimaged-cni): an interface moved into a sandbox vimaged does not own

    async def create_in_sandbox(self, want: SandboxIfnet) -> None:
        """Create an interface bridged to ``want.parent`` with ``want.mac`` (as
        :meth:`create_bridged_ifnet` does; ``want.ifname`` is its host-side name) and put it in
        ``want.sandbox`` as ``want.newname``, up, with ``want.addresses`` and ``want.routes``.

        ``sandbox`` is CNI_NETNS: a netns path on linux, a VNET jail's name or jid on FreeBSD.
        ENOENT if the sandbox is gone, EINVAL if it is not one (or is vimaged's own), EEXIST if
        ``newname`` is taken there. Linux creates a macvlan right inside the namespace (a move
        costs the kernel a synchronize_net, ~25 ms); netgraph platforms make the eiface on the
        host and move it. Nothing is left behind on failure.
        """

    async def sandbox_ifnet(self, sandbox: str, ifname: str) -> IfnetInfo | None:
        """``ifname`` inside ``sandbox`` if it is an interface of vimaged's, else None; with
        the sandbox's routes through it (linux: RTM_GETROUTE of the main table; freebsd and
        sim: sysctl NET_RT_DUMP in the jail's vnet)."""

    async def detach_from_sandbox(self, sandbox: str, ifname: str, mac: str) -> None:
        """Destroy ``ifname`` in ``sandbox`` if it is ours and has ``mac``; ENOENT otherwise
        (also when the sandbox is gone)."""


# The factories import their module on first use: a platform costs nothing until it is
# chosen, and freebsd/sim/linux import this module's types without a circle.


def _freebsd(**options: str) -> Platform:
    from vimaged.platforms import freebsd

    return freebsd.create(**options)


def _sim(**options: str) -> Platform:
    from vimaged.platforms import sim

    return sim.create(**options)


def _linux(**options: str) -> Platform:
    from vimaged.platforms import linux

    return linux.create(**options)


FACTORIES: Mapping[str, Callable[..., Platform]] = {
    "freebsd": _freebsd,
    "sim": _sim,
    "linux": _linux,
}
"""The one selection point: platform name -> factory taking the platform's options."""

PLATFORM_NAMES = tuple(FACTORIES)


def load(name: str, **options: str) -> Platform:
    """Instantiate the platform called ``name`` (one of :data:`PLATFORM_NAMES`).

    ``ValueError`` for an unknown name or option: a usage error of the daemon, not a kernel's.
    """
    try:
        factory = FACTORIES[name]
    except KeyError:
        raise ValueError(
            f"unknown platform {name!r}; expected one of {', '.join(PLATFORM_NAMES)}"
        ) from None
    return factory(**options)
