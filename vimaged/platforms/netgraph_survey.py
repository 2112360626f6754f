"""Platform layer, netgraph bridges: what of the graph is ours, found by name.

The naming scheme (docs/netgraph.md) and the read-only walks over it: everything vimaged
creates carries a name it can find again after a restart, and nodes without it are never
touched. :mod:`vimaged.platforms.netgraph_bridges` changes the graph; this module only names
and looks. Checks raise ``OSError`` (EINVAL, ENAMETOOLONG) like the kernel, never
``ValueError``: the domain checked the names before it called the platform.
"""

from __future__ import annotations

import errno as errno_codes
from typing import TYPE_CHECKING

from vimaged import names
from vimaged.names import IFNAMSIZ
from vimaged.netgraph import abi, codec
from vimaged.netgraph.linkview import LinkView
from vimaged.netgraph.ngsocket import netgraph_error
from vimaged.platforms import BridgedIfnet, BridgeInfo, os_error

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from vimaged.netgraph.ngsocket import NgSocket

BRIDGE_PREFIX = "vimaged_br_"
EIFACE_PREFIX = "vimaged_if_"
EIFACE_HOOKS = 1
"""An ng_eiface has at most one hook, ``ether`` (ng_eiface_newhook, sys/netgraph/ng_eiface.c):
its LISTHOOKS needs no NODEINFO to size the receive buffer."""


def ether_node_name(ifname: str) -> str:
    """The ng_ether node of ``ifname``: ``.`` and ``:`` replaced by ``_`` (``ng_ether.c``)."""
    return ifname.replace(".", "_").replace(":", "_")


def bridge_name(parent: str) -> str:
    return BRIDGE_PREFIX + ether_node_name(parent)


def eiface_name(ifname: str) -> str:
    return EIFACE_PREFIX + ifname


def check_ifname(ifname: str) -> None:
    """A name vimaged gives a new node, usable as a netgraph name as it is
    (:func:`vimaged.names.is_new_ifname`, the one rule).

    The domain checks names before it calls a platform; this is the platform's own guard,
    so it raises ENAMETOOLONG or EINVAL like the kernel (never ValueError).
    """
    if not names.is_new_ifname(ifname):
        raise os_error(
            errno_codes.ENAMETOOLONG if len(ifname) >= IFNAMSIZ else errno_codes.EINVAL, ifname
        )


def check_parent(parent: str) -> None:
    """An existing NIC (:func:`vimaged.names.is_ifname`): ``igb0.100`` is fine, ng_ether names
    its node ``igb0_100`` (``ng_ether_sanitize_ifname``). ENAMETOOLONG or EINVAL otherwise."""
    if not names.is_ifname(parent):
        raise os_error(
            errno_codes.ENAMETOOLONG if len(parent) >= IFNAMSIZ else errno_codes.EINVAL, parent
        )


def check_mac(mac: str) -> None:
    """A unicast ``xx:xx:xx:xx:xx:xx``; EINVAL otherwise (SIOCSIFLLADDR refuses multicast)."""
    try:
        raw = codec.mac_bytes(mac)
    except ValueError:
        raise os_error(errno_codes.EINVAL, mac) from None
    if raw[0] & 1:
        raise os_error(errno_codes.EINVAL, mac)


async def bridges(sock: NgSocket) -> list[BridgeInfo]:
    """Every bridge of ours: its parent NIC, wiring (``classic``/``uplink``) and eifaces."""
    found = [
        BridgeInfo(
            parent=parent,
            mode=LinkView.from_hooks(hooks).wiring.mode,
            ifnets=tuple(
                sorted(
                    link.peer.name.removeprefix(EIFACE_PREFIX)
                    for link in hooks.links
                    if link.peer.type == abi.NG_EIFACE_NODE_TYPE
                    and link.peer.name.startswith(EIFACE_PREFIX)
                )
            ),
        )
        async for parent, hooks in our_bridges(sock, await sock.listnodes())
    ]
    return sorted(found, key=lambda b: b.parent)


async def our_bridges(
    sock: NgSocket, nodes: Sequence[codec.NodeInfo]
) -> AsyncIterator[tuple[str, codec.HookList]]:
    """``(parent NIC, hooks)`` of each bridge of ours among ``nodes`` that still hangs
    on an ng_ether node."""
    for bridge in nodes:
        if bridge.type != abi.NG_BRIDGE_NODE_TYPE or not bridge.name.startswith(BRIDGE_PREFIX):
            continue
        hooks = await sock.listhooks(bridge.address, hooks=bridge.hooks)
        ether = next(
            (link.peer for link in hooks.links if link.peer.type == abi.NG_ETHER_NODE_TYPE),
            None,
        )
        if ether is not None:
            yield await sock.ether_getifname(ether.address), hooks


async def bridged_ifnets(sock: NgSocket) -> list[BridgedIfnet]:
    """Every eiface of ours, with the parent NIC of the bridge it hangs on.

    ``parent`` is ``""`` for an eiface no longer on a bridge of ours; ``jid`` is None.
    One LISTNODES, then a LISTHOOKS and a GETIFNAME per bridge of ours: each bridge's
    hooks name the eifaces on it, so no eiface is asked on its own.
    """
    nodes = await sock.listnodes()
    parent_of_eiface: dict[int, str] = {}
    async for parent, hooks in our_bridges(sock, nodes):
        for link in hooks.links:
            if link.peer.type == abi.NG_EIFACE_NODE_TYPE:
                parent_of_eiface[link.peer.id] = parent
    found = [
        BridgedIfnet(
            name=node.name.removeprefix(EIFACE_PREFIX), parent=parent_of_eiface.get(node.id, "")
        )
        for node in nodes
        if node.type == abi.NG_EIFACE_NODE_TYPE and node.name.startswith(EIFACE_PREFIX)
    ]
    return sorted(found, key=lambda b: b.name)


async def bridge_cookie(sock: NgSocket, bridge: str, cookies: dict[str, int]) -> int:
    """The bridge ABI's cookie: getconfig with the current one, EINVAL means pre-12.2.

    ``cookies`` caches it per bridge name; the caller forgets a bridge it releases."""
    cookie = cookies.get(bridge)
    if cookie is None:
        try:
            await sock.bridge_getconfig(bridge + ":", abi.NGM_BRIDGE_COOKIE)
            cookie = abi.NGM_BRIDGE_COOKIE
        except OSError as exc:
            if exc.errno != errno_codes.EINVAL:
                raise
            await sock.bridge_getconfig(bridge + ":", abi.NGM_BRIDGE_COOKIE_OLD)
            cookie = abi.NGM_BRIDGE_COOKIE_OLD
        cookies[bridge] = cookie
    return cookie


async def link_stats(sock: NgSocket, ifname: str, cookies: dict[str, int]) -> codec.LinkStats:
    """The bridge's counters for the link ``ifname``'s eiface is on (getstats)."""
    check_ifname(ifname)
    hooks = await sock.listhooks(eiface_name(ifname) + ":", hooks=EIFACE_HOOKS)
    if not hooks.links:
        raise netgraph_error(errno_codes.ENOTCONN, eiface_name(ifname) + ":", "getstats")
    link = hooks.links[0]
    bridge = link.peer.name or link.peer.address.rstrip(":")
    cookie = await bridge_cookie(sock, bridge, cookies)
    return await sock.bridge_getstats(link.peer.address, link.peerhook, cookie)


async def claim_name(sock: NgSocket, path: str, node: str) -> None:
    """NGM_NAME ``path`` as ``node``: the name is the claim. EADDRINUSE (ng_base.c
    ng_name_node: the name is taken) becomes EEXIST, another task or process having created
    ``node`` meanwhile."""
    try:
        await sock.name_node(path, node)
    except OSError as exc:
        if exc.errno != errno_codes.EADDRINUSE:
            raise
        raise netgraph_error(errno_codes.EEXIST, node + ":", "name") from None
