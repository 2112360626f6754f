"""Simulated host layer: the bytes of sysctl NET_RT_DUMP, laid out with this module's own struct
formats (from sys/net/route.h, sys/net/if_dl.h, sys/netinet/in.h, sys/netinet6/in6.h; amd64),
never vimaged.platforms' ctypes: the reader there is held to what this writes.

sysctl_rtsock → rtable_sysctl_dump → sysctl_dumpentry → sysctl_dumpnhop (sys/net/rtsock.c): one
RTM_GET message per nexthop, ``rtm_index`` its interface, ``rtm_flags`` its flags and RTF_UP,
then the sockaddrs in RTAX order, DST, GATEWAY, NETMASK (left out for RTF_HOST), IFP (the
interface's link-level address), IFA (its address of the family), each padded to SA_SIZE
(rtsock_msg_buffer), the message to ALIGN. A connected prefix's nexthop (ifa_maintain_
prefix_route / nhop_set_gw, sys/net/route/nhop_ctl.c) has the interface's ``sockaddr_dl_short``
as gateway. rib_walk visits the radix tree in key order: destinations sorted, shorter first.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from vimaged.simhost.ifnet import Ifnet

AF_INET, AF_INET6, AF_LINK = 2, 28, 18
"""sys/sys/socket.h (FreeBSD's numbers, whatever the simulating OS's are)."""
IFT_ETHER = 0x6
RTM_VERSION, RTM_GET = 5, 0x4
RTF_UP, RTF_GATEWAY, RTF_HOST, RTF_STATIC = 0x1, 0x2, 0x4, 0x800
RTA_DST, RTA_GATEWAY, RTA_NETMASK, RTA_IFP, RTA_IFA = 0x1, 0x2, 0x4, 0x10, 0x20
LONG = 8
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

RT_MSGHDR = struct.Struct("<HBBHHiiiiiiQ14Q")
"""``struct rt_msghdr``: msglen, version, type, index, spare1, flags, addrs, pid, seq, errno,
fmask, inits, then ``struct rt_metrics`` (14 u_long); 152 bytes."""
SOCKADDR_IN = struct.Struct("<BBH4s8x")
SOCKADDR_IN6 = struct.Struct("<BBHI16sI")
SOCKADDR_DL = struct.Struct("<BBHBBBB46s")
"""``struct sockaddr_dl``, 54 bytes: len, family, index, type, nlen, alen, slen, data."""
SOCKADDR_DL_SHORT = struct.Struct("<BBHBBBB8s")
"""``struct sockaddr_dl_short`` (sys/net/if_dl.h), 16 bytes: a nexthop's link gateway."""


def _sa_size(raw: bytes) -> bytes:
    """SA_SIZE: padded to a long; an empty sockaddr still takes one."""
    size = LONG if not raw else 1 + ((len(raw) - 1) | (LONG - 1))
    return raw + bytes(size - len(raw))


def _inet(family: int, address: Address) -> bytes:
    if family == AF_INET:
        return SOCKADDR_IN.pack(SOCKADDR_IN.size, AF_INET, 0, address.packed)
    return SOCKADDR_IN6.pack(SOCKADDR_IN6.size, AF_INET6, 0, 0, address.packed, 0)


def _ifp(ifnet: Ifnet) -> bytes:
    """if_addr's sockaddr_dl: name then MAC (if_attach_internal sizes it at least 54)."""
    name, mac = ifnet.name.encode(), ifnet.mac or b""
    return SOCKADDR_DL.pack(SOCKADDR_DL.size, AF_LINK, ifnet.index, IFT_ETHER, len(name),
                            len(mac), 0, name + mac)  # fmt: skip


def _message(
    family: int,
    net: Network,
    gateway: Address | None,
    ifnet: Ifnet,
    flags: int,
) -> bytes:
    addrs = RTA_DST | RTA_GATEWAY | RTA_IFP
    body = _sa_size(_inet(family, net.network_address))
    if gateway is None:
        body += _sa_size(SOCKADDR_DL_SHORT.pack(SOCKADDR_DL_SHORT.size, AF_LINK, ifnet.index,
                                                IFT_ETHER, 0, 0, 0, b""))  # fmt: skip
    else:
        flags |= RTF_GATEWAY
        body += _sa_size(_inet(AF_INET if gateway.version == 4 else AF_INET6, gateway))
    if net.prefixlen == net.max_prefixlen:
        flags |= RTF_HOST
    else:
        addrs |= RTA_NETMASK
        body += _sa_size(_inet(family, net.netmask))
    body += _sa_size(_ifp(ifnet))
    own = [ipaddress.ip_interface(a) for a in ifnet.addresses]
    ifa = next((a.ip for a in own if a.version == net.version), None)
    if ifa is not None:
        addrs |= RTA_IFA
        body += _sa_size(_inet(family, ifa))
    length = RT_MSGHDR.size + len(body)
    length += -length % LONG  # ALIGN
    header = RT_MSGHDR.pack(length, RTM_VERSION, RTM_GET, ifnet.index, 0, flags | RTF_UP,
                            addrs, 0, 0, 0, 0, 0, *([0] * 14))  # fmt: skip
    return (header + body).ljust(length, b"\0")


def dump(
    family: int,
    connected: Sequence[tuple[str, Ifnet]],
    static: Sequence[tuple[str, str | None, Ifnet]],
) -> bytes:
    """The NET_RT_DUMP buffer of ``family``: the ``connected`` prefixes (on-link through their
    interface) and the ``static`` routes, each (destination, gateway, interface)."""
    version = 4 if family == AF_INET else 6
    entries: list[tuple[Network, Address | None, Ifnet, int]]
    entries = []
    for dst, ifnet in connected:
        entries.append((ipaddress.ip_network(dst, strict=False), None, ifnet, 0))
    for dst, gw, ifnet in static:
        gateway = None if gw is None else ipaddress.ip_address(gw)
        entries.append((ipaddress.ip_network(dst), gateway, ifnet, RTF_STATIC))
    mine = [e for e in entries if e[0].version == version]
    mine.sort(key=lambda e: (int(e[0].network_address), e[0].prefixlen))
    return b"".join(_message(family, net, gw, ifnet, flags) for net, gw, ifnet, flags in mine)
