"""Unit tier: freebsd_abi's bytes against values derived from the FreeBSD headers.

Each expected value is worked out by hand from the cited header, not from the module, so a
wrong formula in freebsd_abi cannot agree with itself. Citations are
``freebsd/freebsd-src:path@commit`` with the line of the definition.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct

import pytest

from vimaged.platforms import freebsd_abi as abi

pytestmark = pytest.mark.unit


def test_ioc_direction_bits() -> None:
    # sys/sys/ioccom.h@039ea811 lines 48-51: IOC_VOID 0x20000000, IOC_OUT 0x40000000,
    # IOC_IN 0x80000000, IOC_INOUT = IOC_IN|IOC_OUT; line 41-42: IOCPARM_SHIFT 13, mask 0x1fff.
    assert (abi.IOC_VOID, abi.IOC_OUT, abi.IOC_IN) == (0x20000000, 0x40000000, 0x80000000)
    assert abi.IOC_INOUT == 0xC0000000
    assert abi.IOCPARM_MASK == 0x1FFF


def test_sizeof_ifreq_is_32_on_amd64() -> None:
    # sys/net/if.h (revision with ifru_jid, e.g. FreeBSD 13/14): char ifr_name[IFNAMSIZ=16]
    # then a union whose widest members are struct sockaddr (16) and struct ifreq_buffer
    # (size_t + void *, 16); caddr_t aligns it to 8: 16 + 16 = 32.
    assert ctypes.sizeof(abi.Ifreq) == 32
    assert abi.Ifreq.ifr_ifru.offset == 16


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # _IOW('i', 16, struct ifreq): 0x80000000 | 32 << 16 | 0x69 << 8 | 16
        # sys/sys/sockio.h@039ea811 line 58
        pytest.param(abi.SIOCSIFFLAGS, 0x80206910, id="SIOCSIFFLAGS"),
        # _IOWR('i', 17, struct ifreq), sockio.h@039ea811 line 59
        pytest.param(abi.SIOCGIFFLAGS, 0xC0206911, id="SIOCGIFFLAGS"),
        # _IOW('i', 40, struct ifreq), sockio.h@039ea811 line 81; 40 = 0x28
        pytest.param(abi.SIOCSIFNAME, 0x80206928, id="SIOCSIFNAME"),
        # _IOWR('i', 90, struct ifreq) "move IF jail/vnet", sockio.h@039ea811 line 110; 90 = 0x5a
        pytest.param(abi.SIOCSIFVNET, 0xC020695A, id="SIOCSIFVNET"),
        # _IOWR('i', 91, struct ifreq) "reclaim vnet IF", sockio.h@039ea811 line 111
        pytest.param(abi.SIOCSIFRVNET, 0xC020695B, id="SIOCSIFRVNET"),
    ],
)
def test_ioctl_numbers_match_sockio_h(value: int, expected: int) -> None:
    assert value == expected


def test_vnet_ifreq_bytes_carry_name_and_jid() -> None:
    # ifr_jid is `int ifru_jid` in the union (sys/net/if.h, "#define ifr_jid ifr_ifru.ifru_jid"),
    # so it sits at offset 16, little-endian on amd64.
    expected = b"em1".ljust(16, b"\0") + struct.pack("<i", 7) + bytes(12)
    assert bytes(abi.ifreq_jid("em1", 7)) == expected


def test_flags_ifreq_splits_low_and_high_halves() -> None:
    # ifr_flags = ifru_flags[0] (low 16 bits), ifr_flagshigh = ifru_flags[1] (sys/net/if.h)
    req = abi.ifreq_flags("ng0_web", 0x00028843)
    raw = bytes(req)
    assert raw[:16] == b"ng0_web".ljust(16, b"\0")
    assert struct.unpack_from("<HH", raw, 16) == (0x8843, 0x0002)
    assert abi.ifreq_get_flags(req) == 0x00028843


def test_rename_ifreq_points_ifr_data_at_new_name() -> None:
    # SIOCSIFNAME copies the new name with copyinstr(ifr_data, ..., IFNAMSIZ) (sys/net/if.c),
    # as ifconfig(8)'s setifname sets ifr.ifr_data = newname.
    buf = abi.new_name_buffer("ng0_web")
    req = abi.ifreq_rename("ngeth0", buf)
    pointer = struct.unpack_from("<Q", bytes(req), 16)[0]
    assert pointer == ctypes.addressof(buf)
    assert ctypes.string_at(pointer, abi.IFNAMSIZ) == b"ng0_web".ljust(16, b"\0")


@pytest.mark.parametrize("bad", ["", "a" * 16, "em0/1", "em 0", "é0"])
def test_bad_interface_names_are_refused(bad: str) -> None:
    # IFNAMSIZ (16) counts the NUL: 15 characters at most (sys/net/if.h)
    code = errno.ENAMETOOLONG if len(bad) > 15 else errno.EINVAL
    with pytest.raises(OSError, check=lambda exc: exc.errno == code):
        abi.ifreq(bad)


def test_fifteen_character_name_fits() -> None:
    assert bytes(abi.ifreq("a" * 15))[:16] == b"a" * 15 + b"\0"


def test_jail_flags_match_jail_h() -> None:
    # sys/sys/jail.h@01623a5d lines 104-107
    assert (abi.JAIL_CREATE, abi.JAIL_UPDATE, abi.JAIL_ATTACH, abi.JAIL_DYING) == (1, 2, 4, 8)


def test_sizeof_iovec_is_16() -> None:
    # struct iovec { void *iov_base; size_t iov_len; } (sys/sys/_iovec.h)
    assert ctypes.sizeof(abi.Iovec) == 16
    assert abi.Iovec.iov_len.offset == 8


def test_jail_get_iovecs_for_a_lastjid_walk() -> None:
    # jail_get(2)/jail_set(2): name/value pairs, names NUL-terminated with the NUL counted,
    # int parameters sizeof(int), "name" a MAXHOSTNAMELEN (256, sys/sys/param.h) buffer,
    # "errmsg" a JAIL_ERRMSGLEN (1024, lib/libjail/jail.h) buffer.
    query = abi.JailQuery(lastjid=3)
    pairs = query.pairs()
    assert [name for name, _ in pairs] == [
        b"lastjid\0",
        b"jid\0",
        b"name\0",
        b"dying\0",
        b"errmsg\0",
    ]
    assert pairs[0][1] == struct.pack("<i", 3)
    assert [len(value) for _, value in pairs] == [4, 4, 256, 4, 1024]
    assert query.niov == 10


def test_jail_get_iovecs_by_name() -> None:
    pairs = abi.JailQuery(name="web").pairs()
    assert [name for name, _ in pairs] == [b"name\0", b"dying\0", b"errmsg\0"]
    assert pairs[0][1] == b"web".ljust(256, b"\0")


def test_jail_query_needs_exactly_one_key() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        abi.JailQuery(jid=1, name="web")


def test_jail_errmsg_becomes_the_oserror_text() -> None:
    query = abi.JailQuery(jid=9)
    query.errmsg.value = b"jail 9 not found"
    err = query.error(2)
    assert isinstance(err, FileNotFoundError)
    assert err.strerror == "jail 9 not found"


def test_sockaddr_dl_and_ifaddrs_layouts() -> None:
    # struct sockaddr_dl: 8 bytes of header + sdl_data[46] (sys/net/if_dl.h@d28066d8)
    assert ctypes.sizeof(abi.SockaddrDl) == 54
    assert abi.SockaddrDl.sdl_data.offset == 8
    # struct ifaddrs: next, name, u_int flags (padded), addr, netmask, dstaddr, data
    # (include/ifaddrs.h@ba94d0ce): 7 pointer-sized slots on amd64
    assert ctypes.sizeof(abi.Ifaddrs) == 56
    assert abi.Ifaddrs.ifa_addr.offset == 24


def test_link_address_reads_mac_after_the_name() -> None:
    # AF_LINK is 18 (sys/sys/socket.h); sdl_data holds the name (sdl_nlen) then the address.
    sdl = bytes([20, 18]) + struct.pack("<H", 2) + bytes([6, 3, 6, 0])
    sdl += b"em0" + bytes.fromhex("0200271b1e18") + bytes(3)
    assert abi.link_address(sdl) == "02:00:27:1b:1e:18"


def test_link_address_without_mac_is_none() -> None:
    sdl = bytes([16, 18, 1, 0, 24, 3, 0, 0]) + b"lo0" + bytes(5)
    assert abi.link_address(sdl) is None


def test_link_address_refuses_other_families() -> None:
    with pytest.raises(ValueError, match="AF_LINK"):
        abi.link_address(bytes([16, 2]) + bytes(14))


def test_netgraph_modules_load_netgraph_first() -> None:
    assert abi.NETGRAPH_MODULES[0] == "netgraph"
    assert set(abi.NETGRAPH_MODULES) == {
        "netgraph",
        "ng_socket",
        "ng_ether",
        "ng_bridge",
        "ng_eiface",
    }


def _sin6(address: bytes) -> bytes:
    return bytes([28, abi.AF_INET6]) + bytes(6) + address + bytes(4)


def test_inet_address_of_other_families_is_none() -> None:
    assert abi.inet_address(bytes([16, abi.AF_LINK]) + bytes(14), None) is None


def test_inet_address_refuses_a_truncated_sockaddr() -> None:
    with pytest.raises(ValueError, match="truncated"):
        abi.inet_address(bytes([6, abi.AF_INET, 0, 0, 192, 0]), None)


def test_inet_address_clears_an_embedded_zone_only_where_kame_puts_one() -> None:
    # sys/netinet6/scope6.c: link-local unicast and link/interface-local multicast carry it.
    for scoped in ("fe80::1", "ff02::1", "ff01::1"):
        raw = bytearray(socket.inet_pton(socket.AF_INET6, scoped))
        raw[2:4] = b"\x00\x05"
        assert abi.inet_address(_sin6(bytes(raw)), None) == f"{scoped}/128"
    site = socket.inet_pton(socket.AF_INET6, "ff05:5::1")  # site-local multicast: no zone
    assert abi.inet_address(_sin6(site), None) == "ff05:5::1/128"
