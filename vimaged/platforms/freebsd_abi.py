"""Kernel boundary: every byte vimaged hands the FreeBSD kernel, computed in one place.

ioctl numbers (``sys/sys/ioccom.h`` encoding of ``sys/sys/sockio.h`` requests), ``struct
ifreq`` (``sys/net/if.h``), the ``jail_get(2)`` iovec name/value pairs (``sys/sys/jail.h``),
``struct sockaddr_dl`` and ``struct ifaddrs`` for reading MACs, sysctl and kernel module
names. Pure: no syscalls, nothing loaded; ``tests/unit/test_freebsd_abi.py`` holds each value
to the header it comes from. Layouts are amd64 (LP64), FreeBSD's tier-1 target; arm64 has the
same sizes for these structs.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import sys
from typing import Final

from vimaged import names
from vimaged.names import IFNAMSIZ as IFNAMSIZ  # the one definition (sys/net/if.h)

# --- sys/sys/ioccom.h: the ioctl request encoding ----------------------------------------

IOCPARM_SHIFT: Final = 13
IOCPARM_MASK: Final = (1 << IOCPARM_SHIFT) - 1
IOC_VOID: Final = 0x20000000
IOC_OUT: Final = 0x40000000
IOC_IN: Final = 0x80000000
IOC_INOUT: Final = IOC_IN | IOC_OUT


def _ioc(inout: int, group: str, num: int, length: int) -> int:
    """``_IOC(inout, group, num, len)``: direction, parameter size, group letter, number."""
    return inout | ((length & IOCPARM_MASK) << 16) | (ord(group) << 8) | num


def _iow(group: str, num: int, struct: type[ctypes.Structure]) -> int:
    return _ioc(IOC_IN, group, num, ctypes.sizeof(struct))


def _iowr(group: str, num: int, struct: type[ctypes.Structure]) -> int:
    return _ioc(IOC_INOUT, group, num, ctypes.sizeof(struct))


# --- sys/net/if.h: struct ifreq ----------------------------------------------------------

IFF_UP: Final = 0x1


class IfreqBuffer(ctypes.Structure):
    """``struct ifreq_buffer { size_t length; void *buffer; };`` (sys/net/if.h)."""

    _fields_ = (("length", ctypes.c_size_t), ("buffer", ctypes.c_void_p))


class IfreqIfru(ctypes.Union):
    """The ``ifr_ifru`` union of ``struct ifreq``: its widest members are 16 bytes
    (``struct sockaddr``, ``struct ifreq_buffer``) and ``caddr_t`` aligns it to 8."""

    _fields_ = (
        ("ifru_addr", ctypes.c_ubyte * 16),
        ("ifru_buffer", IfreqBuffer),
        ("ifru_flags", ctypes.c_short * 2),
        ("ifru_jid", ctypes.c_int),
        ("ifru_cap", ctypes.c_int * 2),
        ("ifru_data", ctypes.c_void_p),
    )


class Ifreq(ctypes.Structure):
    """``struct ifreq { char ifr_name[IFNAMSIZ]; union {...} ifr_ifru; };`` (sys/net/if.h).

    32 bytes on amd64. ``ifr_jid`` and ``ifr_flags``/``ifr_flagshigh`` are members of the union.
    """

    _fields_ = (("ifr_name", ctypes.c_char * IFNAMSIZ), ("ifr_ifru", IfreqIfru))


SIOCSIFFLAGS: Final = _iow("i", 16, Ifreq)
SIOCGIFFLAGS: Final = _iowr("i", 17, Ifreq)
SIOCSIFNAME: Final = _iow("i", 40, Ifreq)
SIOCSIFVNET: Final = _iowr("i", 90, Ifreq)
SIOCSIFRVNET: Final = _iowr("i", 91, Ifreq)
SIOCSIFCAP: Final = _iow("i", 30, Ifreq)
SIOCGIFCAP: Final = _iowr("i", 31, Ifreq)
"""sys/sys/sockio.h. ``ifr_reqcap`` is ``ifru_cap[0]``, ``ifr_curcap`` ``ifru_cap[1]``: SIOCGIFCAP
fills in ``if_capabilities`` and ``if_capenable``; SIOCSIFCAP asks for ``ifr_reqcap`` enabled
(EINVAL for a bit the NIC lacks, ifhwioctl in sys/net/if.c)."""


def check_ifname(ifname: str) -> bytes:
    """The interface name as the kernel stores it; ENAMETOOLONG or EINVAL as an ``OSError``
    (the platform raises nothing else: the domain checked the name before).

    ``IFNAMSIZ`` counts the terminating NUL, so 15 characters is the longest name.
    """
    if not names.is_ifname(ifname):
        code = errno.ENAMETOOLONG if len(ifname) >= IFNAMSIZ else errno.EINVAL
        raise OSError(code, os.strerror(code), ifname)
    return ifname.encode("ascii")


def ifreq(ifname: str) -> Ifreq:
    """A zeroed ``struct ifreq`` naming ``ifname`` (SIOCGIFFLAGS fills in the rest)."""
    req = Ifreq()
    req.ifr_name = check_ifname(ifname)
    return req


def ifreq_jid(ifname: str, jid: int) -> Ifreq:
    """SIOCSIFVNET / SIOCSIFRVNET argument: ``ifr_name`` and ``ifr_jid``."""
    if not 0 < jid < 2**31:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), f"jid {jid}")
    req = ifreq(ifname)
    req.ifr_ifru.ifru_jid = jid
    return req


def ifreq_flags(ifname: str, flags: int) -> Ifreq:
    """SIOCSIFFLAGS argument: the 32 flag bits split into ``ifr_flags``/``ifr_flagshigh``."""
    req = ifreq(ifname)
    req.ifr_ifru.ifru_flags[0] = ctypes.c_short(flags & 0xFFFF).value
    req.ifr_ifru.ifru_flags[1] = ctypes.c_short((flags >> 16) & 0xFFFF).value
    return req


def ifreq_caps(ifname: str, enabled: int) -> Ifreq:
    """SIOCSIFCAP argument: ``ifr_reqcap``, the capabilities to have enabled."""
    req = ifreq(ifname)
    req.ifr_ifru.ifru_cap[0] = ctypes.c_int(enabled & 0xFFFFFFFF).value
    return req


def ifreq_get_caps(req: Ifreq) -> tuple[int, int]:
    """``(supported, enabled)`` as SIOCGIFCAP returned them (``ifr_reqcap``, ``ifr_curcap``)."""
    return int(req.ifr_ifru.ifru_cap[0]) & 0xFFFFFFFF, int(req.ifr_ifru.ifru_cap[1]) & 0xFFFFFFFF


def ifreq_get_flags(req: Ifreq) -> int:
    """The 32 flag bits SIOCGIFFLAGS returned."""
    low = int(req.ifr_ifru.ifru_flags[0]) & 0xFFFF
    high = int(req.ifr_ifru.ifru_flags[1]) & 0xFFFF
    return (high << 16) | low


def new_name_buffer(newname: str) -> ctypes.Array[ctypes.c_char]:
    """The ``IFNAMSIZ`` buffer SIOCSIFNAME copies the new name from (``copyinstr``)."""
    buf = ctypes.create_string_buffer(IFNAMSIZ)
    buf.value = check_ifname(newname)
    return buf


def ifreq_rename(ifname: str, newname_buf: ctypes.Array[ctypes.c_char]) -> Ifreq:
    """SIOCSIFNAME argument: ``ifr_data`` points at the new name (as ifconfig's setifname).

    The caller keeps ``newname_buf`` alive until the ioctl returns.
    """
    req = ifreq(ifname)
    req.ifr_ifru.ifru_data = ctypes.addressof(newname_buf)
    return req


# --- sys/sys/jail.h and sys/sys/_iovec.h: jail_get(2) ----------------------------------

JAIL_CREATE: Final = 0x01
JAIL_UPDATE: Final = 0x02
JAIL_ATTACH: Final = 0x04
JAIL_DYING: Final = 0x08
MAXHOSTNAMELEN: Final = 256
"""sys/sys/param.h; also the size of a jail's ``name`` parameter."""
JAIL_ERRMSGLEN: Final = 1024
"""lib/libjail/jail.h; the kernel writes at most this much into ``errmsg``."""


class Iovec(ctypes.Structure):
    """``struct iovec { void *iov_base; size_t iov_len; };`` (sys/sys/_iovec.h)."""

    _fields_ = (("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t))


class JailQuery:
    """The iovec array of one ``jail_get(2)`` call and the buffers it points into.

    Parameters come in name/value pairs: the name is a NUL-terminated string (its length
    counts the NUL), the value an ``int`` for ``jid``/``lastjid``/``dying`` and a char buffer
    for ``name`` and ``errmsg``. Exactly one key selects the jail: ``lastjid`` (the first jail
    with a greater jid, for iterating), ``jid`` or ``name``.
    """

    def __init__(
        self, *, lastjid: int | None = None, jid: int | None = None, name: str | None = None
    ) -> None:
        keys = [key for key in (lastjid, jid, name) if key is not None]
        if len(keys) != 1:
            raise ValueError("JailQuery needs exactly one of lastjid, jid, name")
        self.jid = ctypes.c_int(jid if jid is not None else 0)
        self.lastjid = ctypes.c_int(lastjid if lastjid is not None else 0)
        self.name = ctypes.create_string_buffer(MAXHOSTNAMELEN)
        if name is not None:
            encoded = name.encode()
            if len(encoded) >= MAXHOSTNAMELEN:
                raise ValueError(f"jail name {name!r} is longer than {MAXHOSTNAMELEN - 1} bytes")
            self.name.value = encoded
        self.dying = ctypes.c_int(0)
        self.errmsg = ctypes.create_string_buffer(JAIL_ERRMSGLEN)
        self._keepalive: list[ctypes.Array[ctypes.c_char]] = []
        pairs: list[tuple[bytes, ctypes._CData]] = []
        if lastjid is not None:
            pairs.append((b"lastjid", self.lastjid))
            pairs.append((b"jid", self.jid))
        elif jid is not None:
            pairs.append((b"jid", self.jid))
        pairs.append((b"name", self.name))
        pairs.append((b"dying", self.dying))
        pairs.append((b"errmsg", self.errmsg))
        self.iov = (Iovec * (2 * len(pairs)))()
        for i, (key, value) in enumerate(pairs):
            key_buf = ctypes.create_string_buffer(key)  # adds the NUL
            self._keepalive.append(key_buf)
            self.iov[2 * i] = Iovec(ctypes.addressof(key_buf), len(key) + 1)
            self.iov[2 * i + 1] = Iovec(ctypes.addressof(value), ctypes.sizeof(value))

    @property
    def niov(self) -> int:
        return len(self.iov)

    def pairs(self) -> list[tuple[bytes, bytes]]:
        """The name/value byte strings the iovecs point at, as the kernel would read them."""
        out = []
        for i in range(0, self.niov, 2):
            key, value = self.iov[i], self.iov[i + 1]
            out.append(
                (
                    ctypes.string_at(key.iov_base, key.iov_len),
                    ctypes.string_at(value.iov_base, value.iov_len),
                )
            )
        return out

    def error(self, err: int) -> OSError:
        """``OSError`` for a failed call, with the kernel's errmsg as its text when it gave one."""
        text = self.errmsg.value.decode(errors="replace") or os.strerror(err)
        return OSError(err, text, "jail_get")


# --- sys/net/if_dl.h, include/ifaddrs.h, sys/sys/socket.h: reading MACs -----------------

AF_INET: Final = 2
AF_INET6: Final = 28
"""sys/sys/socket.h (AF_INET6 is 28 on FreeBSD, 10 on Linux)."""
AF_LINK: Final = 18
IFT_ETHER: Final = 0x6
"""sys/net/if_types.h."""
ETHER_ADDR_LEN: Final = 6


class SockaddrDl(ctypes.Structure):
    """``struct sockaddr_dl`` (sys/net/if_dl.h): the name then the link address in sdl_data."""

    _fields_ = (
        ("sdl_len", ctypes.c_ubyte),
        ("sdl_family", ctypes.c_ubyte),
        ("sdl_index", ctypes.c_ushort),
        ("sdl_type", ctypes.c_ubyte),
        ("sdl_nlen", ctypes.c_ubyte),
        ("sdl_alen", ctypes.c_ubyte),
        ("sdl_slen", ctypes.c_ubyte),
        ("sdl_data", ctypes.c_char * 46),
    )


class Ifaddrs(ctypes.Structure):
    """``struct ifaddrs`` (include/ifaddrs.h)."""


Ifaddrs._fields_ = (
    ("ifa_next", ctypes.POINTER(Ifaddrs)),
    ("ifa_name", ctypes.c_char_p),
    ("ifa_flags", ctypes.c_uint),
    ("ifa_addr", ctypes.c_void_p),
    ("ifa_netmask", ctypes.c_void_p),
    ("ifa_dstaddr", ctypes.c_void_p),
    ("ifa_data", ctypes.c_void_p),
)


def if_data_mtu(if_data: bytes) -> int:
    """``ifi_mtu`` of the ``struct if_data`` an AF_LINK ifaddrs entry's ``ifa_data`` points at
    (sys/net/if.h: six u_char and a u_short ifi_datalen, then uint32_t ifi_mtu at offset 8)."""
    return int.from_bytes(if_data[8:12], sys.byteorder)


def link_address(sdl: bytes) -> str | None:
    """The MAC in a ``struct sockaddr_dl`` as ``xx:xx:xx:xx:xx:xx``; ``None`` without one."""
    if len(sdl) < 8 or sdl[1] != AF_LINK:
        raise ValueError("not a sockaddr_dl: too short or sdl_family is not AF_LINK")
    nlen, alen = sdl[5], sdl[6]
    if alen != ETHER_ADDR_LEN:
        return None
    start = 8 + nlen
    mac = sdl[start : start + alen]
    if len(mac) != alen:
        raise ValueError("truncated sockaddr_dl: sdl_alen runs past sdl_len")
    return ":".join(f"{b:02x}" for b in mac)


# --- sysctl(3) names and kernel modules ---------------------------------------------------

SYSCTL_VIMAGE: Final = b"kern.features.vimage"
"""1 when the kernel has ``options VIMAGE`` (sys/net/vnet.c: FEATURE(vimage, ...))."""
SYSCTL_HOSTUUID: Final = b"kern.hostuuid"
NETGRAPH_MODULES: Final = ("netgraph", "ng_socket", "ng_ether", "ng_bridge", "ng_eiface")
"""Module names as modfind(2)/kldload(2) take them, in load order (netgraph first)."""

ERRNO_NOT_A_JAIL: Final = errno.ENOENT
"""jail_get(2) with no matching jail (and the end of a ``lastjid`` walk)."""


_ADDRESS_AT = {AF_INET: (4, 4), AF_INET6: (8, 16)}
"""Offset and size of the address in ``struct sockaddr_in`` (sin_len, sin_family, sin_port,
sin_addr) and ``struct sockaddr_in6`` (..., sin6_flowinfo, sin6_addr, sin6_scope_id)."""


def inet_address(addr: bytes, netmask: bytes | None) -> str | None:
    """An AF_INET or AF_INET6 ``ifa_addr`` with its ``ifa_netmask`` as ``address/prefix``;
    ``None`` for other families.

    A netmask from the routing socket may be shorter than its sockaddr type (``sa_len``
    counts only its significant bytes) and may carry family 0, so only its length and bytes
    are read. A link-local IPv6 address has its zone in ``sin6_scope_id``; with
    ``net.inet6.ip6.deembed_scopeid=0`` the kernel leaves the KAME form, the zone in bytes 2-3
    of the address (sys/netinet6/scope6.c ``sa6_recoverscope``), which is cleared here.
    """
    if len(addr) < 2 or addr[1] not in _ADDRESS_AT:
        return None
    family = addr[1]
    offset, size = _ADDRESS_AT[family]
    raw = bytearray(addr[offset : offset + size])
    if len(raw) != size:
        raise ValueError(f"truncated sockaddr of family {family}: {len(addr)} bytes")
    prefix = size * 8  # no netmask: a host address
    if netmask:
        significant = netmask[offset : min(netmask[0], len(netmask), offset + size)]
        prefix = sum(bin(byte).count("1") for byte in significant)
    link_local = raw[0] == 0xFE and raw[1] & 0xC0 == 0x80
    local_multicast = raw[0] == 0xFF and raw[1] & 0x0F in (0x01, 0x02)  # interface, link
    if family == AF_INET6 and (link_local or local_multicast):
        raw[2:4] = b"\0\0"
    text = socket.inet_ntop(socket.AF_INET if family == AF_INET else socket.AF_INET6, raw)
    return f"{text}/{prefix}"
