"""Platform layer, ``linux``: links (listing, moving, renaming) and the bridged ones vimaged makes.

A bridged interface is a macvlan in bridge mode on its parent, or a veth pair enslaved to it
when the parent is a Linux bridge (a macvlan would not reach the bridge's own address). Each
is recognised by its ``ifalias`` (:data:`BRIDGED_ALIAS` + parent), which survives namespace
moves, and by :data:`BRIDGED_GROUP`, set by the creating message itself so a half-made one is
still recognisably ours. Pure functions over an rtnetlink socket; the namespaces (vimages) they
live in are :mod:`vimaged.platforms.linux`'s. See docs/linux.md.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
from typing import TYPE_CHECKING, TypeVar

from vimaged.errors import PlatformError
from vimaged.names import IFNAMSIZ
from vimaged.platforms import HOST_JID, BridgedIfnet, IfnetInfo
from vimaged.platforms import linux_kernel as kernel
from vimaged.platforms import linux_netlink as nl

if TYPE_CHECKING:
    from collections.abc import Callable

BRIDGED_ALIAS = "vimaged:bridged:"
"""``ifalias`` of a bridged interface, followed by its parent's name; survives netns moves."""
PEER_ALIAS = "vimaged:peer:"
"""``ifalias`` of the host end of a bridged veth pair, followed by the bridged interface."""
BRIDGED_GROUP = 0x76696D67
"""Device group (``ip link ... group``; "vimg") of both ends of every bridged interface, set
by the one RTM_NEWLINK that creates them: a daemon killed before the alias is set leaves a
link that is still recognisably its own, and reconciliation removes it."""
BRIDGED_NAME = re.compile(r"ng\d+_(?P<vimage>.+)")
MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
ARPHRD_LOOPBACK = 772
T = TypeVar("T")


def einval(what: str, subject: str) -> OSError:
    return OSError(errno.EINVAL, f"{os.strerror(errno.EINVAL)}: {what}", subject)


def enoent(subject: str) -> OSError:
    return OSError(errno.ENOENT, os.strerror(errno.ENOENT), subject)


def check_ifname(name: str) -> None:
    # The kernel's own rule, wider than names.is_ifname: CNI runtimes pick sandbox names.
    if not name or len(name.encode()) >= IFNAMSIZ or "/" in name or name.strip() != name:
        raise einval("interface names have 1 to 15 bytes, no '/' or whitespace", name)


def peer_name(ifname: str) -> str:
    """The host end of a bridged veth: derived from ``ifname`` so it is found without state."""
    return "vp" + hashlib.blake2s(ifname.encode()).hexdigest()[:12]


def enodev_is_enoent(call: Callable[[], T], ifname: str) -> T:
    try:
        return call()
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            raise enoent(ifname) from None
        raise


def new_bridged_link(host: nl.Rtnl, parent: str, ifname: str, mac: str) -> nl.Link:
    """The first step of :func:`create_bridged`: one RTM_NEWLINK creating the
    macvlan (or veth pair) with its final names and :data:`BRIDGED_GROUP`; ``parent``'s
    link is returned."""
    check_ifname(parent)
    check_ifname(ifname)
    if not MAC.fullmatch(mac):
        raise einval("a MAC address is xx:xx:xx:xx:xx:xx", mac)
    upper = enodev_is_enoent(lambda: host.get_link(parent), parent)
    group = nl.attr(nl.IFLA_GROUP, nl.u32(BRIDGED_GROUP))
    common = nl.attr(nl.IFLA_IFNAME, nl.cstr(ifname)) + group
    common += nl.attr(nl.IFLA_ADDRESS, bytes.fromhex(mac.replace(":", "")))
    if upper.kind != "bridge":
        mode = nl.nested(nl.IFLA_INFO_DATA, nl.attr(nl.IFLA_MACVLAN_MODE, nl.u32(4)))
        linkinfo = nl.nested(nl.IFLA_LINKINFO, nl.attr(nl.IFLA_INFO_KIND, b"macvlan"), mode)
        common += nl.attr(nl.IFLA_LINK, nl.u32(upper.index))
    else:
        # A macvlan on a bridge would not reach the bridge's own address: a veth pair does.
        peer_info = nl.ifinfo() + nl.attr(nl.IFLA_IFNAME, nl.cstr(peer_name(ifname)))
        peer_info += group
        data = nl.nested(nl.IFLA_INFO_DATA, nl.attr(nl.VETH_INFO_PEER, peer_info))
        linkinfo = nl.nested(nl.IFLA_LINKINFO, nl.attr(nl.IFLA_INFO_KIND, b"veth"), data)
    host.new_link(nl.ifinfo() + common + linkinfo, ifname)
    return upper


def create_bridged(host: nl.Rtnl, parent: str, ifname: str, mac: str) -> None:
    """A macvlan (mode bridge) on ``parent``, or a veth pair enslaved to it when it is a
    Linux bridge, with :data:`BRIDGED_GROUP`, alias and ``mac``, up. EEXIST if it exists."""
    upper = new_bridged_link(host, parent, ifname, mac)
    peer = peer_name(ifname)
    try:
        # The kernel ignores IFLA_IFALIAS in RTM_NEWLINK, hence a second message; it also
        # brings the link up, as ng_eiface's are on FreeBSD (kept up across the move).
        alias = nl.attr(nl.IFLA_IFALIAS, nl.cstr(BRIDGED_ALIAS + parent))
        host.set_link(
            nl.ifinfo(0, nl.IFF_UP, nl.IFF_UP) + nl.attr(nl.IFLA_IFNAME, nl.cstr(ifname)) + alias,
            ifname,
        )
        if upper.kind == "bridge":
            enslave = nl.ifinfo(0, nl.IFF_UP, nl.IFF_UP)
            enslave += nl.attr(nl.IFLA_IFNAME, nl.cstr(peer))
            enslave += nl.attr(nl.IFLA_MASTER, nl.u32(upper.index))
            enslave += nl.attr(nl.IFLA_IFALIAS, nl.cstr(PEER_ALIAS + ifname))
            host.set_link(enslave, peer)
    except BaseException:
        host.del_link(host.get_link(ifname).index, ifname)
        raise


def remove_strays(host: nl.Rtnl) -> list[BridgedIfnet]:
    """Host links in :data:`BRIDGED_GROUP` named ``ng<i>_NAME`` that never got their
    alias: a daemon was killed between creating them and naming them. Removing the
    ``ng`` end of a veth pair removes its peer too. For reconciliation, while no create
    is in flight (one is a stray between its two steps)."""
    links = host.dump_links()
    names = {link.index: link.name for link in links}
    strays: list[BridgedIfnet] = []
    for link in links:
        if (
            link.group != BRIDGED_GROUP
            or link.kind not in ("veth", "macvlan")
            or BRIDGED_NAME.fullmatch(link.name) is None
            or (link.alias or "").startswith(BRIDGED_ALIAS)
        ):
            continue
        parent = names.get(link.link or 0, "") if link.kind == "macvlan" else ""
        try:
            host.del_link(link.index, link.name)
        except OSError as exc:
            if exc.errno != errno.ENODEV:  # gone meanwhile (its veth peer went first)
                raise
            continue
        strays.append(BridgedIfnet(name=link.name, parent=parent, jid=HOST_JID))
    return strays


def bridged_ifnets(places: list[tuple[int, nl.Rtnl]]) -> list[BridgedIfnet]:
    """The links of ours (by alias) in each ``(jid, rtnetlink socket)`` of ``places``."""
    return [
        BridgedIfnet(name=link.name, parent=link.alias.removeprefix(BRIDGED_ALIAS), jid=jid)
        for jid, rtnl in places
        for link in rtnl.dump_links()
        if link.alias is not None and link.alias.startswith(BRIDGED_ALIAS)
    ]


def try_veth_and_macvlan() -> None:
    """Create a veth and a macvlan on it (preflight, in a throwaway namespace)."""
    rtnl = nl.Rtnl()
    try:
        veth = nl.nested(nl.IFLA_LINKINFO, nl.attr(nl.IFLA_INFO_KIND, b"veth"))
        rtnl.new_link(nl.ifinfo() + nl.attr(nl.IFLA_IFNAME, b"pf0\0") + veth, "veth")
        parent = rtnl.get_link("pf0").index
        macvlan = nl.nested(nl.IFLA_LINKINFO, nl.attr(nl.IFLA_INFO_KIND, b"macvlan"))
        body = nl.ifinfo() + nl.attr(nl.IFLA_LINK, nl.u32(parent)) + macvlan
        rtnl.new_link(body, "macvlan")
    finally:
        rtnl.close()  # the throwaway namespace dies with its last socket and thread


def mac_text(link: nl.Link) -> str | None:
    if link.type == ARPHRD_LOOPBACK or link.address is None or len(link.address) != 6:
        return None
    return link.address.hex(":")


def ifnets(rtnl: nl.Rtnl) -> list[IfnetInfo]:
    """Every link ``rtnl``'s namespace holds, with its MAC and addresses."""
    links = rtnl.dump_links()
    addresses: dict[int, list[str]] = {}
    for address in rtnl.dump_addresses():
        addresses.setdefault(address.index, []).append(address.text())
    return [
        IfnetInfo(
            name=link.name,
            mac=mac_text(link),
            up=bool(link.flags & nl.IFF_UP),
            addresses=tuple(addresses.get(link.index, ())),
        )
        for link in links
    ]


def move(source: nl.Rtnl, ifname: str, target_fd: int, target: nl.Rtnl) -> None:
    """Move ``ifname`` between namespaces, keeping it up if it was (the Platform contract;
    the freebsd platform raises it again after if_vmove took it down)."""
    link = enodev_is_enoent(lambda: source.get_link(ifname), ifname)
    body = nl.ifinfo(link.index) + nl.attr(nl.IFLA_NET_NS_FD, nl.u32(target_fd))
    source.set_link(body, ifname)
    if link.flags & nl.IFF_UP:
        # Linux closes an interface that changes namespace, as FreeBSD's if_vmove does.
        up = nl.ifinfo(0, nl.IFF_UP, nl.IFF_UP) + nl.attr(nl.IFLA_IFNAME, nl.cstr(ifname))
        target.set_link(up, ifname)


def rename(host: nl.Rtnl, ifname: str, newname: str) -> None:
    """``ip link set IF name NEW`` in ``host``'s namespace."""
    check_ifname(ifname)
    check_ifname(newname)
    link = enodev_is_enoent(lambda: host.get_link(ifname), ifname)
    body = nl.ifinfo(link.index) + nl.attr(nl.IFLA_IFNAME, nl.cstr(newname))
    host.set_link(body, newname)


def set_up(host: nl.Rtnl, ifname: str) -> None:
    """``ip link set IF up`` in ``host``'s namespace."""
    check_ifname(ifname)
    body = nl.ifinfo(0, nl.IFF_UP, nl.IFF_UP) + nl.attr(nl.IFLA_IFNAME, nl.cstr(ifname))
    enodev_is_enoent(lambda: host.set_link(body, ifname), ifname)


def preflight() -> None:
    """Root, network namespaces, nsenter and chroot, veth and macvlan links: or a
    ``PlatformError`` saying what to do (LinuxPlatform.preflight)."""
    if os.geteuid() != 0:
        raise PlatformError("the linux platform needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN)")
    if not os.path.exists("/proc/self/ns/net"):
        raise PlatformError("this kernel has no network namespaces (CONFIG_NET_NS)")
    for tool in ("nsenter", "chroot"):
        if shutil.which(tool) is None:
            raise PlatformError(f"{tool} not found: install util-linux and coreutils")

    try:
        kernel.in_new_netns("preflight", try_veth_and_macvlan)
    except OSError as exc:
        raise PlatformError(
            f"cannot create veth/macvlan links ({exc.strerror}): load the veth and"
            " macvlan kernel modules (modprobe veth macvlan)"
        ) from exc
