"""Unit tier: the bytes jail_inet hands the FreeBSD kernel for a jail's MTU, addresses, routes.

Each value is held to the header it comes from (amd64): sys/sys/sockio.h, sys/netinet/in_var.h,
sys/netinet6/in6_var.h, sys/net/route.h, sys/netgraph/ng_eiface.h.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct
from typing import TYPE_CHECKING

import pytest

from vimaged.platforms import freebsd_abi as abi
from vimaged.platforms import jail_inet

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.unit


def errno_of(call: Callable[..., object], *args: object) -> int | None:
    try:
        call(*args)
    except OSError as exc:
        return exc.errno
    return None


def test_struct_layouts_match_the_headers() -> None:
    assert ctypes.sizeof(jail_inet.SockaddrIn) == 16
    assert ctypes.sizeof(jail_inet.SockaddrIn6) == 28
    assert ctypes.sizeof(jail_inet.InAliasreq) == 68
    assert ctypes.sizeof(jail_inet.In6Aliasreq) == 136
    assert jail_inet.In6Aliasreq.ifra_flags.offset == 100
    assert jail_inet.In6Aliasreq.ifra_lifetime.offset == 104  # time_t aligns it to 8
    assert jail_inet.In6Aliasreq.ifra_vhid.offset == 128
    assert ctypes.sizeof(jail_inet.RtMsghdr) == 152
    assert jail_inet.RtMsghdr.rtm_inits.offset == 32


def test_ioctl_numbers() -> None:
    # _IOW('i', 43, struct in_aliasreq), _IOW('i', 27, struct in6_aliasreq), _IOW('i', 52, ifreq)
    assert jail_inet.SIOCAIFADDR == 0x8044692B
    assert jail_inet.SIOCAIFADDR_IN6 == 0x8088691B
    assert jail_inet.SIOCSIFMTU == 0x80206934


def test_in_aliasreq_of_an_ipv4_address() -> None:
    raw = bytes(jail_inet.in_aliasreq("eth0", "192.0.2.10/24"))
    assert raw[:16] == b"eth0".ljust(16, b"\0")
    assert raw[16:24] == bytes([16, abi.AF_INET, 0, 0, 192, 0, 2, 10])
    assert raw[32:48] == bytes(16)  # broadcast: the kernel derives it
    assert raw[48:56] == bytes([16, abi.AF_INET, 0, 0, 255, 255, 255, 0])
    assert errno_of(jail_inet.in_aliasreq, "eth0", "2001:db8::1/64") == errno.EINVAL


def test_in6_aliasreq_never_expires_and_carries_the_prefix_mask() -> None:
    req = jail_inet.in6_aliasreq("eth0", "2001:db8::10/64")
    raw = bytes(req)
    assert raw[16:18] == bytes([28, abi.AF_INET6])
    assert raw[24:40] == socket.inet_pton(socket.AF_INET6, "2001:db8::10")
    assert raw[72:74] == bytes([28, abi.AF_INET6])
    assert raw[80:96] == b"\xff" * 8 + bytes(8)
    assert struct.unpack_from("<qqII", raw, 104) == (0, 0, 0xFFFFFFFF, 0xFFFFFFFF)


def test_if_data_mtu_reads_ifi_mtu() -> None:
    # struct if_data: ifi_type, physical, addrlen, hdrlen, link_state, vhid, u_short datalen
    if_data = bytes([6, 0, 6, 14, 2, 0]) + struct.pack("<HI", 152, 1400)
    assert abi.if_data_mtu(if_data) == 1400


def test_ifreq_mtu_puts_the_mtu_in_ifr_mtu() -> None:
    raw = bytes(jail_inet.ifreq_mtu("eth0", 1400))
    assert len(raw) == 32
    assert struct.unpack_from("<i", raw, 16) == (1400,)


def _sockaddrs(message: bytes) -> list[bytes]:
    found, at = [], ctypes.sizeof(jail_inet.RtMsghdr)
    while at < len(message):
        length = message[at]
        found.append(message[at : at + length])
        at += jail_inet._sa_size(length)
    return found


def test_rtm_add_of_an_ipv4_default_route() -> None:
    msg = jail_inet.rtm_add("0.0.0.0/0", "192.0.2.1", ifindex=3, seq=7)
    msglen, version, kind = struct.unpack_from("<HBB", msg)
    flags, addrs, _pid, seq = struct.unpack_from("<iiii", msg, 8)
    assert (msglen, version, kind, seq) == (len(msg), 5, jail_inet.RTM_ADD, 7)
    assert flags == jail_inet.RTF_UP | jail_inet.RTF_STATIC | jail_inet.RTF_GATEWAY
    assert addrs == jail_inet.RTA_DST | jail_inet.RTA_GATEWAY | jail_inet.RTA_NETMASK
    dst, gw, mask = _sockaddrs(msg)
    assert (dst[4:8], gw[4:8], mask[4:8]) == (bytes(4), bytes([192, 0, 2, 1]), bytes(4))
    assert len(msg) == 152 + 3 * 16


def test_rtm_add_of_an_on_link_ipv6_route_names_the_interface() -> None:
    msg = jail_inet.rtm_add("2001:db8:1::/48", None, ifindex=3, seq=1)
    flags, addrs = struct.unpack_from("<ii", msg, 8)
    assert not flags & jail_inet.RTF_GATEWAY
    assert addrs == jail_inet.RTA_DST | jail_inet.RTA_GATEWAY | jail_inet.RTA_NETMASK
    dst, sdl, mask = _sockaddrs(msg)
    assert (dst[1], len(dst)) == (abi.AF_INET6, 28)
    assert (sdl[1], struct.unpack_from("<H", sdl, 2)[0]) == (abi.AF_LINK, 3)
    assert mask[8:24] == b"\xff" * 6 + bytes(10)
    assert len(msg) == 152 + 32 + 56 + 32  # SA_SIZE pads each sockaddr to a long


def test_rtm_add_of_a_host_route_has_no_netmask() -> None:
    msg = jail_inet.rtm_add("198.51.100.7/32", "192.0.2.1", ifindex=3, seq=1)
    flags, addrs = struct.unpack_from("<ii", msg, 8)
    assert flags & jail_inet.RTF_HOST
    assert addrs == jail_inet.RTA_DST | jail_inet.RTA_GATEWAY
    assert len(_sockaddrs(msg)) == 2


def test_a_link_local_gateway_carries_its_zone() -> None:
    msg = jail_inet.rtm_add("::/0", "fe80::1", ifindex=5, seq=1)
    _dst, gw, _mask = _sockaddrs(msg)
    assert struct.unpack_from("<I", gw, 24) == (5,)


@pytest.mark.parametrize(("mtu", "ok"), [(None, True), (71, False), (72, True), (1500, True),
                                         (9018, True), (9019, False), (65535, False)])  # fmt: skip
def test_plan_holds_the_mtu_to_the_eiface_bounds(mtu: int | None, ok: bool) -> None:
    if ok:
        assert jail_inet.plan("eth0", mtu, (), ()).mtu == mtu
    else:
        assert errno_of(jail_inet.plan, "eth0", mtu, (), ()) == errno.EINVAL


@pytest.mark.parametrize(
    ("addresses", "routes"),
    [
        (["192.0.2.10"], []),  # no prefix length
        (["192.0.2.300/24"], []),
        ([], [("0.0.0.0/0", "2001:db8::1")]),  # families differ
        ([], [("default", "192.0.2.1")]),
        ([], [("0.0.0.0/0", "gateway")]),
    ],
)
def test_plan_refuses_what_the_kernel_could_not_take(
    addresses: list[str], routes: list[tuple[str, str | None]]
) -> None:
    assert errno_of(jail_inet.plan, "eth0", None, addresses, routes) == errno.EINVAL


def test_plan_puts_on_link_routes_before_gateway_routes() -> None:
    routes = [("0.0.0.0/0", "10.0.0.1"), ("10.0.0.0/24", None), ("::/0", "fe80::1")]
    assert jail_inet.plan("eth0", None, (), routes).routes == (
        ("10.0.0.0/24", None), ("0.0.0.0/0", "10.0.0.1"), ("::/0", "fe80::1"),
    )  # fmt: skip
