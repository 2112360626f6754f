"""Addresses, routes and MTU of an interface inside a VNET jail (vimaged-cni on FreeBSD).

Applied by ioctls and a routing-socket message from a short-lived child of vimaged's own
Python that ``jail_attach(2)``-es first, as the address reader in freebsd.py does, so nothing
from the jail's root is ever run or loaded: ``ifconfig -j`` and ``route -j`` would attach and
then resolve their arguments through the jail's nsswitch.conf (NSS modules dlopen()ed from its
root), and they exist only in recent releases. Everything is computed here, before the attach:

- MTU: SIOCSIFMTU (``ifhwioctl``, sys/net/if.c: EINVAL outside IF_MINMTU..IF_MAXMTU; then
  ng_eiface_ioctl, sys/netgraph/ng_eiface.c: EINVAL outside NG_EIFACE_MTU_MIN..MAX).
- IPv4: SIOCAIFADDR with ``struct in_aliasreq`` (sys/netinet/in_var.h; in_aifaddr_ioctl in
  sys/netinet/in.c), on an AF_INET socket: in_control is that protocol's ioctl handler.
- IPv6: SIOCAIFADDR_IN6 with ``struct in6_aliasreq`` (sys/netinet6/in6_var.h; in6_control /
  in6_update_ifa in sys/netinet6/in6.c), infinite lifetimes, on an AF_INET6 socket.
- Routes: RTM_ADD on a PF_ROUTE socket (sys/net/route.h; route_output in sys/net/rtsock.c),
  as ``route add`` builds it (sbin/route/route.c): RTA_DST, RTA_GATEWAY (the gateway, or the
  interface's sockaddr_dl for an on-link route), RTA_NETMASK unless a host route. A write that
  fails returns the kernel's errno (ENETUNREACH for a gateway on no connected prefix).

The steps run in :func:`plan` order and stop at the first error; the caller then destroys the
interface, which takes its addresses and routes with it (if_detach_internal → if_purgeaddrs,
rt_flushifroutes in sys/net/if.c). Layouts are amd64 (LP64), as freebsd_abi's.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import socket
from typing import TYPE_CHECKING, Final

import msgspec

from vimaged.platforms import freebsd_abi as abi

if TYPE_CHECKING:
    from collections.abc import Sequence

IF_MINMTU: Final = 72
IF_MAXMTU: Final = 65535
"""sys/net/if.c: ifhwioctl refuses SIOCSIFMTU outside these with EINVAL."""
NG_EIFACE_MTU_MIN: Final = 72
NG_EIFACE_MTU_MAX: Final = 9018
"""sys/netgraph/ng_eiface.h: ETHER_MAX_LEN_JUMBO (sys/net/ethernet.h) is the largest."""
ND6_INFINITE_LIFETIME: Final = 0xFFFFFFFF
"""sys/netinet6/nd6.h: ``ia6t_vltime``/``ia6t_pltime`` that never expire."""


class InetPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What one child applies to ``ifname`` in a jail, in this order."""

    ifname: str
    mac: str | None = None
    """The MAC ``ifname`` must have in the jail before anything is set on it (ENXIO else):
    the jail's own root could have renamed ours and given the name to another by then."""
    mtu: int | None = None
    addresses: tuple[str, ...] = ()
    """``address/prefix``, IPv4 and IPv6."""
    routes: tuple[tuple[str, str | None], ...] = ()
    """(destination CIDR, gateway or ``None`` for on-link), on-link ones first."""


def plan(
    ifname: str,
    mtu: int | None,
    addresses: Sequence[str],
    routes: Sequence[tuple[str, str | None]],
    *,
    mac: str | None = None,
) -> InetPlan:
    """Check everything before any interface exists: ``OSError(EINVAL)`` naming what is wrong.

    An MTU the eiface cannot take is refused here with the kernel's errno (it would fail only
    after the move otherwise). On-link routes go first: a gateway is reachable only through a
    connected prefix or an on-link route (rt_getifa_fib → ifa_ifwithroute, sys/net/route.c).
    """
    abi.check_ifname(ifname)
    if mtu is not None and not max(IF_MINMTU, NG_EIFACE_MTU_MIN) <= mtu <= NG_EIFACE_MTU_MAX:
        raise OSError(
            errno.EINVAL,
            f"an ng_eiface takes an MTU from {NG_EIFACE_MTU_MIN} to {NG_EIFACE_MTU_MAX}, not {mtu}",
            ifname,
        )
    for cidr in addresses:
        _interface(cidr)
    checked = []
    for dst, gw in routes:
        net = _network(dst)
        if gw is not None and _ip(gw).version != net.version:
            raise OSError(errno.EINVAL, f"route {dst} via {gw}: families differ", ifname)
        checked.append((dst, gw))
    checked.sort(key=lambda route: route[1] is not None)  # stable: on-link first
    return InetPlan(
        ifname=ifname, mac=mac, mtu=mtu, addresses=tuple(addresses), routes=tuple(checked)
    )


def _interface(cidr: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    try:
        if "/" not in cidr:
            raise ValueError(cidr)
        return ipaddress.ip_interface(cidr)
    except ValueError:
        raise OSError(errno.EINVAL, f"{cidr!r} is no address/prefix", cidr) from None


def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise OSError(errno.EINVAL, f"{cidr!r} is no route destination", cidr) from None


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise OSError(errno.EINVAL, f"{text!r} is no gateway address", text) from None


# --- sys/netinet/in.h, sys/netinet6/in6.h: the sockaddrs ---------------------------------


class SockaddrIn(ctypes.Structure):
    """``struct sockaddr_in { uint8_t sin_len; sa_family_t sin_family; in_port_t sin_port;
    struct in_addr sin_addr; char sin_zero[8]; };`` (sys/netinet/in.h), 16 bytes."""

    _fields_ = (
        ("sin_len", ctypes.c_ubyte),
        ("sin_family", ctypes.c_ubyte),
        ("sin_port", ctypes.c_ushort),
        ("sin_addr", ctypes.c_ubyte * 4),
        ("sin_zero", ctypes.c_ubyte * 8),
    )


class SockaddrIn6(ctypes.Structure):
    """``struct sockaddr_in6 { uint8_t sin6_len; sa_family_t sin6_family; in_port_t sin6_port;
    uint32_t sin6_flowinfo; struct in6_addr sin6_addr; uint32_t sin6_scope_id; };``
    (sys/netinet6/in6.h), 28 bytes."""

    _fields_ = (
        ("sin6_len", ctypes.c_ubyte),
        ("sin6_family", ctypes.c_ubyte),
        ("sin6_port", ctypes.c_ushort),
        ("sin6_flowinfo", ctypes.c_uint32),
        ("sin6_addr", ctypes.c_ubyte * 16),
        ("sin6_scope_id", ctypes.c_uint32),
    )


def sockaddr_in(address: ipaddress.IPv4Address) -> SockaddrIn:
    sin = SockaddrIn(sin_len=ctypes.sizeof(SockaddrIn), sin_family=abi.AF_INET)
    sin.sin_addr[:] = address.packed
    return sin


def sockaddr_in6(address: ipaddress.IPv6Address) -> SockaddrIn6:
    sin6 = SockaddrIn6(sin6_len=ctypes.sizeof(SockaddrIn6), sin6_family=abi.AF_INET6)
    sin6.sin6_addr[:] = address.packed
    return sin6


# --- sys/netinet/in_var.h, sys/netinet6/in6_var.h: the alias requests --------------------


class InAliasreq(ctypes.Structure):
    """``struct in_aliasreq { char ifra_name[IFNAMSIZ]; struct sockaddr_in ifra_addr,
    ifra_broadaddr, ifra_mask; int ifra_vhid; };`` (sys/netinet/in_var.h), 68 bytes."""

    _fields_ = (
        ("ifra_name", ctypes.c_char * abi.IFNAMSIZ),
        ("ifra_addr", SockaddrIn),
        ("ifra_broadaddr", SockaddrIn),
        ("ifra_mask", SockaddrIn),
        ("ifra_vhid", ctypes.c_int),
    )


class In6Addrlifetime(ctypes.Structure):
    """``struct in6_addrlifetime { time_t ia6t_expire, ia6t_preferred; uint32_t ia6t_vltime,
    ia6t_pltime; };`` (sys/netinet6/in6_var.h)."""

    _fields_ = (
        ("ia6t_expire", ctypes.c_int64),
        ("ia6t_preferred", ctypes.c_int64),
        ("ia6t_vltime", ctypes.c_uint32),
        ("ia6t_pltime", ctypes.c_uint32),
    )


class In6Aliasreq(ctypes.Structure):
    """``struct in6_aliasreq { char ifra_name[IFNAMSIZ]; struct sockaddr_in6 ifra_addr,
    ifra_dstaddr, ifra_prefixmask; int ifra_flags; struct in6_addrlifetime ifra_lifetime;
    int ifra_vhid; };`` (sys/netinet6/in6_var.h), 136 bytes on amd64."""

    _fields_ = (
        ("ifra_name", ctypes.c_char * abi.IFNAMSIZ),
        ("ifra_addr", SockaddrIn6),
        ("ifra_dstaddr", SockaddrIn6),
        ("ifra_prefixmask", SockaddrIn6),
        ("ifra_flags", ctypes.c_int),
        ("ifra_lifetime", In6Addrlifetime),
        ("ifra_vhid", ctypes.c_int),
    )


SIOCAIFADDR: Final = abi._iow("i", 43, InAliasreq)
SIOCAIFADDR_IN6: Final = abi._iow("i", 27, In6Aliasreq)
SIOCSIFMTU: Final = abi._iow("i", 52, abi.Ifreq)
"""sys/sys/sockio.h; sys/netinet6/in6_var.h for SIOCAIFADDR_IN6."""


def in_aliasreq(ifname: str, cidr: str) -> InAliasreq:
    """SIOCAIFADDR of ``cidr`` (``ifconfig IF inet ADDR/LEN alias``): broadcast left zero,
    as ifconfig leaves it, so in_aifaddr_ioctl derives it from the mask."""
    iface = _interface(cidr)
    if not isinstance(iface, ipaddress.IPv4Interface):
        raise OSError(errno.EINVAL, f"{cidr} is not IPv4", cidr)
    req = InAliasreq(ifra_name=abi.check_ifname(ifname))
    req.ifra_addr = sockaddr_in(iface.ip)
    req.ifra_mask = sockaddr_in(iface.netmask)
    return req


def in6_aliasreq(ifname: str, cidr: str) -> In6Aliasreq:
    """SIOCAIFADDR_IN6 of ``cidr`` (``ifconfig IF inet6 ADDR/LEN alias``), never expiring."""
    iface = _interface(cidr)
    if not isinstance(iface, ipaddress.IPv6Interface):
        raise OSError(errno.EINVAL, f"{cidr} is not IPv6", cidr)
    req = In6Aliasreq(ifra_name=abi.check_ifname(ifname))
    req.ifra_addr = sockaddr_in6(iface.ip)
    req.ifra_prefixmask = sockaddr_in6(iface.netmask)
    req.ifra_lifetime.ia6t_vltime = ND6_INFINITE_LIFETIME
    req.ifra_lifetime.ia6t_pltime = ND6_INFINITE_LIFETIME
    return req


def ifreq_mtu(ifname: str, mtu: int) -> abi.Ifreq:
    """SIOCSIFMTU: ``ifr_mtu`` is ``ifru_mtu``, an int at the start of the union."""
    req = abi.ifreq(ifname)
    req.ifr_ifru.ifru_jid = mtu  # same int slot as ifru_mtu (sys/net/if.h)
    return req


# --- sys/net/route.h: RTM_ADD ------------------------------------------------------------

RTM_VERSION: Final = 5
RTM_ADD: Final = 0x1
RTF_UP: Final = 0x1
RTF_GATEWAY: Final = 0x2
RTF_HOST: Final = 0x4
RTF_STATIC: Final = 0x800
RTA_DST: Final = 0x1
RTA_GATEWAY: Final = 0x2
RTA_NETMASK: Final = 0x4
PF_ROUTE: Final = 17
"""sys/sys/socket.h: PF_ROUTE is AF_ROUTE, 17."""


class RtMetrics(ctypes.Structure):
    """``struct rt_metrics``: rmx_locks, mtu, hopcount, expire, recvpipe, sendpipe, ssthresh,
    rtt, rttvar, pksent, weight, nhidx and filler[2], each u_long (sys/net/route.h)."""

    _fields_ = (("rmx", ctypes.c_ulong * 14),)


class RtMsghdr(ctypes.Structure):
    """``struct rt_msghdr`` (sys/net/route.h), 152 bytes on amd64; the sockaddrs follow."""

    _fields_ = (
        ("rtm_msglen", ctypes.c_ushort),
        ("rtm_version", ctypes.c_ubyte),
        ("rtm_type", ctypes.c_ubyte),
        ("rtm_index", ctypes.c_ushort),
        ("_rtm_spare1", ctypes.c_ushort),
        ("rtm_flags", ctypes.c_int),
        ("rtm_addrs", ctypes.c_int),
        ("rtm_pid", ctypes.c_int),
        ("rtm_seq", ctypes.c_int),
        ("rtm_errno", ctypes.c_int),
        ("rtm_fmask", ctypes.c_int),
        ("rtm_inits", ctypes.c_ulong),
        ("rtm_rmx", RtMetrics),
    )


def _sa_size(length: int) -> int:
    """SA_SIZE (sys/net/route.h): a sockaddr in a routing message padded to a long."""
    long_size = ctypes.sizeof(ctypes.c_long)
    return long_size if length == 0 else 1 + ((length - 1) | (long_size - 1))


def _padded(sa: ctypes.Structure) -> bytes:
    raw = bytes(sa)
    return raw + bytes(_sa_size(len(raw)) - len(raw))


def _sockaddr(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ctypes.Structure:
    if isinstance(address, ipaddress.IPv4Address):
        return sockaddr_in(address)
    return sockaddr_in6(address)


def rtm_add(dst: str, gw: str | None, ifindex: int, seq: int) -> bytes:
    """The RTM_ADD message of ``route add -net DST GW`` (or ``-interface IF`` without ``gw``,
    the gateway then the interface's sockaddr_dl; ``-host`` for a full-length prefix)."""
    net = _network(dst)
    flags = RTF_UP | RTF_STATIC
    addrs = RTA_DST | RTA_GATEWAY
    body = _padded(_sockaddr(net.network_address))
    if gw is not None:
        flags |= RTF_GATEWAY
        gateway = _sockaddr(_ip(gw))
        if isinstance(gateway, SockaddrIn6) and _ip(gw).is_link_local:
            gateway.sin6_scope_id = ifindex  # fe80::1 is ambiguous without its zone
        body += _padded(gateway)
    else:
        sdl = abi.SockaddrDl(sdl_len=ctypes.sizeof(abi.SockaddrDl), sdl_family=abi.AF_LINK)
        sdl.sdl_index = ifindex
        body += _padded(sdl)
    if net.prefixlen == net.max_prefixlen:
        flags |= RTF_HOST
    else:
        addrs |= RTA_NETMASK
        body += _padded(_sockaddr(net.netmask))
    header = RtMsghdr(
        rtm_version=RTM_VERSION, rtm_type=RTM_ADD, rtm_flags=flags, rtm_addrs=addrs, rtm_seq=seq
    )
    header.rtm_msglen = ctypes.sizeof(RtMsghdr) + len(body)
    return bytes(header) + body


# --- the child ---------------------------------------------------------------------------


def apply_here(inet: InetPlan, macs: dict[str, str | None] | None = None) -> None:
    """Apply ``inet`` in the calling process's vnet (the child, after jail_attach); ``macs``:
    the vnet's interfaces and their MACs, read there, when ``inet.mac`` is to be checked."""
    from vimaged.platforms import _libc  # loaded before the attach by the child script

    if inet.mac is not None and (macs or {}).get(inet.ifname, "") != inet.mac:
        raise OSError(errno.ENXIO, f"{inet.ifname} with MAC {inet.mac} is not here", inet.ifname)
    lib = _libc.libc()

    def ioctl(family: int, request: int, req: ctypes.Structure) -> None:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            lib.ioctl(sock.fileno(), request, ctypes.addressof(req))

    if inet.mtu is not None:
        ioctl(socket.AF_UNIX, SIOCSIFMTU, ifreq_mtu(inet.ifname, inet.mtu))
    for cidr in inet.addresses:
        if _interface(cidr).version == 4:
            ioctl(socket.AF_INET, SIOCAIFADDR, in_aliasreq(inet.ifname, cidr))
        else:
            ioctl(socket.AF_INET6, SIOCAIFADDR_IN6, in6_aliasreq(inet.ifname, cidr))
    if inet.routes:
        ifindex = socket.if_nametoindex(inet.ifname)
        with socket.socket(PF_ROUTE, socket.SOCK_RAW, 0) as sock:
            sock.shutdown(socket.SHUT_RD)  # as route(8): our own messages are not read back
            for seq, (dst, gw) in enumerate(inet.routes, 1):
                sock.send(rtm_add(dst, gw, ifindex, seq))  # OSError with route_output's errno


CHILD_ERRNO_STATUS: Final = 3
"""As freebsd.CHILD_ERRNO_STATUS: the child printed ``{"errno": N}``."""
CHILD_SCRIPT: Final = (
    "import sys\n"
    "from vimaged.platforms import jail_inet\n"
    "sys.exit(jail_inet.apply_in_jail(int(sys.argv[1]), sys.argv[2]))\n"
)
"""Run as ``python -c CHILD_SCRIPT JID PLAN_JSON`` by freebsd.FreeBSDPlatform.configure_in_jail."""


def apply_in_jail(jid: int, raw: str) -> int:
    """Child side: decode the plan, build every message, attach, apply; ``{"errno": N}`` and
    :data:`CHILD_ERRNO_STATUS` on the first failure. The plan is decoded (and the libc and
    every message class loaded) before the attach, which chroots into the jail's root."""
    import sys

    from vimaged.platforms import _libc, freebsd_ifnet  # getifaddrs(3), for the MAC

    encoder = msgspec.json.Encoder()
    try:
        inet = msgspec.json.decode(raw, type=InetPlan)
        plan(inet.ifname, inet.mtu, inet.addresses, inet.routes)  # refuse before attaching
        for cidr in inet.addresses:
            (in_aliasreq if _interface(cidr).version == 4 else in6_aliasreq)(inet.ifname, cidr)
        lib = _libc.libc()
        lib.jail_attach(jid)
        here = freebsd_ifnet.ifnets_here() if inet.mac is not None else None
        macs = None if here is None else {i.name: i.mac for i in here}
        apply_here(inet, macs)
    except OSError as exc:
        sys.stdout.buffer.write(encoder.encode({"errno": exc.errno or errno.EIO}))
        sys.stdout.flush()
        return CHILD_ERRNO_STATUS
    return 0
