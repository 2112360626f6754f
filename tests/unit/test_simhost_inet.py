"""Unit tier: the sim host's layer 3 (vimaged.simhost.inet), as FreeBSD's kernel checks it."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

import pytest

from vimaged.simhost.host import SimHost

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.unit


def jailed_eiface() -> tuple[SimHost, int]:
    host = SimHost()
    jid = host.create_jail("ctr1")
    eiface = host.attach_eiface()
    host.rename_ifnet(eiface.name, "eth0")
    host.move_ifnet("eth0", jid)
    return host, jid


def errno_of(call: Callable[..., object], *args: object) -> int | None:
    try:
        call(*args)
    except OSError as exc:
        return exc.errno
    return None


def test_addresses_and_routes_are_set_in_the_jail_vnet_only() -> None:
    host, jid = jailed_eiface()
    host.set_mtu(jid, "eth0", 1400)
    host.add_address(jid, "eth0", "192.0.2.10/24")
    host.add_address(jid, "eth0", "2001:db8::10/64")
    host.add_route(jid, "0.0.0.0/0", "192.0.2.1", None)
    host.add_route(jid, "::/0", "2001:db8::1", None)
    [eth0] = [i for i in host.list_ifnets(jid) if i.name == "eth0"]
    assert (eth0.mtu, eth0.addresses) == (1400, ["192.0.2.10/24", "2001:db8::10/64"])
    assert [(r.dst, r.gateway) for r in host.list_routes(jid)] == [
        ("0.0.0.0/0", "192.0.2.1"), ("::/0", "2001:db8::1"),
    ]  # fmt: skip
    assert host.list_routes(0) == []
    assert errno_of(host.add_address, 0, "eth0", "192.0.2.11/24") == errno.ENXIO  # not on host


def test_the_kernel_refusals() -> None:
    host, jid = jailed_eiface()
    assert errno_of(host.set_mtu, jid, "eth0", 71) == errno.EINVAL  # IF_MINMTU
    assert errno_of(host.set_mtu, jid, "eth0", 9019) == errno.EINVAL  # ng_eiface's maximum
    assert errno_of(host.set_mtu, jid, "em0", 1500) == errno.ENXIO
    assert errno_of(host.add_route, jid, "0.0.0.0/0", "192.0.2.1", None) == errno.ENETUNREACH
    host.add_address(jid, "eth0", "192.0.2.10/24")
    host.add_route(jid, "0.0.0.0/0", "192.0.2.1", None)
    assert errno_of(host.add_route, jid, "0.0.0.0/0", "192.0.2.1", None) == errno.EEXIST
    host.add_route(jid, "203.0.113.0/24", None, "eth0")  # on-link: its gateway is reachable
    host.add_route(jid, "198.51.100.0/24", "203.0.113.1", None)
    assert errno_of(host.add_address, 999, "eth0", "192.0.2.11/24") == errno.EINVAL


def test_an_address_given_again_changes_its_prefix() -> None:
    host, jid = jailed_eiface()
    host.add_address(jid, "eth0", "192.0.2.10/24")
    host.add_address(jid, "eth0", "192.0.2.10/25")
    [eth0] = [i for i in host.list_ifnets(jid) if i.name == "eth0"]
    assert eth0.addresses == ["192.0.2.10/25"]


@pytest.mark.parametrize("how", ["destroy", "reclaim", "remove_jail"])
def test_leaving_the_vnet_takes_addresses_and_routes(how: str) -> None:
    host, jid = jailed_eiface()
    host.add_address(jid, "eth0", "192.0.2.10/24")
    host.add_route(jid, "0.0.0.0/0", "192.0.2.1", None)
    [eth0] = [i for i in host.ifnets if i.name == "eth0"]
    if how == "destroy":
        host.detach_eiface(eth0)
    elif how == "reclaim":
        host.reclaim_ifnet("eth0", jid)
    else:
        host.remove_jail(jid)
    assert eth0.addresses == []
    assert host.routes == []
