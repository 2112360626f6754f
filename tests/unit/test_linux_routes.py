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
# a multipath route: RTA_MULTIPATH (9) in place of RTA_OIF
MULTIPATH = "02000000fe030001 00000000 0c000900080000000300000000000000"


def golden(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def test_a_main_table_route_is_read_with_its_interface_and_gateway() -> None:
    assert linux_sandbox.parse_route(golden(DEFAULT_V4)) == (3, "0.0.0.0/0", "10.77.0.1")
    assert linux_sandbox.parse_route(golden(ONLINK_V6)) == (3, "2001:db8::/64", None)


@pytest.mark.parametrize("text", [LOCAL_V4, OTHER_TABLE, MULTIPATH],
                         ids=["local", "other-table", "multipath"])  # fmt: skip
def test_what_is_no_single_path_unicast_route_of_main_is_left_out(text: str) -> None:
    assert linux_sandbox.parse_route(golden(text)) is None


class FakeRtnl:
    """Answers each RTM_GETROUTE dump with the golden replies of its family."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, int, int]] = []

    def request(self, msg_type: int, flags: int, body: bytes, subject: str) -> list[bytes]:
        self.asked.append((msg_type, flags, body[0]))
        via_eth1 = golden(DEFAULT_V4)[:-8] + golden("0800040007000000")  # RTA_OIF 7
        v4 = [golden(DEFAULT_V4), golden(LOCAL_V4), via_eth1]
        return v4 if body[0] == 2 else [golden(ONLINK_V6)]


def test_the_dump_asks_both_families_and_keeps_the_interfaces_routes() -> None:
    rtnl = FakeRtnl()
    routes = linux_sandbox.dump_routes(rtnl, 3)  # type: ignore[arg-type]  # only .request is used
    assert routes == [("0.0.0.0/0", "10.77.0.1"), ("2001:db8::/64", None)]
    assert rtnl.asked == [(26, 0x300, 2), (26, 0x300, 10)]  # RTM_GETROUTE, NLM_F_DUMP
