"""Unit tier: the routes of a jail's vnet, read as sysctl NET_RT_DUMP hands them over.

The golden bytes are laid out by hand from sys/net/route.h (``struct rt_msghdr``, 152 bytes on
amd64; RTAX order; SA_SIZE), sys/net/if_dl.h and sys/netinet/in.h, as sysctl_dumpnhop
(sys/net/rtsock.c) writes them. Both sides are held to them: freebsd_routes' reader, and the
sim host's writer (vimaged.simhost.rtsock), which share no code.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import types
from typing import Any

import msgspec
import pytest

from vimaged.platforms import IfnetInfo, _libc, freebsd_ifnet, freebsd_routes, jail_inet
from vimaged.simhost import rtsock
from vimaged.simhost.host import SimHost
from vimaged.simhost.ifnet import Ifnet

pytestmark = pytest.mark.unit

MAC = bytes.fromhex("020000000001")


def header(flags: str, addrs: str, index: str = "0200", msglen: str = "1001") -> str:
    """rtm_msglen 272 (LE), RTM_VERSION 5, RTM_GET 4, rtm_index, spare, flags, addrs, then
    pid, seq, errno, fmask (16 bytes), rtm_inits and rt_metrics (120 bytes), all zero."""
    return msglen + "0504" + index + "0000" + flags + addrs + "00" * 16 + "00" * 120


SIN_ANY = "1002000000000000" + "00" * 8  # sockaddr_in 0.0.0.0
SIN_GW = "10020000c0000201" + "00" * 8  # 192.0.2.1
SIN_NET = "10020000c6336400" + "00" * 8  # 198.51.100.0
SIN_MASK24 = "10020000ffffff00" + "00" * 8
SIN_IFA = "10020000c000020a" + "00" * 8  # 192.0.2.10, the interface's address
# sockaddr_dl of eth0 (if_addr): len 54, AF_LINK 18, index 2, IFT_ETHER, nlen 4, alen 6,
# slen 0, "eth0" + MAC in sdl_data[46]; SA_SIZE pads it to 56
SDL_IFP = "3612020006040600" + b"eth0".hex() + MAC.hex() + "00" * 36 + "0000"
# sockaddr_dl_short (nhop_ctl.c's link gateway): len 16, AF_LINK, index 2, IFT_ETHER
SDL_GW = "1012020006000000" + "00" * 8

DEFAULT_VIA = header("03080000", "37000000") + SIN_ANY + SIN_GW + SIN_ANY + SDL_IFP + SIN_IFA
"""``default 192.0.2.1 UGS eth0``: RTF_UP|RTF_GATEWAY|RTF_STATIC; DST GATEWAY NETMASK IFP IFA."""
ONLINK = header("01080000", "37000000") + SIN_NET + SDL_GW + SIN_MASK24 + SDL_IFP + SIN_IFA
"""``198.51.100.0/24 link#2 US eth0``: an on-link static route."""
# in6: sockaddr_in6 (28 bytes, SA_SIZE 32): ::/0 via fe80::1 whose scope rtsock_msg_buffer
# recovered into sin6_scope_id (2), mask :: ; index 2; no IFA; msglen 152 + 3 * 32 + 56 = 304
SIN6_ANY = "1c1c000000000000" + "00" * 16 + "00000000" + "00" * 4
SIN6_LL = "1c1c000000000000fe80" + "00" * 13 + "01" + "02000000" + "00" * 4
DEFAULT6_VIA = header("03080000", "17000000", msglen="3001") + SIN6_ANY + SIN6_LL + SIN6_ANY
DEFAULT6_VIA += SDL_IFP


def golden(*hexes: str) -> bytes:
    return bytes.fromhex("".join(hexes))


def test_the_golden_messages_are_as_long_as_they_say() -> None:
    assert len(golden(DEFAULT_VIA)) == len(golden(ONLINK)) == 272
    assert len(golden(DEFAULT6_VIA)) == 304
    assert ctypes.sizeof(jail_inet.RtMsghdr) == 152


def test_a_dump_is_read_into_index_destination_and_gateway() -> None:
    assert freebsd_routes.parse_rt_dump(golden(DEFAULT_VIA, ONLINK)) == [
        (2, "0.0.0.0/0", "192.0.2.1"),
        (2, "198.51.100.0/24", None),
    ]


def test_an_ipv6_gateway_loses_its_recovered_scope() -> None:
    assert freebsd_routes.parse_rt_dump(golden(DEFAULT6_VIA)) == [(2, "::/0", "fe80::1")]


def test_a_host_route_and_a_shortened_netmask() -> None:
    host = header("05080000", "13000000") + SIN_GW + SDL_GW + SDL_IFP  # RTF_HOST, no NETMASK
    host = "f000" + host[4:]  # msglen 240
    # An old-style shortened netmask: sa_len 0 takes SA_SIZE's one long and means /0.
    short = header("03080000", "07000000", msglen="c000") + SIN_ANY + SIN_GW + "00" * 8
    assert freebsd_routes.parse_rt_dump(golden(host, short)) == [
        (2, "192.0.2.1/32", None),
        (2, "0.0.0.0/0", "192.0.2.1"),
    ]


def test_a_message_of_another_version_is_skipped_by_its_length() -> None:
    other = golden(ONLINK)
    other = other[:2] + b"\x04" + other[3:]  # rtm_version 4
    assert freebsd_routes.parse_rt_dump(other + golden(DEFAULT_VIA)) == [
        (2, "0.0.0.0/0", "192.0.2.1")
    ]


@pytest.mark.parametrize("cut", [10, 200, 271], ids=["header", "body", "last-byte"])
def test_a_truncated_dump_is_eio(cut: int) -> None:
    with pytest.raises(OSError, check=lambda exc: exc.errno == errno.EIO):
        freebsd_routes.parse_rt_dump(golden(DEFAULT_VIA)[:cut])


def test_the_sim_writes_the_same_bytes() -> None:
    eth0 = Ifnet(name="eth0", kind="eiface", index=2, mac=MAC, addresses=["192.0.2.10/24"])
    static = [("0.0.0.0/0", "192.0.2.1", eth0), ("198.51.100.0/24", None, eth0)]
    assert rtsock.dump(rtsock.AF_INET, [], static[::-1]) == golden(DEFAULT_VIA, ONLINK)
    assert rtsock.dump(rtsock.AF_INET6, [], static) == b""


def test_the_sim_dump_of_a_jail_holds_its_connected_prefix_and_routes() -> None:
    host = SimHost()
    jid = host.create_jail("ctr1")
    eiface = host.attach_eiface()
    host.rename_ifnet(eiface.name, "eth0")
    host.move_ifnet("eth0", jid)
    host.add_address(jid, "eth0", "192.0.2.10/24")
    host.add_route(jid, "0.0.0.0/0", "192.0.2.1", None)
    index = host.find_ifnet("eth0", jid).index  # type: ignore[union-attr]  # it is there
    routes = freebsd_routes.parse_rt_dump(host.rt_dump(jid, rtsock.AF_INET))
    assert routes == [(index, "0.0.0.0/0", "192.0.2.1"), (index, "192.0.2.0/24", None)]
    assert host.rt_dump(0, rtsock.AF_INET) == b""  # the host's vnet has none of them
    host.delete_route(jid, "0.0.0.0/0", "192.0.2.1")
    assert freebsd_routes.parse_rt_dump(host.rt_dump(jid, rtsock.AF_INET)) == routes[1:]
    with pytest.raises(OSError, check=lambda exc: exc.errno == errno.ESRCH):
        host.delete_route(jid, "0.0.0.0/0", None)


# --- the sysctl, recorded ------------------------------------------------------------------


class FakeLibc:
    """sysctl(3) answering NET_RT_DUMP with golden bytes; ENOMEM once if ``grow``."""

    def __init__(self, dumps: dict[int, bytes], grow: bool = False) -> None:
        self.dumps, self.grow = dumps, grow
        self.calls: list[tuple[tuple[int, ...], bool]] = []

    def jail_attach(self, jid: int) -> int:
        self.calls.append(((jid,), False))
        return 0

    def sysctl(self, mib: Any, namelen: int, old: Any, oldlen: Any, new: Any, newlen: int) -> int:
        name = tuple(mib[:namelen])
        self.calls.append((name, old is not None))
        data = self.dumps[name[3]]
        size = oldlen._obj  # the c_size_t behind ctypes.byref
        if old is None:
            size.value = len(data)
            return 0
        if self.grow:
            self.grow = False
            raise OSError(errno.ENOMEM, os.strerror(errno.ENOMEM), "sysctl")
        ctypes.memmove(old, data, len(data))
        size.value = len(data)
        return 0


def test_routes_here_dumps_both_families_and_keeps_the_interfaces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = golden(ONLINK)
    other = other[:4] + b"\x07\x00" + other[6:]  # rtm_index 7: another interface's
    fake = FakeLibc({2: golden(DEFAULT_VIA) + other, 28: golden(DEFAULT6_VIA)}, grow=True)
    monkeypatch.setattr(_libc, "libc", lambda: fake)
    assert freebsd_routes.routes_here(2) == [("0.0.0.0/0", "192.0.2.1"), ("::/0", "fe80::1")]
    inet, inet6 = (4, 17, 0, 2, 1, 0), (4, 17, 0, 28, 1, 0)  # {CTL_NET, PF_ROUTE, 0, AF, ...}
    assert fake.calls == [
        (inet, False), (inet, True), (inet, False), (inet, True),  # ENOMEM: sized again
        (inet6, False), (inet6, True),
    ]  # fmt: skip


def test_the_address_child_given_a_name_reports_it_with_its_routes(
    monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    fake = FakeLibc({2: golden(DEFAULT_VIA, ONLINK), 28: b""})
    monkeypatch.setattr(_libc, "libc", lambda: fake)
    here = [IfnetInfo(name="lo0"), IfnetInfo(name="eth0", mac="02:00:00:00:00:01", up=True)]
    monkeypatch.setattr(freebsd_ifnet, "ifnets_here", lambda: here)
    monkeypatch.setattr(freebsd_ifnet, "socket", types.SimpleNamespace(
        if_nametoindex=lambda name: 2, AF_UNIX=socket.AF_UNIX, SOCK_DGRAM=socket.SOCK_DGRAM,
    ))  # fmt: skip
    assert freebsd_ifnet.report_ifnets_in_jail(7, "eth0") == 0
    assert fake.calls[0] == ((7,), False)  # attached before anything is read
    [info] = msgspec.json.decode(capsysbinary.readouterr().out, type=list[IfnetInfo])
    assert (info.name, info.routes) == (
        "eth0",
        (("0.0.0.0/0", "192.0.2.1"), ("198.51.100.0/24", None)),
    )
    assert freebsd_ifnet.report_ifnets_in_jail(7, "eth9") == 0  # not there: an empty list
    assert msgspec.json.decode(capsysbinary.readouterr().out) == []
