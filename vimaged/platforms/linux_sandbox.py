"""Linux half of CNI attachments: a bridged interface moved into a namespace vimaged does not own.

A sandbox is named by the path CNI_NETNS gives (``/var/run/netns/cni-...``, ``/proc/PID/ns/net``),
a path that an unprivileged caller chose: it is ``stat``-ed and must be on nsfs before it is
opened (no FIFO, no device is ever opened), then ``fstat``-ed again, and the namespace must be
neither the daemon's own nor one of its vimages'. Everything after that goes through the fd.
The move and the rename to ``CNI_IFNAME`` are one ``RTM_SETLINK`` (``ip link set X netns N
name Y``); addresses and routes are ``RTM_NEWADDR``/``RTM_NEWROUTE`` over a socket made inside
the sandbox, and read back for CHECK by ``RTM_GETADDR``/``RTM_GETROUTE`` dumps there.
Blocking calls: the platform runs them in a worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import struct
from typing import TYPE_CHECKING

from vimaged.platforms import IfnetInfo
from vimaged.platforms import linux_kernel as kernel
from vimaged.platforms import linux_links as links
from vimaged.platforms import linux_netlink as nl

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator, Sequence

    from vimaged.platforms import SandboxIfnet

RTM_NEWROUTE = 24
RTM_GETROUTE = 26
RTMSG = struct.Struct("=BBBBBBBBI")
"""``struct rtmsg { u8 family, dst_len, src_len, tos, table, protocol, scope, type;
u32 flags; }``"""
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_TABLE = 15
"""u32 table id; ``rtm_table`` says RT_TABLE_COMPAT (252) for one above 255."""
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTN_UNICAST = 1
IFLA_MTU = 4


def _einval(what: str, subject: str) -> OSError:
    return OSError(errno.EINVAL, f"{os.strerror(errno.EINVAL)}: {what}", subject)


@contextlib.contextmanager
def open_sandbox(path: str, nsfs_dev: int, refused: Collection[int]) -> Iterator[int]:
    """An fd on the network namespace at ``path``; ENOENT if it is gone, EINVAL if it is no
    namespace or one of ``refused`` (inodes: the host's, the vimages')."""
    if not path.startswith("/") or "\0" in path:
        raise _einval("a sandbox is the absolute path of a network namespace", path)
    st = os.stat(path)  # follows /proc/PID/ns/net; never opens what is not nsfs
    if st.st_dev != nsfs_dev:
        raise _einval("not a network namespace", path)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
            raise _einval("the namespace changed while it was opened", path)
        if opened.st_ino in refused:
            raise _einval("the sandbox is a namespace of vimaged, not a container's", path)
        yield fd
    finally:
        os.close(fd)


def _addr_body(index: int, cidr: str) -> bytes:
    iface = ipaddress.ip_interface(cidr)
    family = socket.AF_INET if iface.version == 4 else socket.AF_INET6
    packed = iface.ip.packed
    body = nl.IFADDRMSG.pack(family, iface.network.prefixlen, 0, RT_SCOPE_UNIVERSE, index)
    body += nl.attr(nl.IFA_LOCAL, packed) + nl.attr(nl.IFA_ADDRESS, packed)
    if iface.version == 4:
        body += nl.attr(4, iface.network.broadcast_address.packed)  # IFA_BROADCAST
    return body


def _route_body(index: int, dst: str, gw: str | None) -> bytes:
    net = ipaddress.ip_network(dst, strict=False)
    family = socket.AF_INET if net.version == 4 else socket.AF_INET6
    scope = RT_SCOPE_UNIVERSE if gw else RT_SCOPE_LINK
    body = RTMSG.pack(
        family, net.prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, scope, RTN_UNICAST, 0
    )
    if net.prefixlen:
        body += nl.attr(RTA_DST, net.network_address.packed)
    if gw:
        gateway = ipaddress.ip_address(gw)
        if gateway.version != net.version:
            raise _einval("a route's gateway is of another address family", f"{dst} via {gw}")
        body += nl.attr(RTA_GATEWAY, gateway.packed)
    return body + nl.attr(RTA_OIF, nl.u32(index))


def _configure(
    fd: int,
    path: str,
    newname: str,
    *,
    alias: str | None,
    addresses: Sequence[str],
    routes: Sequence[tuple[str, str | None]],
) -> None:
    """Inside the sandbox: mark (``alias``), up, addresses, routes; on failure delete it."""

    def configure() -> None:
        rtnl = nl.Rtnl()
        try:
            inside = rtnl.get_link(newname)
            try:
                body = nl.ifinfo(inside.index, nl.IFF_UP, nl.IFF_UP)
                if alias is not None:
                    body += nl.attr(nl.IFLA_IFALIAS, nl.cstr(alias))
                rtnl.set_link(body, newname)
                create = nl.NLM_F_CREATE | nl.NLM_F_EXCL
                for cidr in addresses:
                    rtnl.request(nl.RTM_NEWADDR, create, _addr_body(inside.index, cidr), cidr)
                for dst, gw in routes:
                    rtnl.request(RTM_NEWROUTE, create, _route_body(inside.index, dst, gw), dst)
            except BaseException:
                rtnl.del_link(inside.index, newname)
                raise
        finally:
            rtnl.close()

    kernel.in_netns(fd, path, configure)


def _check_addresses(addresses: Sequence[str], routes: Sequence[tuple[str, str | None]]) -> None:
    for cidr in addresses:
        ipaddress.ip_interface(cidr)  # ValueError before anything is made
    for dst, gw in routes:
        _route_body(0, dst, gw)


def create(
    host: nl.Rtnl,
    fd: int,
    path: str,
    parent_index: int,
    newname: str,
    mac: str,
    alias: str,
    *,
    mtu: int | None,
    addresses: Sequence[str],
    routes: Sequence[tuple[str, str | None]],
) -> None:
    """A macvlan (mode bridge) on host link ``parent_index``, made right inside the sandbox
    (``ip link add link P name N netns S type macvlan``): no move, so no synchronize_net."""
    _check_addresses(addresses, routes)
    mode = nl.nested(nl.IFLA_INFO_DATA, nl.attr(nl.IFLA_MACVLAN_MODE, nl.u32(4)))
    body = nl.ifinfo() + nl.attr(nl.IFLA_IFNAME, nl.cstr(newname))
    body += nl.attr(nl.IFLA_ADDRESS, bytes.fromhex(mac.replace(":", "")))
    body += nl.attr(nl.IFLA_LINK, nl.u32(parent_index))
    body += nl.attr(nl.IFLA_NET_NS_FD, nl.u32(fd))
    if mtu is not None:
        body += nl.attr(IFLA_MTU, nl.u32(mtu))
    body += nl.nested(nl.IFLA_LINKINFO, nl.attr(nl.IFLA_INFO_KIND, b"macvlan"), mode)
    host.new_link(body, newname)  # EEXIST if the sandbox has one of that name
    _configure(fd, path, newname, alias=alias, addresses=addresses, routes=routes)


def attach(
    host: nl.Rtnl,
    fd: int,
    path: str,
    ifname: str,
    newname: str,
    *,
    owned: Callable[[nl.Link], bool],
    mtu: int | None,
    addresses: Sequence[str],
    routes: Sequence[tuple[str, str | None]],
) -> None:
    """Move host link ``ifname`` into the sandbox as ``newname``, up, with addresses and routes
    (the veth of a Linux-bridge parent). On failure the caller destroys what stays on the host."""
    _check_addresses(addresses, routes)
    link = host.get_link(ifname)
    if not owned(link):
        raise OSError(errno.ENOENT, "no bridged interface of vimaged", ifname)
    body = nl.ifinfo(link.index) + nl.attr(nl.IFLA_NET_NS_FD, nl.u32(fd))
    body += nl.attr(nl.IFLA_IFNAME, nl.cstr(newname))
    if mtu is not None:
        body += nl.attr(IFLA_MTU, nl.u32(mtu))
    host.set_link(body, newname)
    _configure(fd, path, newname, alias=None, addresses=addresses, routes=routes)


RTA_MULTIPATH = 9
RTNEXTHOP = struct.Struct("=HBBi")
"""``struct rtnexthop { u16 rtnh_len; u8 rtnh_flags, rtnh_hops; int rtnh_ifindex; }``, then
that nexthop's rtattrs (RTA_GATEWAY), padded to 4 (RTNH_ALIGN)."""


def parse_route(payload: bytes) -> list[tuple[int, str, str | None]]:
    """One RTM_NEWROUTE of a dump: (output interface, destination CIDR, gateway or None) per
    nexthop (RTA_OIF and RTA_GATEWAY, or each of RTA_MULTIPATH's), or [] for what is no
    unicast route of the main table (rtnetlink(7))."""
    family, dst_len, _src, _tos, table, _proto, _scope, kind, _flags = RTMSG.unpack_from(payload)
    if family not in (socket.AF_INET, socket.AF_INET6) or kind != RTN_UNICAST:
        return []
    found = dict(nl.parse_attrs(payload[RTMSG.size :]))
    if RTA_TABLE in found:
        table = struct.unpack("=I", found[RTA_TABLE])[0]
    if table != RT_TABLE_MAIN:
        return []
    width = 4 if family == socket.AF_INET else 16
    raw_dst = found.get(RTA_DST, bytes(width))  # no RTA_DST: the default route
    dst = f"{socket.inet_ntop(family, raw_dst)}/{dst_len}"

    def gateway(raw: bytes | None) -> str | None:
        return None if raw is None or len(raw) != width else socket.inet_ntop(family, raw)

    if RTA_OIF in found:
        return [(struct.unpack("=I", found[RTA_OIF])[0], dst, gateway(found.get(RTA_GATEWAY)))]
    hops, data, offset = [], found.get(RTA_MULTIPATH, b""), 0
    while offset + RTNEXTHOP.size <= len(data):
        length, _flags, _hops, index = RTNEXTHOP.unpack_from(data, offset)
        if length < RTNEXTHOP.size:
            break
        attrs = dict(nl.parse_attrs(data[offset + RTNEXTHOP.size : offset + length]))
        hops.append((index, dst, gateway(attrs.get(RTA_GATEWAY))))
        offset += (length + 3) & ~3
    return hops


def dump_routes(rtnl: nl.Rtnl, index: int) -> list[tuple[str, str | None]]:
    """The main table's IPv4 and IPv6 routes through link ``index`` (``ip route show dev X``
    and ``ip -6 route show dev X``): one RTM_GETROUTE dump (NLM_F_DUMP) per family,
    rtnetlink(7), filtered here on RTA_OIF (a kernel without strict checking ignores a filter)."""
    routes: list[tuple[str, str | None]] = []
    for family in (socket.AF_INET, socket.AF_INET6):
        body = RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
        for payload in rtnl.request(RTM_GETROUTE, nl.NLM_F_DUMP, body, "routes"):
            routes += [(dst, gw) for oif, dst, gw in parse_route(payload) if oif == index]
    return routes


def _link_or_none(rtnl: nl.Rtnl, ifname: str) -> nl.Link | None:
    """``ifname`` in this thread's namespace; None if there is none (ENODEV)."""
    try:
        return rtnl.get_link(ifname)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return None
        raise


Found = tuple[nl.Link, list[str], list[tuple[str, str | None]]]


def _find(fd: int, path: str, ifname: str) -> Found | None:
    def look() -> Found | None:
        rtnl = nl.Rtnl()
        try:
            link = _link_or_none(rtnl, ifname)
            if link is None:
                return None
            found = [a.text() for a in rtnl.dump_addresses() if a.index == link.index]
            return link, found, dump_routes(rtnl, link.index)
        finally:
            rtnl.close()

    return kernel.in_netns(fd, path, look)


def inspect(fd: int, path: str, ifname: str, owned: Callable[[nl.Link], bool]) -> IfnetInfo | None:
    """``ifname`` in the sandbox if it is an interface of vimaged's, else None."""
    found = _find(fd, path, ifname)
    if found is None or not owned(found[0]):
        return None
    link, addresses, routes = found
    mac = link.address.hex(":") if link.address and len(link.address) == 6 else None
    return IfnetInfo(
        name=link.name, mac=mac, up=bool(link.flags & nl.IFF_UP), addresses=tuple(addresses),
        routes=tuple(routes),
    )  # fmt: skip


def detach(fd: int, path: str, ifname: str, mac: str, owned: Callable[[nl.Link], bool]) -> None:
    """Delete ``ifname`` from the sandbox if it is ours and has ``mac``; ENOENT otherwise."""

    def remove() -> None:
        rtnl = nl.Rtnl()
        try:
            link = _link_or_none(rtnl, ifname)
            if link is None:
                raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), ifname)
            theirs = link.address is None or link.address.hex(":") != mac.lower()
            if not owned(link) or theirs:
                raise OSError(errno.ENOENT, "no interface of vimaged with that MAC", ifname)
            rtnl.del_link(link.index, ifname)
        finally:
            rtnl.close()

    kernel.in_netns(fd, path, remove)


# -- the platform's CNI methods, run in a worker thread by LinuxPlatform


def _ours(link: nl.Link) -> bool:
    return (link.alias or "").startswith(links.BRIDGED_ALIAS)


def create_in(host: nl.Rtnl, nsfs_dev: int, refused: set[int], want: SandboxIfnet) -> None:
    parent, ifname, mac, sandbox, newname = (
        want.parent, want.ifname, want.mac, want.sandbox, want.newname,
    )  # fmt: skip
    for name in (parent, ifname, newname):
        links.check_ifname(name)
    if not links.MAC.fullmatch(mac):
        raise links.einval("a MAC address is xx:xx:xx:xx:xx:xx", mac)
    upper = links.enodev_is_enoent(lambda: host.get_link(parent), parent)
    with open_sandbox(sandbox, nsfs_dev, refused) as fd:
        try:
            if upper.kind == "bridge":  # a veth pair, made on the host, then moved
                links.create_bridged(host, parent, ifname, mac)
                attach(host, fd, sandbox, ifname, newname,
                                     owned=_ours, mtu=want.mtu, addresses=want.addresses,
                                     routes=want.routes)  # fmt: skip
            else:
                create(host, fd, sandbox, upper.index, newname, mac,
                                     links.BRIDGED_ALIAS + parent, mtu=want.mtu,
                                     addresses=want.addresses, routes=want.routes)  # fmt: skip
        except ValueError as exc:
            raise links.einval(str(exc), sandbox) from None


def sandbox_ifnet(nsfs_dev: int, refused: set[int], sandbox: str, ifname: str) -> IfnetInfo | None:
    links.check_ifname(ifname)
    with open_sandbox(sandbox, nsfs_dev, refused) as fd:
        return inspect(fd, sandbox, ifname, _ours)


def detach_from(nsfs_dev: int, refused: set[int], sandbox: str, ifname: str, mac: str) -> None:
    links.check_ifname(ifname)
    with open_sandbox(sandbox, nsfs_dev, refused) as fd:
        detach(fd, sandbox, ifname, mac, _ours)
