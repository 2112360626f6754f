"""The linux platform's RTM_GETROUTE reader against bytes laid out from <linux/rtnetlink.h>:
``struct rtmsg`` (12 bytes) then rtattrs, as ``ip route`` dumps them (rtnetlink(7))."""

from __future__ import annotations

import pytest

from vimaged.platforms import linux_sandbox

pytestmark = pytest.mark.unit

# family 2, dst_len 0, src 0, tos 0, table 254, proto boot, scope universe, RTN_UNICAST, flags 0
# RTA_TABLE 254, RTA_GATEWAY 10.77.0.1, RTA_OIF 3: ``default via 10.77.0.1 dev eth0``
DEFAULT_V4 = "02000000fe030001 00000000 08000f00fe000000 080005000a4d0001 0800040003000000"
# family 10, dst_len 64, table 254, proto kernel, RTA_DST 2001:db8::, RTA_OIF 3, no gateway
ONLINK_V6 = "0a400000fe020001 00000000 1400010020010db8000000000000000000000000 0800040003000000"
# table 255 (local), RTN_LOCAL: ``local 10.77.0.10 dev eth0 table local``
LOCAL_V4 = "02200000ff020002 00000000 080001000a4d000a 0800040003000000"
# table 252 (compat) with RTA_TABLE 1000: another table than main, whatever rtm_table says
OTHER_TABLE = "02000000fc030001 00000000 08000f00e8030000 0800040003000000"
# ``default nexthop via 10.77.0.1 dev eth0 nexthop via 10.77.0.2 dev eth1``: RTA_MULTIPATH (9)
# in place of RTA_OIF, two rtnexthops (len 16, flags, hops, ifindex) each with its RTA_GATEWAY
MULTIPATH = (
    "02000000fe030001 00000000 24000900"
    "1000 00 00 03000000 080005000a4d0001"
    "1000 00 00 07000000 080005000a4d0002"
)


def golden(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def test_a_main_table_route_is_read_with_its_interface_and_gateway() -> None:
    assert linux_sandbox.parse_route(golden(DEFAULT_V4)) == [(3, "0.0.0.0/0", "10.77.0.1")]
    assert linux_sandbox.parse_route(golden(ONLINK_V6)) == [(3, "2001:db8::/64", None)]


def test_a_multipath_route_is_one_route_per_nexthop() -> None:
    assert linux_sandbox.parse_route(golden(MULTIPATH)) == [
        (3, "0.0.0.0/0", "10.77.0.1"),
        (7, "0.0.0.0/0", "10.77.0.2"),
    ]


@pytest.mark.parametrize("text", [LOCAL_V4, OTHER_TABLE], ids=["local", "other-table"])
def test_what_is_no_unicast_route_of_main_is_left_out(text: str) -> None:
    assert linux_sandbox.parse_route(golden(text)) == []


class FakeRtnl:
    """Answers each RTM_GETROUTE dump with the golden replies of its family."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, int, int]] = []

    def request(self, msg_type: int, flags: int, body: bytes, subject: str) -> list[bytes]:
        self.asked.append((msg_type, flags, body[0]))
        via_eth1 = golden(DEFAULT_V4)[:-8] + golden("0800040007000000")  # RTA_OIF 7
        v4 = [golden(DEFAULT_V4), golden(LOCAL_V4), via_eth1, golden(MULTIPATH)]
        return v4 if body[0] == 2 else [golden(ONLINK_V6)]


def test_the_dump_asks_both_families_and_keeps_the_interfaces_routes() -> None:
    rtnl = FakeRtnl()
    routes = linux_sandbox.dump_routes(rtnl, 3)  # type: ignore[arg-type]  # only .request is used
    assert routes == [
        ("0.0.0.0/0", "10.77.0.1"),
        ("0.0.0.0/0", "10.77.0.1"),  # the multipath route's nexthop through it
        ("2001:db8::/64", None),
    ]
    assert rtnl.asked == [(26, 0x300, 2), (26, 0x300, 10)]  # RTM_GETROUTE, NLM_F_DUMP
