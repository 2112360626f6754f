"""Unit tier: rtnetlink RTNLGRP_LINK messages as interface events (linux_ifwatch.link_events).

The messages are built with linux_netlink's codec in the layouts of <linux/netlink.h> and
<linux/rtnetlink.h>: an ``nlmsghdr``, an ``ifinfomsg`` and an ``IFLA_IFNAME`` attribute.
"""

from __future__ import annotations

import pytest

from vimaged.platforms import linux_netlink as nl
from vimaged.platforms.ifnet_events import LOST, IfnetEvent
from vimaged.platforms.linux_ifwatch import link_events

pytestmark = pytest.mark.unit


def message(kind: int, index: int, name: str, flags: int = 0) -> bytes:
    body = nl.ifinfo(index, flags) + nl.attr(nl.IFLA_IFNAME, nl.cstr(name))
    raw = nl.NLMSGHDR.pack(nl.NLMSGHDR.size + len(body), kind, 0, 0, 0) + body
    return raw + b"\0" * (-len(raw) % 4)


def test_new_link_is_an_attach_and_a_flag_change_is_nothing() -> None:
    names = {1: "lo"}
    assert link_events(message(nl.RTM_NEWLINK, 7, "eth1"), names) == [
        IfnetEvent(kind="attach", name="eth1")
    ]
    assert names == {1: "lo", 7: "eth1"}
    assert link_events(message(nl.RTM_NEWLINK, 7, "eth1", flags=nl.IFF_UP), names) == []


def test_a_new_name_on_a_known_index_is_a_rename() -> None:
    names = {7: "eth1"}
    assert link_events(message(nl.RTM_NEWLINK, 7, "lan0"), names) == [
        IfnetEvent(kind="rename", name="eth1", newname="lan0")
    ]
    assert names == {7: "lan0"}


def test_del_link_is_a_detach_under_the_known_name() -> None:
    names = {7: "lan0"}
    assert link_events(message(nl.RTM_DELLINK, 7, "lan0"), names) == [
        IfnetEvent(kind="detach", name="lan0")
    ]
    assert names == {}


def test_several_messages_in_one_datagram_and_others_skipped() -> None:
    names: dict[int, str] = {}
    data = (
        message(nl.RTM_NEWLINK, 3, "veth0")
        + message(nl.RTM_NEWADDR, 3, "veth0")
        + message(nl.RTM_DELLINK, 3, "veth0")
    )
    assert link_events(data, names) == [
        IfnetEvent(kind="attach", name="veth0"),
        IfnetEvent(kind="detach", name="veth0"),
    ]


def test_an_unreadable_name_is_lost_and_truncation_stops() -> None:
    names: dict[int, str] = {}
    assert link_events(message(nl.RTM_NEWLINK, 9, "x" * 20), names) == [LOST]
    assert link_events(message(nl.RTM_NEWLINK, 9, "eth9")[:10], names) == []
