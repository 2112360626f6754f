"""Routes of a vnet as route(8) and netstat(1) read them: the routing sysctl NET_RT_DUMP.

``sysctl({CTL_NET, PF_ROUTE, 0, AF, NET_RT_DUMP, 0})`` (sbin/route/route.c, usr.bin/netstat/
route.c) walks the calling process's fib of family AF (sysctl_rtsock → rtable_sysctl_dump,
sys/net/rtsock.c) and writes one RTM_GET message per nexthop (sysctl_dumpentry →
sysctl_dumpnhop): a ``struct rt_msghdr`` whose ``rtm_index`` is the nexthop's interface, then
the sockaddrs ``rtm_addrs`` names in RTAX order (DST, GATEWAY, NETMASK unless RTF_HOST, IFP,
IFA), each padded to SA_SIZE (rtsock_msg_buffer, which also recovers an IPv6 scope into
``sin6_scope_id``). An on-link route's gateway is the interface's ``sockaddr_dl``. Read in the
jail_attach'ed child of freebsd_ifnet (the vnet is the jail's), parsed here without syscalls.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import os
from typing import Final

from vimaged.platforms import freebsd_abi as abi
from vimaged.platforms.jail_inet import (
    PF_ROUTE,
    RTF_GATEWAY,
    RTF_HOST,
    RTM_VERSION,
    RtMsghdr,
    _sa_size,
)

CTL_NET: Final = 4
"""sys/sys/sysctl.h."""
NET_RT_DUMP: Final = 1
"""sys/sys/socket.h: the whole table, one RTM_GET per route."""
RTM_GET: Final = 0x4
RTAX_DST, RTAX_GATEWAY, RTAX_NETMASK, RTAX_MAX = 0, 1, 2, 8
"""sys/net/route.h: the sockaddrs of a routing message, in this order."""
RETRIES: Final = 10
"""route.c retries a dump that grew between sizing and reading (ENOMEM) this often."""

Route = tuple[int, str, str | None]
"""(``rtm_index``, destination CIDR, gateway or ``None`` for an on-link route)."""

_ADDRESS_AT = {abi.AF_INET: (4, 4), abi.AF_INET6: (8, 16)}
"""Offset and width of the address in a sockaddr_in / sockaddr_in6."""


def rt_dump_mib(family: int) -> tuple[int, ...]:
    """The MIB of route.c and netstat's route.c; the sixth name is 0 (the process's fib)."""
    return (CTL_NET, PF_ROUTE, 0, family, NET_RT_DUMP, 0)


def _address(sa: bytes, family: int) -> bytes:
    """The address bytes of a sockaddr of ``family``, zero-filled when ``sa_len`` is short
    (a netmask may come shortened; rtsock_msg_buffer copies ``sa_len`` bytes)."""
    offset, width = _ADDRESS_AT[family]
    raw = sa[offset : offset + width]
    return raw + bytes(width - len(raw))


def _prefixlen(mask: bytes) -> int:
    bits = bin(int.from_bytes(mask, "big"))[2:].rstrip("0") if any(mask) else ""
    if "0" in bits:
        raise ValueError("a non-contiguous netmask")
    return len(bits)


def parse_rt_dump(buf: bytes) -> list[Route]:
    """Every IPv4 and IPv6 route in a NET_RT_DUMP buffer; EIO for a message that overruns it.

    A message of another ``rtm_version`` is skipped by its length, as netstat does."""
    routes: list[Route] = []
    header = ctypes.sizeof(RtMsghdr)
    offset = 0
    while offset < len(buf):
        if len(buf) - offset < header:
            raise OSError(errno.EIO, "a truncated rt_msghdr in NET_RT_DUMP", "route table")
        rtm = RtMsghdr.from_buffer_copy(buf, offset)
        end = offset + rtm.rtm_msglen
        if rtm.rtm_msglen < header or end > len(buf):
            raise OSError(errno.EIO, f"rtm_msglen {rtm.rtm_msglen} overruns", "route table")
        if rtm.rtm_version == RTM_VERSION and rtm.rtm_type == RTM_GET:
            route = _route(rtm, buf[offset + header : end])
            if route is not None:
                routes.append(route)
        offset = end
    return routes


def _route(rtm: RtMsghdr, body: bytes) -> Route | None:
    sockaddrs: dict[int, bytes] = {}
    at = 0
    for rtax in range(RTAX_MAX):
        if rtm.rtm_addrs & (1 << rtax) and at < len(body):
            length = body[at]
            sockaddrs[rtax] = body[at : at + length]
            at += _sa_size(length)
    dst = sockaddrs.get(RTAX_DST, b"")
    if len(dst) < 2 or dst[1] not in _ADDRESS_AT:
        return None  # AF_LINK entries and the like: no IP route
    family = dst[1]
    width = _ADDRESS_AT[family][1]
    mask = sockaddrs.get(RTAX_NETMASK)
    try:
        if rtm.rtm_flags & RTF_HOST or mask is None:
            prefixlen = width * 8
        else:
            prefixlen = _prefixlen(_address(mask, family))
        net = ipaddress.ip_network((_address(dst, family), prefixlen), strict=False)
    except ValueError:
        return None  # a non-contiguous mask: no CIDR names it
    gateway = sockaddrs.get(RTAX_GATEWAY, b"")
    gw = None  # an AF_LINK gateway: on-link through rtm_index
    if rtm.rtm_flags & RTF_GATEWAY and len(gateway) >= 2 and gateway[1] in _ADDRESS_AT:
        gw = str(ipaddress.ip_address(_address(gateway, gateway[1])))  # RFC 5549: any family
    return rtm.rtm_index, str(net), gw


def sysctl_rt_dump(family: int) -> bytes:
    """The NET_RT_DUMP buffer of ``family`` in the calling process's vnet: size, then read,
    again while the table grows in between (ENOMEM), as route.c does."""
    from vimaged.platforms import _libc  # loaded before the attach by the child

    lib = _libc.libc()
    mib = (ctypes.c_int * 6)(*rt_dump_mib(family))
    for _ in range(RETRIES):
        needed = ctypes.c_size_t(0)
        lib.sysctl(mib, 6, None, ctypes.byref(needed), None, 0)
        size = needed.value + needed.value // 8 + 1024
        buf = ctypes.create_string_buffer(size)
        got = ctypes.c_size_t(size)
        try:
            lib.sysctl(mib, 6, buf, ctypes.byref(got), None, 0)
        except OSError as exc:
            if exc.errno == errno.ENOMEM:
                continue
            raise
        return buf.raw[: got.value]
    raise OSError(errno.ENOMEM, os.strerror(errno.ENOMEM), "route table")


def routes_here(ifindex: int) -> list[tuple[str, str | None]]:
    """The IPv4 then IPv6 routes through interface ``ifindex`` in the calling process's vnet;
    a family the kernel lacks (EAFNOSUPPORT, ENOENT) has none."""
    found: list[tuple[str, str | None]] = []
    for family in (abi.AF_INET, abi.AF_INET6):
        try:
            buf = sysctl_rt_dump(family)
        except OSError as exc:
            if exc.errno in (errno.EAFNOSUPPORT, errno.ENOENT):
                continue
            raise
        found += [(dst, gw) for index, dst, gw in parse_rt_dump(buf) if index == ifindex]
    return found
