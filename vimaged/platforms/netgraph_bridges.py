"""Platform layer, netgraph bridges: per-parent ng_bridge + ng_eiface graphs for bridged ifnets.

Used by the ``sim`` and ``freebsd`` platforms to implement the bridged-ifnet methods of
``Platform`` over the binding (``vimaged.netgraph``). The bridge lifecycle is entirely here:
:meth:`NetgraphBridges.create` builds a parent's bridge on first use and
:meth:`NetgraphBridges.destroy` releases it with its last eiface, under the one per-parent
lock of the process, so the domain never sees a bridge.

Names (``vimaged_br_<nic>``, ``vimaged_if_<ifname>``) and the read-only walks are
:mod:`vimaged.platforms.netgraph_survey`'s.

Wiring: *classic* by default (ether ``lower`` -> ``link0``, ``upper`` -> ``link1``, eifaces
from ``link2``), because with an uplink as its first hook ng_bridge is in restrictive mode
(``priv->sendUnknown = 0`` in ``ng_bridge_newhook``) and a failed MAC learning
(``memoryFailures``) then loses jail-to-jail unicast. ``bridge_mode="uplink"`` asks for
jng-4.0's layout (``lower`` -> ``uplink1``, ``upper`` -> ``link0``, eifaces from ``link1``);
a kernel without uplinks answers EINVAL and the bridge is made classic. An existing bridge's
layout is read from its hooks and kept (adopted) until it is released. Bridge messages use the
current cookie and fall back to the pre-12.2 one on EINVAL.

Addresses: FreeBSD 15's ``ngc_send`` refuses paths over 31 characters, so links are reached
by the bridge's node ID (``[1a2b]:link12``), never as ``vimaged_br_<parent>:link<N>``.

Races: on FreeBSD 15 ng_bridge numbers the link itself (:mod:`netgraph_autolink`, probed by
the first create); before, links are taken by ``mkpeer`` on a chosen free ``linkN`` (EEXIST,
another process got it first, moves on to the next), never probed and then used; inside the
process one ``trio.Lock`` per parent (the only one: the domain takes none) serializes build,
add and release. N is chosen from the process's own
view of the bridge's links (learnt once by LISTHOOKS, kept by its own adds and removes), so an
add costs a fixed number of requests however big the bridge; the kernel's EEXIST and ENOENT
correct a stale view. Bridges are not made persistent: a shared bridge should die with its
last link, and :meth:`NetgraphBridges.destroy` removes it explicitly anyway.
"""

from __future__ import annotations

import errno as errno_codes
from collections import defaultdict
from contextlib import AsyncExitStack, suppress
from typing import TYPE_CHECKING

import msgspec
import structlog
import trio

from vimaged.errors import error_text
from vimaged.netgraph import abi, codec
from vimaged.netgraph.linkview import UPLINK_HOOK, LinkView, Wiring
from vimaged.netgraph.ngsocket import NgSocket, netgraph_error, open_ng_socket
from vimaged.platforms import BridgedIfnet, LinkCounters
from vimaged.platforms import netgraph_survey as survey
from vimaged.platforms.netgraph_autolink import (
    KernelNumbersUnsupportedError,
    attach_numbered_by_kernel,
)
from vimaged.platforms.netgraph_survey import (
    BRIDGE_PREFIX,
    EIFACE_HOOKS,
    EIFACE_PREFIX,
    bridge_name,
    check_ifname,
    check_mac,
    check_parent,
    eiface_name,
    ether_node_name,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from contextlib import AbstractAsyncContextManager

    from vimaged.netgraph.transport import NgTransport
    from vimaged.platforms import BridgeInfo
    from vimaged.platforms.parent_nics import ParentNics

log = structlog.get_logger()

MAX_LINK_ATTEMPTS = 1024
"""EEXIST retries before giving up: each one means another process took that link."""
ADOPT_POLLS = 40
ADOPT_POLL_INTERVAL = 0.05
"""How long to wait for another process to name the bridge it is building (2 s in all)."""
BRIDGE_MODES = ("classic", "uplink")


class NetgraphBridges:
    """Bridged ifnets as ng_eiface nodes on per-parent ng_bridge nodes.

    Args:
        open_transport: zero-argument callable returning an async context manager that
            yields an ``NgTransport``; opened on first use, closed by :meth:`aclose`.
        rename_ifnet: ``rename_ifnet(old, new)``, SIOCSIFNAME on the host.
        set_ifnet_up: ``set_ifnet_up(name)``, ``ifconfig NAME up`` on the host.
        bridge_mode: ``"classic"`` (default) or ``"uplink"``: the wiring of bridges built
            from now on (existing ones keep theirs until released).
        parents: raises a parent NIC and turns its offloads off when its bridge is built,
            restores it on release (:mod:`vimaged.platforms.parent_nics`); None leaves NICs alone.
    """

    def __init__(
        self,
        open_transport: Callable[[], AbstractAsyncContextManager[NgTransport]],
        rename_ifnet: Callable[[str, str], Awaitable[None]],
        set_ifnet_up: Callable[[str], Awaitable[None]],
        *,
        bridge_mode: str = "classic",
        parents: ParentNics | None = None,
    ) -> None:
        if bridge_mode not in BRIDGE_MODES:
            raise ValueError(f"bridge mode {bridge_mode!r} is not one of {', '.join(BRIDGE_MODES)}")
        self.bridge_mode = bridge_mode
        self._parents = parents
        self._open_transport = open_transport
        self._rename_ifnet = rename_ifnet
        self._set_ifnet_up = set_ifnet_up
        self._stack = AsyncExitStack()
        self._sock: NgSocket | None = None
        self._open_lock = trio.Lock()
        self._bridge_locks: defaultdict[str, trio.Lock] = defaultdict(trio.Lock)
        """Bridge name -> the lock of its build, adds and release: the only per-parent lock
        of the process (the bridge's name is a function of the parent's)."""
        self._bridge_cookies: dict[str, int] = {}
        self._views: dict[str, LinkView] = {}
        """Bridge name -> this process's view of its links."""
        self._link_of: dict[str, tuple[str, int]] = {}
        """Eiface node name -> (bridge name, link number), to update the view on destroy."""
        self._kernel_numbers: bool | None = None
        """Whether ng_bridge numbers a bare ``link`` hook (FreeBSD 15); None: not probed yet."""

    async def socket(self) -> NgSocket:
        """The shared ``NgSocket``, opened on first use."""
        async with self._open_lock:
            if self._sock is None:
                transport = await self._stack.enter_async_context(self._open_transport())
                self._sock = await self._stack.enter_async_context(open_ng_socket(transport))
            return self._sock

    async def aclose(self) -> None:
        """Close the netgraph socket; the graph in the kernel stays. Idempotent."""
        self._sock = None
        await self._stack.aclose()

    # Bridges.

    def _learn(self, bridge: str, hooks: codec.HookList) -> LinkView:
        """Make ``hooks`` this process's view of ``bridge`` (kept in place if it has one)."""
        view = self._views.get(bridge)
        if view is None:
            view = self._views[bridge] = LinkView.from_hooks(hooks)
        else:
            view.learn(hooks)
        for number, eiface in view.eifaces.items():
            if eiface:  # an unnamed one is still being created, by this process or another
                self._link_of[eiface] = (bridge, number)
        return view

    def _forget(self, bridge: str) -> None:
        self._views.pop(bridge, None)
        self._bridge_cookies.pop(bridge, None)

    async def _view_of(self, sock: NgSocket, parent: str) -> tuple[LinkView, bool]:
        """This process's view of ``parent``'s bridge, learnt or built if it has none:
        ``(view, True)`` if this call built the bridge."""
        bridge = bridge_name(parent)
        view = self._views.get(bridge)
        if view is not None:
            return view, False
        try:
            hooks = await sock.listhooks(bridge + ":")
        except FileNotFoundError:
            return await self._build_bridge(sock, parent)
        return self._learn(bridge, hooks), False

    async def _build_bridge(self, sock: NgSocket, parent: str) -> tuple[LinkView, bool]:
        """Build ``parent``'s bridge: ``(view, True)``, or ``(view, False)`` when another
        process built it at the same moment and this call adopted it."""
        ether = ether_node_name(parent) + ":"
        try:
            wiring = Wiring(uplink=False)
            if self.bridge_mode == "uplink":
                try:
                    await sock.mkpeer(ether, abi.NG_BRIDGE_NODE_TYPE, "lower", UPLINK_HOOK)
                    wiring = Wiring(uplink=True)
                except OSError as exc:
                    if exc.errno != errno_codes.EINVAL:
                        raise
            if not wiring.uplink:  # asked for, or no uplink hooks in this ng_bridge
                await sock.mkpeer(ether, abi.NG_BRIDGE_NODE_TYPE, "lower", wiring.lower)
        except OSError as exc:
            if exc.errno not in (errno_codes.EEXIST, errno_codes.EISCONN):
                raise
            adopted = await self._adopt_concurrent_build(sock, parent)
            if adopted is not None:
                return self._learn(bridge_name(parent), adopted), False
            # The NIC's lower hook belongs to a graph that is not ours (jng, ngbuddy, ...):
            # EBUSY, so it is not mistaken for "ifname exists".
            raise netgraph_error(errno_codes.EBUSY, ether + "lower", "mkpeer") from None
        try:
            await sock.name_node(ether + "lower", bridge_name(parent))
            await sock.connect(ether, ether + "lower", "upper", wiring.upper)
            node_id = (await sock.nodeinfo(ether + "lower")).id
        except BaseException:
            with trio.move_on_after(5, shield=True):
                await sock.shutdown(ether + "lower")
            raise
        view = self._views[bridge_name(parent)] = LinkView(wiring, node_id)
        return view, True

    async def _adopt_concurrent_build(self, sock: NgSocket, parent: str) -> codec.HookList | None:
        """The hooks of our bridge on ``parent``'s lower hook, once another process has
        named it; None if what hangs there is not (and is not becoming) ours."""
        lower = ether_node_name(parent) + ":lower"
        for _ in range(ADOPT_POLLS):
            try:
                peer = await sock.nodeinfo(lower)
            except FileNotFoundError:
                return None  # gone again: let the caller fail rather than loop
            if peer.name == bridge_name(parent):
                try:
                    return await sock.listhooks(peer.name + ":", hooks=peer.hooks)
                except FileNotFoundError:
                    return None
            if peer.name or peer.type != abi.NG_BRIDGE_NODE_TYPE:
                return None
            await trio.sleep(ADOPT_POLL_INTERVAL)  # an unnamed bridge: being built right now
        return None

    async def _reset_parent(self, sock: NgSocket, parent: str) -> None:
        """What ng_ether does when its last hook goes: promisc off, autosrc on, made explicit.

        Skipped while the parent still has hooks: somebody else's graph uses them.
        """
        ether = ether_node_name(parent) + ":"
        if (await sock.nodeinfo(ether)).hooks:
            return
        await sock.ether_setpromisc(ether, False)
        await sock.ether_setautosrc(ether, True)

    # Bridged ifnets.

    async def create(self, parent: str, ifname: str, mac: str) -> None:
        """Create ``ifname`` (with ``mac``, up) on ``parent``'s bridge, building it if needed.

        Raises ``FileExistsError`` if ``ifname`` exists as one of ours (or the rename finds
        the name taken). On any failure the eiface, and the bridge if this call built it,
        are shut down again.

        Cost: a fixed number of requests whatever the bridge's size, once this process knows
        the bridge (the first call learns it with one LISTHOOKS).

        Cancellation: safe; the rollback runs shielded.
        """
        check_parent(parent)
        check_ifname(ifname)
        check_mac(mac)
        sock = await self.socket()
        node = eiface_name(ifname)
        async with self._bridge_locks[bridge_name(parent)]:
            try:
                await sock.nodeinfo(node + ":")
            except FileNotFoundError:
                pass
            else:
                raise netgraph_error(errno_codes.EEXIST, node + ":", "create")
            bridge = bridge_name(parent)
            built = False
            number: int | None = None
            eiface: str | None = None
            view: LinkView | None = None
            try:
                view, built = await self._view_of(sock, parent)
                if built and self._parents is not None:
                    await self._parents.prepare(parent)
                ether = ether_node_name(parent) + ":"
                await sock.ether_setpromisc(ether, True)
                await sock.ether_setautosrc(ether, False)  # keep the eifaces' source MACs
                try:
                    number, named = await self._add_link(sock, bridge, view, node)
                except FileNotFoundError:
                    # The bridge this process knew is gone: another process released it.
                    self._forget(bridge)
                    view, built = await self._view_of(sock, parent)
                    if built and self._parents is not None:
                        await self._parents.prepare(parent)
                    number, named = await self._add_link(sock, bridge, view, node)
                if named:  # made and named off the bridge (netgraph_autolink)
                    eiface = node + ":"
                else:
                    eiface = await self._name_linked(sock, view, number, node)
                born = await sock.eiface_getifname(eiface)
                self._link_of[node] = (bridge, number)
                await self._rename_ifnet(born, ifname)
                await sock.eiface_set(eiface, mac)
                await self._set_ifnet_up(ifname)
            except BaseException:
                link = view.link_path(number) if view is not None and number is not None else None
                with trio.move_on_after(5, shield=True):
                    await self._rollback(sock, parent, node, number, eiface or link, built)
                raise

    async def _add_link(
        self, sock: NgSocket, bridge: str, view: LinkView, node: str
    ) -> tuple[int, bool]:
        """An eiface for ``node`` on a new link of ``bridge``: ``(N, named)``.

        On a kernel that numbers links itself (probed by the first add of the process, as
        the uplink wiring is probed by the first build) the eiface is made, named and linked
        by :func:`attach_numbered_by_kernel` (``named``: True); otherwise N is chosen here
        (:meth:`_add_eiface`) and the eiface is still unnamed.
        """
        if self._kernel_numbers is not False:
            try:
                number = await attach_numbered_by_kernel(sock, view.path, node)
            except KernelNumbersUnsupportedError:
                self._kernel_numbers = False
                log.info("bridge.link_numbering_probed", chosen_by="vimaged")
            else:
                if self._kernel_numbers is None:
                    log.info("bridge.link_numbering_probed", chosen_by="kernel")
                self._kernel_numbers = True
                view.add(number, node)
                return number, True
        return await self._add_eiface(sock, bridge, view, node), False

    async def _name_linked(self, sock: NgSocket, view: LinkView, number: int, node: str) -> str:
        """Name the unnamed eiface on ``linkN`` ``node``; its address before the name."""
        eiface = (await sock.nodeinfo(view.link_path(number))).address
        await survey.claim_name(sock, eiface, node)
        return eiface

    async def _add_eiface(self, sock: NgSocket, bridge: str, view: LinkView, node: str) -> int:
        """``mkpeer BRIDGE: eiface linkN ether`` on the lowest N free in ``view``; N.

        EEXIST means another process took that link (or the view is stale): the view is
        learnt again and the next free N tried. The hook itself is the claim, never a probe.
        """
        for _ in range(MAX_LINK_ATTEMPTS):
            number = view.lowest_free()
            try:
                await sock.mkpeer(view.path, abi.NG_EIFACE_NODE_TYPE, f"link{number}", "ether")
            except FileExistsError:
                self._learn(bridge, await sock.listhooks(bridge + ":"))
                view.taken.add(number)  # moves on even if the taker has freed it again
                continue
            view.add(number, node)
            return number
        raise netgraph_error(errno_codes.EAGAIN, bridge + ":", "mkpeer")

    async def _rollback(
        self,
        sock: NgSocket,
        parent: str,
        node: str,
        number: int | None,
        eiface: str | None,
        built: bool,
    ) -> None:
        bridge = bridge_name(parent)
        if number is not None and eiface is not None:
            # The eiface hangs on our link (``[bridge id]:linkN``) even when its own
            # address was never learnt.
            with suppress(FileNotFoundError):
                await sock.shutdown(eiface)
            # Exactly the link this call took: ``node`` may be another task's on another parent.
            view = self._views.get(bridge)
            if view is not None and view.eifaces.get(number) == node:
                view.remove(number)
            if self._link_of.get(node) == (bridge, number):
                del self._link_of[node]
        if built:
            # Another process may have adopted the bridge meanwhile: only an empty one goes.
            await self._release_locked(sock, bridge_name(parent), parent)

    def _drop_link(self, node: str) -> None:
        """Take the eiface ``node``'s link out of this process's view, if it is there."""
        place = self._link_of.pop(node, None)
        if place is None:
            return
        bridge, number = place
        view = self._views.get(bridge)
        if view is not None and view.eifaces.get(number) == node:
            view.remove(number)

    async def destroy(self, ifname: str) -> str | None:
        """Shut down the eiface of ``ifname``, destroying its ifnet wherever it lives, then
        release its bridge if that was the bridge's last eiface.

        Returns the parent NIC whose bridge was released, else None. ``FileNotFoundError``
        (ENOENT) if there is no such interface of ours; a bridge this process saw it on is
        still released if it is left empty. A release that fails is logged
        (``bridge.release_failed``), not raised: the interface is gone, which is what the
        caller asked, and reconciliation releases an empty bridge later.
        """
        check_ifname(ifname)
        sock = await self.socket()
        node = eiface_name(ifname)
        try:
            hooks = await sock.listhooks(node + ":", hooks=EIFACE_HOOKS)
        except FileNotFoundError:
            place = self._link_of.get(node)
            self._drop_link(node)  # gone already: neither is its link
            if place is not None:
                async with self._bridge_locks[place[0]]:
                    await self._release_logged(sock, place[0])
            raise
        bridge = next(
            (
                link.peer.name
                for link in hooks.links
                if link.peer.type == abi.NG_BRIDGE_NODE_TYPE
                and link.peer.name.startswith(BRIDGE_PREFIX)
            ),
            None,
        )
        if bridge is None:  # on no bridge of ours: nothing to release
            await self._shutdown_eiface(sock, node)
            return None
        async with self._bridge_locks[bridge]:
            await self._shutdown_eiface(sock, node)
            return await self._release_logged(sock, bridge)

    async def _release_logged(self, sock: NgSocket, bridge: str) -> str | None:
        try:
            return await self._release_locked(sock, bridge, None)
        except OSError as exc:
            log.warning(
                "bridge.release_failed", bridge=bridge, errno=exc.errno, error=error_text(exc)
            )
            return None

    async def _shutdown_eiface(self, sock: NgSocket, node: str) -> None:
        try:
            await sock.shutdown(node + ":")
        finally:
            self._drop_link(node)

    async def release(self, parent: str) -> bool:
        """Remove ``parent``'s bridge if no eiface is left on it; True if it was removed.

        The parent's ng_ether node then has no hooks: promiscuous mode off, autosrc on.
        :meth:`destroy` does this itself; this is for a bridge found empty otherwise.
        """
        check_parent(parent)
        sock = await self.socket()
        bridge = bridge_name(parent)
        async with self._bridge_locks[bridge]:
            return await self._release_locked(sock, bridge, parent) is not None

    async def _holds_eiface(self, sock: NgSocket, bridge: str) -> bool:
        """True if one link this process's view names is (still) an eiface: a NODEINFO
        through that link, instead of a LISTHOOKS whose reply grows with the bridge."""
        view = self._views.get(bridge)
        if view is None or not view.eifaces:
            return False
        number = next(iter(view.eifaces))
        try:
            peer = await sock.nodeinfo(view.link_path(number))
        except FileNotFoundError:
            view.remove(number)  # freed by another process (or the bridge is gone)
            return False
        return peer.type == abi.NG_EIFACE_NODE_TYPE

    async def _release_locked(self, sock: NgSocket, bridge: str, parent: str | None) -> str | None:
        """Shut ``bridge`` down if it holds no eiface and reset its parent NIC (``parent``,
        or the ifname of the ether node it hangs on); the parent, or None if it stays."""
        if await self._holds_eiface(sock, bridge):
            return None
        # No eiface this process knows of: the kernel's own list decides.
        try:
            hooks = await sock.listhooks(bridge + ":")
        except FileNotFoundError:
            self._forget(bridge)
            return None
        if any(link.peer.type == abi.NG_EIFACE_NODE_TYPE for link in hooks.links):
            self._learn(bridge, hooks)
            return None
        if parent is None:
            ether = next(
                (k.peer for k in hooks.links if k.peer.type == abi.NG_ETHER_NODE_TYPE), None
            )
            if ether is None:
                return None  # hangs on no NIC: not a bridge release can restore anything for
            parent = await sock.ether_getifname(ether.address)
        try:
            await sock.shutdown(bridge + ":")
        except FileNotFoundError:
            return None  # another process released it first
        finally:
            self._forget(bridge)
        await self._reset_parent(sock, parent)
        if self._parents is not None:
            await self._parents.restore(parent)
        return parent

    async def remove_strays(self) -> list[BridgedIfnet]:
        """Shut down the eifaces a killed process left on our bridges before it named them,
        and return them (``name``: the node's own name, ``ngethN``; ``parent``: the NIC).

        Between ``mkpeer`` and ``name_node`` an eiface is ours only by the link it hangs on,
        so :meth:`list` cannot see it and it would hold its bridge forever. Call this only
        when no :meth:`create` is running in any process (reconciliation at start-up): a
        create in flight looks the same.
        """
        sock = await self.socket()
        strays: list[BridgedIfnet] = []
        async for parent, hooks in survey.our_bridges(sock, await sock.listnodes()):
            for link in hooks.links:
                peer = link.peer
                if peer.type != abi.NG_EIFACE_NODE_TYPE or peer.name.startswith(EIFACE_PREFIX):
                    continue
                with suppress(FileNotFoundError):
                    await sock.shutdown(peer.address)
                strays.append(BridgedIfnet(name=peer.name or peer.address, parent=parent))
                self._forget(bridge_name(parent))  # its view counted that link
        return strays

    async def release_empty(self) -> list[str]:
        """Release every bridge of ours with no eiface on it; the parents released.

        A daemon killed between destroying the last eiface of a bridge and releasing it
        leaves ``vimaged_br_<parent>`` holding only the NIC, forever (and the NIC promiscuous,
        raised, offloads off). Reconciliation calls this after :meth:`remove_strays`; it is
        safe at any time, since a release re-checks under the parent's lock and the kernel's
        hooks decide.
        """
        sock = await self.socket()
        empty = [
            parent
            async for parent, hooks in survey.our_bridges(sock, await sock.listnodes())
            if not any(link.peer.type == abi.NG_EIFACE_NODE_TYPE for link in hooks.links)
        ]
        released = []
        for parent in empty:
            if await self.release(parent):
                released.append(parent)
        return released

    async def reconcile_strays(self) -> list[BridgedIfnet]:
        """:meth:`remove_strays`, then :meth:`release_empty`: ``Platform.reconcile_strays``."""
        strays = await self.remove_strays()
        await self.release_empty()
        return strays

    async def bridges(self) -> list[BridgeInfo]:
        """Every bridge of ours: its parent NIC, wiring (``classic``/``uplink``) and eifaces."""
        return await survey.bridges(await self.socket())

    async def list(self) -> list[BridgedIfnet]:
        """Every eiface of ours, with the parent NIC of the bridge it hangs on
        (:func:`survey.bridged_ifnets`)."""
        return await survey.bridged_ifnets(await self.socket())

    async def link_stats(self, ifname: str) -> codec.LinkStats:
        """The bridge's counters for the link ``ifname``'s eiface is on (getstats)."""
        return await survey.link_stats(await self.socket(), ifname, self._bridge_cookies)

    async def link_counters(self, ifname: str) -> LinkCounters:
        """:meth:`link_stats` as the platform type."""
        return LinkCounters(**msgspec.structs.asdict(await self.link_stats(ifname)))


__all__ = ["BRIDGE_PREFIX", "EIFACE_PREFIX", "NetgraphBridges", "bridge_name", "eiface_name"]
