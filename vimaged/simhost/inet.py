"""Simulated host layer: the IPv4/IPv6 configuration of ifnets and each vnet's routing table.

Only what vimaged-cni sets inside a jail, as the kernel checks it: SIOCSIFMTU (ifhwioctl in
sys/net/if.c, then ng_eiface_ioctl in sys/netgraph/ng_eiface.c), SIOCAIFADDR (in_aifaddr_ioctl,
sys/netinet/in.c), SIOCAIFADDR_IN6 (in6_control/in6_update_ifa, sys/netinet6/in6.c) and RTM_ADD
(route_output, sys/net/rtsock.c; rib_add_route, sys/net/route/route_ctl.c). Each is done by a
process attached to the jail (jail_attach(2): EINVAL for an absent or dying jail), in its vnet.
Addresses and routes through an ifnet go when it leaves its vnet or is destroyed
(if_detach_internal: if_purgeaddrs, rt_flushifroutes, sys/net/if.c).
"""

from __future__ import annotations

import errno
import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from vimaged.simhost import rtsock
from vimaged.simhost.ng_message import fail

if TYPE_CHECKING:
    from collections.abc import Mapping

    from vimaged.simhost.ifnet import Ifnet

HOST_JID = 0
IF_MINMTU, IF_MAXMTU = 72, 65535
"""sys/net/if.c: ifhwioctl's SIOCSIFMTU bounds (EINVAL outside)."""
AF_MAX = 42
"""sys/sys/socket.h: sysctl_rtsock refuses a family above it (EINVAL)."""
NG_EIFACE_MTU_MIN, NG_EIFACE_MTU_MAX = 72, 9018
"""sys/netgraph/ng_eiface.h: NG_EIFACE_MTU_MIN and ETHER_MAX_LEN_JUMBO."""


class _Jail(Protocol):
    """What this layer reads of host.py's Jail (which imports this module)."""

    @property
    def dying(self) -> bool: ...


@dataclass(eq=False)
class Route:
    """One route of a vnet: ``gateway`` None for an on-link route via ``ifnet``."""

    vnet: int
    dst: str
    gateway: str | None
    ifnet: Ifnet


class InetLayer:
    """The layer-3 half of :class:`vimaged.simhost.host.SimHost`."""

    ifnets: list[Ifnet]
    jails: Mapping[int, _Jail]
    routes: list[Route]

    def find_ifnet(self, name: str, vnet: int) -> Ifnet | None:
        raise NotImplementedError

    def _vnet_of_jail(self, jid: int) -> int:
        raise NotImplementedError

    def _attached_ifnet(self, jid: int, name: str) -> Ifnet:
        """ifunit_ref in the vnet of a process attached to ``jid``: ENXIO if not there."""
        if jid != HOST_JID:
            jail = self.jails.get(jid)
            if jail is None or jail.dying:
                fail(errno.EINVAL, f"cannot attach to jail {jid}")  # jail_attach(2)
        ifnet = self.find_ifnet(name, self._vnet_of_jail(jid))
        if ifnet is None:
            fail(errno.ENXIO, name)
        return ifnet

    def set_mtu(self, jid: int, name: str, mtu: int) -> None:
        """SIOCSIFMTU: ifhwioctl's bounds, then the driver's (an eiface's, a NIC's jumbo)."""
        ifnet = self._attached_ifnet(jid, name)
        if not IF_MINMTU <= mtu <= IF_MAXMTU:
            fail(errno.EINVAL, f"{name}: mtu {mtu}")
        if ifnet.kind == "eiface" and not NG_EIFACE_MTU_MIN <= mtu <= NG_EIFACE_MTU_MAX:
            fail(errno.EINVAL, f"{name}: mtu {mtu} (ng_eiface_ioctl)")
        ifnet.mtu = mtu

    def add_address(self, jid: int, name: str, cidr: str) -> None:
        """SIOCAIFADDR / SIOCAIFADDR_IN6: the address with its prefix length on ``name``.

        An address the interface has already is changed in place (its prefix), not doubled
        (in_aifaddr_ioctl finds it by ``ifra_addr``; in6_update_ifa likewise); a loopback
        takes none here (vimaged-cni never asks).
        """
        ifnet = self._attached_ifnet(jid, name)
        try:
            iface = ipaddress.ip_interface(cidr)
        except ValueError:
            fail(errno.EINVAL, f"{cidr!r}")  # a sockaddr of the wrong length or family
        ifnet.addresses = [a for a in ifnet.addresses if ipaddress.ip_interface(a).ip != iface.ip]
        ifnet.addresses.append(str(iface))

    def add_route(self, jid: int, dst: str, gateway: str | None, via: str | None) -> None:
        """RTM_ADD of ``route add DST GW`` (``via``: ``-interface IF`` when no gateway).

        A gateway must be on a connected prefix of an ifnet in the vnet, else ENETUNREACH
        (rt_getifa_fib → ifa_ifwithroute, sys/net/route.c); a route with the same
        destination and gateway exists already: EEXIST (rib_add_route).
        """
        vnet = self._vnet_of_jail(jid)
        if jid != HOST_JID and (jid not in self.jails or self.jails[jid].dying):
            fail(errno.EINVAL, f"cannot attach to jail {jid}")
        try:
            net = ipaddress.ip_network(dst, strict=False)
            gw = None if gateway is None else ipaddress.ip_address(gateway)
        except ValueError:
            fail(errno.EINVAL, f"route {dst} {gateway}")
        if gw is None:
            if via is None:
                fail(errno.EINVAL, f"route {dst}: no gateway")
            ifnet = self._attached_ifnet(jid, via)
        else:
            found = self._connected(vnet, gw)
            if found is None:
                fail(errno.ENETUNREACH, f"gateway {gw} is on no connected network")
            ifnet = found
        key = (str(net), None if gw is None else str(gw))
        if any((r.dst, r.gateway) == key for r in self.routes if r.vnet == vnet):
            fail(errno.EEXIST, f"route {net} exists")
        self.routes.append(Route(vnet, str(net), key[1], ifnet))

    def _connected(
        self, vnet: int, gw: ipaddress.IPv4Address | ipaddress.IPv6Address
    ) -> Ifnet | None:
        """ifa_ifwithnet: the ifnet with a prefix holding ``gw``, or an on-link route to it."""
        for ifnet in self.ifnets:
            if ifnet.vnet == vnet and any(
                gw in ipaddress.ip_interface(a).network for a in ifnet.addresses
            ):
                return ifnet
        for route in self.routes:
            net = ipaddress.ip_network(route.dst)
            if route.vnet == vnet and route.gateway is None and gw in net:
                return route.ifnet
        return None

    def list_routes(self, jid: int) -> list[Route]:
        """``netstat -rn`` in the jail's vnet (sysctl NET_RT_DUMP): static routes only."""
        if jid != HOST_JID and jid not in self.jails:
            fail(errno.EINVAL, f"no jail {jid}")
        vnet = self._vnet_of_jail(jid)
        return [r for r in self.routes if r.vnet == vnet]

    def delete_route(self, jid: int, dst: str, gateway: str | None) -> None:
        """RTM_DELETE of ``route delete DST [GW]``: the route to ``dst`` (through ``gateway``
        when given); ESRCH if there is none (rib_del_route, sys/net/route/route_ctl.c)."""
        if jid != HOST_JID and (jid not in self.jails or self.jails[jid].dying):
            fail(errno.EINVAL, f"cannot attach to jail {jid}")
        vnet = self._vnet_of_jail(jid)
        try:
            net = str(ipaddress.ip_network(dst, strict=False))
            gw = None if gateway is None else str(ipaddress.ip_address(gateway))
        except ValueError:
            fail(errno.EINVAL, f"route {dst} {gateway}")
        found = [
            r for r in self.routes
            if r.vnet == vnet and r.dst == net and (gw is None or r.gateway == gw)
        ]  # fmt: skip
        if not found:
            fail(errno.ESRCH, f"route {net} not found")
        self.routes.remove(found[0])

    def rt_dump(self, jid: int, family: int) -> bytes:
        """sysctl NET_RT_DUMP of ``family`` in the jail's vnet (sysctl_rtsock, rtsock.c): its
        connected prefixes (ifa_maintain_prefix_route, sys/net/route/route_ifaddrs.c), then
        the static routes, as bytes (simhost.rtsock). EINVAL: jail_attach(2) refused."""
        if jid != HOST_JID and (jid not in self.jails or self.jails[jid].dying):
            fail(errno.EINVAL, f"cannot attach to jail {jid}")
        if not 0 < family <= AF_MAX:
            fail(errno.EINVAL, f"family {family}")
        if family not in (rtsock.AF_INET, rtsock.AF_INET6):
            return b""  # rt_tables_get_rnh: no rib of that family, nothing dumped
        vnet = self._vnet_of_jail(jid)
        connected = [
            (str(ipaddress.ip_interface(a).network), i)
            for i in self.ifnets if i.vnet == vnet for a in i.addresses
        ]  # fmt: skip
        static = [(r.dst, r.gateway, r.ifnet) for r in self.routes if r.vnet == vnet]
        return rtsock.dump(family, connected, static)

    def purge_inet(self, ifnet: Ifnet) -> None:
        """if_detach_internal (a vmove or a destroy): if_purgeaddrs, then rt_flushifroutes."""
        ifnet.addresses = []
        self.routes = [r for r in self.routes if r.ifnet is not ifnet]
