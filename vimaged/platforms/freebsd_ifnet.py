"""Platform layer, ``freebsd``: interfaces of a vnet, read and changed, here or in a jail.

Read with one walk of getifaddrs(3)'s ``struct ifaddrs`` list (an AF_LINK entry per
interface: name, MAC, flags; then its AF_INET and AF_INET6 entries); changed with ifnet
ioctls (SIOCGIFFLAGS/SIOCSIFFLAGS, SIOCGIFCAP/SIOCSIFCAP) on a throwaway socket. Inside a
jail's vnet the same calls run in a short-lived child that ``jail_attach(2)``-es first (it
cannot be undone). The structs are :mod:`freebsd_abi`'s; libc is :mod:`_libc`'s.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import sys
from typing import Any

import msgspec
import trio

from vimaged.platforms import IfnetInfo, _libc, freebsd_routes
from vimaged.platforms import freebsd_abi as abi


def ifnets_here() -> list[IfnetInfo]:
    """Interfaces of the calling process's vnet from ``getifaddrs(3)``: one AF_LINK entry each
    (name, MAC, flags), then its AF_INET and AF_INET6 entries (addresses, netmasks)."""
    lib = _libc.libc()
    head = ctypes.c_void_p()
    lib.getifaddrs(ctypes.byref(head))
    links: dict[str, tuple[str | None, bool, int | None]] = {}
    addresses: dict[str, list[str]] = {}
    try:
        entry = ctypes.cast(head, ctypes.POINTER(abi.Ifaddrs))
        while entry:
            ifa = entry.contents
            name = (ifa.ifa_name or b"").decode()
            family = ctypes.string_at(ifa.ifa_addr, 2)[1] if ifa.ifa_addr else None
            if family == abi.AF_LINK:
                sdl = _sockaddr(ifa.ifa_addr, 8)
                mtu = abi.if_data_mtu(ctypes.string_at(ifa.ifa_data, 12)) if ifa.ifa_data else None
                links[name] = (abi.link_address(sdl), bool(ifa.ifa_flags & abi.IFF_UP), mtu)
            elif family in (abi.AF_INET, abi.AF_INET6):
                netmask = _sockaddr(ifa.ifa_netmask, 0) if ifa.ifa_netmask else None
                text = abi.inet_address(_sockaddr(ifa.ifa_addr, 2), netmask)
                if text is not None:
                    addresses.setdefault(name, []).append(text)
            entry = ifa.ifa_next
    finally:
        lib.freeifaddrs(head)
    return [
        IfnetInfo(name=name, mac=mac, up=up, addresses=tuple(addresses.get(name, ())), mtu=mtu)
        for name, (mac, up, mtu) in links.items()
    ]


def _sockaddr(pointer: int, least: int) -> bytes:
    """The ``sa_len`` bytes of the sockaddr at ``pointer`` (at least ``least``)."""
    return ctypes.string_at(pointer, max(ctypes.string_at(pointer, 1)[0], least))


def ifnet_ioctl(request: int, req: abi.Ifreq) -> None:
    """``ioctl(s, request, &ifreq)`` on a throwaway local datagram socket (as ifconfig(8))."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        _libc.libc().ioctl(sock.fileno(), request, ctypes.addressof(req))


def report_ifnets_in_jail(jid: int, ifname: str | None = None) -> int:
    """Child side of ``FreeBSDPlatform.list_ifnets`` for a jail: attach, list, print JSON.

    Runs in a fresh interpreter (``python -c``), because ``jail_attach(2)`` cannot be undone.
    Everything it needs is loaded before the attach, which also chroots into the jail's path.
    Prints the list, or ``{"errno": N}`` and returns :data:`CHILD_ERRNO_STATUS`. With
    ``ifname`` (``inspect_in_jail``, CNI CHECK): only that interface, with its routes
    (:func:`freebsd_routes.routes_here`), or an empty list.
    """
    encoder = msgspec.json.Encoder()
    lib = _libc.libc()
    try:
        lib.jail_attach(jid)
        result: Any = ifnets_here()
        if ifname is not None:
            result = [
                msgspec.structs.replace(
                    i, routes=tuple(freebsd_routes.routes_here(_ifindex(ifname)))
                )
                for i in result
                if i.name == ifname
            ]
        status = 0
    except OSError as exc:
        result, status = {"errno": exc.errno}, CHILD_ERRNO_STATUS
    sys.stdout.buffer.write(encoder.encode(result))
    sys.stdout.flush()
    return status


def _ifindex(ifname: str) -> int:
    """if_nametoindex(3); ENXIO (not Python's errno-less OSError) if it went meanwhile."""
    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        raise OSError(errno.ENXIO, os.strerror(errno.ENXIO), ifname) from None


def raise_ifnet_in_jail(jid: int, ifname: str) -> int:
    """Child side of ``FreeBSDPlatform.move_ifnet``: attach, ``ifconfig IFNAME up``.

    Prints ``{"errno": N}`` and returns :data:`CHILD_ERRNO_STATUS` on failure, else prints
    nothing and returns 0.
    """
    try:
        _libc.libc().jail_attach(jid)
        raise_ifnet(ifname)
    except OSError as exc:
        sys.stdout.buffer.write(msgspec.json.encode({"errno": exc.errno}))
        sys.stdout.flush()
        return CHILD_ERRNO_STATUS
    return 0


def raise_ifnet(ifname: str) -> None:
    """SIOCGIFFLAGS, then SIOCSIFFLAGS with IFF_UP added unless it is there already."""
    set_ifnet_up(ifname, True)


def ifnet_flags(ifname: str) -> int:
    req = abi.ifreq(ifname)
    ifnet_ioctl(abi.SIOCGIFFLAGS, req)
    return abi.ifreq_get_flags(req)


def set_ifnet_up(ifname: str, up: bool) -> None:
    """SIOCSIFFLAGS with IFF_UP set or cleared, unless it is that way already."""
    flags = ifnet_flags(ifname)
    if bool(flags & abi.IFF_UP) != up:
        new = flags | abi.IFF_UP if up else flags & ~abi.IFF_UP
        ifnet_ioctl(abi.SIOCSIFFLAGS, abi.ifreq_flags(ifname, new))


class HostNicOps:
    """:class:`vimaged.platforms.parent_nics.NicOps` with ioctls on the host's vnet."""

    async def is_up(self, ifname: str) -> bool:
        return bool(ifnet_flags(ifname) & abi.IFF_UP)

    async def set_up(self, ifname: str, up: bool) -> None:
        set_ifnet_up(ifname, up)

    async def capabilities(self, ifname: str) -> tuple[int, int]:
        req = abi.ifreq(ifname)
        ifnet_ioctl(abi.SIOCGIFCAP, req)
        return abi.ifreq_get_caps(req)

    async def set_capabilities(self, ifname: str, enabled: int) -> None:
        ifnet_ioctl(abi.SIOCSIFCAP, abi.ifreq_caps(ifname, enabled))


CHILD_ERRNO_STATUS = 3
"""Exit status of the child that reports an errno; Python itself exits 1 on a traceback."""

CHILD = (
    "import sys\n"
    "from vimaged.platforms import freebsd_ifnet\n"
    "sys.exit(freebsd_ifnet.report_ifnets_in_jail(int(sys.argv[1]), *sys.argv[2:]))\n"
)
"""``python -c CHILD JID [IFNAME]``: every interface of the jail, or IFNAME with its routes."""
UP_CHILD = (
    "import sys\n"
    "from vimaged.platforms import freebsd_ifnet\n"
    "sys.exit(freebsd_ifnet.raise_ifnet_in_jail(int(sys.argv[1]), sys.argv[2]))\n"
)


async def run_child(script: str, jid: int, *args: str) -> bytes:
    """Run a ``jail_attach(2)``-ing child; its stdout, or its errno as ``OSError``."""
    result = await trio.run_process(
        [sys.executable, "-c", script, str(jid), *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    if result.returncode == CHILD_ERRNO_STATUS:
        err = msgspec.json.decode(result.stdout, type=dict[str, int])["errno"]
        raise OSError(err, os.strerror(err), f"jail {jid}")
    if result.returncode != 0:
        raise OSError(errno.EIO, result.stderr.decode(errors="replace").strip(), sys.executable)
    return result.stdout
