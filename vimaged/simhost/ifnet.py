"""One simulated interface (struct ifnet, sys/net/if_var.h), apart from the host model so that
the host (host.py) and its data plane (dataplane.py) both use it without importing each other.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

HOST_JID = 0
"""The host's own vnet (prison0)."""


@dataclass(eq=False)
class Ifnet:
    """One interface. ``vnet`` is where it is now (0 the host, else a jid)."""

    name: str
    kind: str  # "ether" (a NIC), "eiface" (ng_eiface) or "loopback"
    index: int
    mac: bytes | None = None
    up: bool = False
    vnet: int = HOST_JID
    home: int = HOST_JID
    """if_home_vnet: where vnet_if_return sends it when its vnet is destroyed."""
    unit: int = -1
    hwassist: int = 0
    """if_hwassist: the checksum offloads in use (ng_ether zeroes it while ``upper`` is on)."""
    capabilities: int = 0
    """if_capabilities: what the driver can offload (SIOCGIFCAP ``ifr_reqcap``)."""
    capenable: int = 0
    """if_capenable: what is on (SIOCGIFCAP ``ifr_curcap``; SIOCSIFCAP sets it)."""
    inbox: list[bytes] = field(default_factory=list)
    """Frames its vnet's stack received on it (if_input), oldest first, for ``received``."""
    mtu: int = 1500
    """if_mtu: ETHERMTU from ether_ifattach (sys/net/if_ethersubr.c); SIOCSIFMTU sets it."""
    addresses: list[str] = field(default_factory=list)
    """IPv4 and IPv6 ``address/prefix`` set by SIOCAIFADDR(_IN6), in order (simhost.inet)."""


class UnitPool:
    """A unit number allocator, lowest free first: alloc_unr/free_unr (sys/kern/subr_unit.c)
    as ng_eiface_constructor and ng_eiface_rmnode use them (sys/netgraph/ng_eiface.c)."""

    def __init__(self) -> None:
        self._next = 0
        self._freed: list[int] = []  # a heap of the freed units below ``_next``
        self._free: set[int] = set()  # the same units, to refuse a double free

    def alloc(self) -> int:
        if self._freed:
            unit = heapq.heappop(self._freed)
            self._free.discard(unit)
            return unit
        self._next += 1
        return self._next - 1

    def free(self, unit: int) -> None:
        if 0 <= unit < self._next and unit not in self._free:
            heapq.heappush(self._freed, unit)
            self._free.add(unit)
