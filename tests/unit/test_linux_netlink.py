"""The rtnetlink address messages of the linux platform, byte for byte (tests, unit tier).

Payloads are built here from ``<linux/if_addr.h>`` (``struct ifaddrmsg`` then rtattrs), not
with the module's own packers, so that a layout error cannot hide on both sides.
"""

from __future__ import annotations

import socket
import struct
import sys

import pytest

from vimaged.platforms import linux_netlink as nl

pytestmark = [
    pytest.mark.unit,
    # The linux platform's rtnetlink: Linux address family numbers (socket.AF_PACKET exists
    # only there), and nothing of it runs on FreeBSD.
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="rtnetlink messages exist only on Linux"
    ),
]


def rtattr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + bytes(-length % 4)


def ifaddrmsg(family: int, prefixlen: int, index: int, *attrs: bytes) -> bytes:
    # u8 family, u8 prefixlen, u8 flags, u8 scope, u32 index
    return struct.pack("=BBBBI", family, prefixlen, 0x80, 0, index) + b"".join(attrs)


def test_an_ipv4_address_reads_ifa_local_over_the_peer_address() -> None:
    payload = ifaddrmsg(
        socket.AF_INET,
        32,
        7,
        rtattr(1, socket.inet_aton("198.51.100.2")),  # IFA_ADDRESS: the peer, point-to-point
        rtattr(2, socket.inet_aton("198.51.100.1")),  # IFA_LOCAL: ours
        rtattr(3, b"tun0\0"),  # IFA_LABEL: ignored
    )
    address = nl.parse_address(payload)
    assert address == nl.Address(
        index=7, family=socket.AF_INET, prefixlen=32, address=socket.inet_aton("198.51.100.1")
    )
    assert address is not None
    assert address.text() == "198.51.100.1/32"


def test_an_ipv6_address_has_only_ifa_address() -> None:
    raw = socket.inet_pton(socket.AF_INET6, "2001:db8::10")
    address = nl.parse_address(ifaddrmsg(socket.AF_INET6, 64, 3, rtattr(1, raw)))
    assert address is not None
    assert (address.index, address.text()) == (3, "2001:db8::10/64")


def test_other_families_and_addressless_messages_are_skipped() -> None:
    assert nl.parse_address(ifaddrmsg(socket.AF_PACKET, 0, 1, rtattr(1, bytes(6)))) is None
    assert nl.parse_address(ifaddrmsg(socket.AF_INET, 24, 1)) is None


def test_the_request_header_is_an_empty_ifaddrmsg() -> None:
    assert nl.IFADDRMSG.size == 8
    assert nl.IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) == bytes(8)
