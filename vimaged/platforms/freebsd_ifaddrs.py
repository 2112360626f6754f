"""Platform layer, ``freebsd``: the interfaces of the calling process's vnet, by getifaddrs(3).

One walk of the ``struct ifaddrs`` list: an AF_LINK entry per interface (name, MAC, flags),
then its AF_INET and AF_INET6 entries. The structs and sockaddr decoding are
:mod:`freebsd_abi`'s; libc is :mod:`_libc`'s.
"""

from __future__ import annotations

import ctypes

from vimaged.platforms import IfnetInfo, _libc
from vimaged.platforms import freebsd_abi as abi


def ifnets_here() -> list[IfnetInfo]:
    """Interfaces of the calling process's vnet from ``getifaddrs(3)``: one AF_LINK entry each
    (name, MAC, flags), then its AF_INET and AF_INET6 entries (addresses, netmasks)."""
    lib = _libc.libc()
    head = ctypes.c_void_p()
    lib.getifaddrs(ctypes.byref(head))
    links: dict[str, tuple[str | None, bool]] = {}
    addresses: dict[str, list[str]] = {}
    try:
        entry = ctypes.cast(head, ctypes.POINTER(abi.Ifaddrs))
        while entry:
            ifa = entry.contents
            name = (ifa.ifa_name or b"").decode()
            family = ctypes.string_at(ifa.ifa_addr, 2)[1] if ifa.ifa_addr else None
            if family == abi.AF_LINK:
                sdl = _sockaddr(ifa.ifa_addr, 8)
                links[name] = (abi.link_address(sdl), bool(ifa.ifa_flags & abi.IFF_UP))
            elif family in (abi.AF_INET, abi.AF_INET6):
                netmask = _sockaddr(ifa.ifa_netmask, 0) if ifa.ifa_netmask else None
                text = abi.inet_address(_sockaddr(ifa.ifa_addr, 2), netmask)
                if text is not None:
                    addresses.setdefault(name, []).append(text)
            entry = ifa.ifa_next
    finally:
        lib.freeifaddrs(head)
    return [
        IfnetInfo(name=name, mac=mac, up=up, addresses=tuple(addresses.get(name, ())))
        for name, (mac, up) in links.items()
    ]


def _sockaddr(pointer: int, least: int) -> bytes:
    """The ``sa_len`` bytes of the sockaddr at ``pointer`` (at least ``least``)."""
    return ctypes.string_at(pointer, max(ctypes.string_at(pointer, 1)[0], least))
