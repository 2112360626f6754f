"""FreeBSD tier: jail_inet's child sets MTU, addresses and routes inside a real VNET jail.

An epair(4) end stands in for the eiface (the same ioctls and routing messages apply to any
ifnet). Skipped elsewhere with the reason tests/conftest.py gives.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

import pytest
import trio

from vimaged.platforms import JailSpec, freebsd, jail_inet

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.freebsd


@pytest.fixture
async def jid(plat: freebsd.FreeBSDPlatform) -> AsyncIterator[int]:
    new = await plat.create_jail(JailSpec(name="vimgtestinet", hostname="vimgtestinet"))
    try:
        yield new
    finally:
        await trio.run_process(["jail", "-R", str(new)], check=False, capture_stderr=True)


async def test_mtu_addresses_and_routes_are_set_inside(
    plat: freebsd.FreeBSDPlatform, jid: int, epair: str
) -> None:
    end = epair[:-1] + "b"
    await plat.move_ifnet(end, jid)
    try:
        inet = jail_inet.plan(
            end, 1400, ["192.0.2.10/24", "2001:db8::10/64"],
            [("0.0.0.0/0", "192.0.2.1"), ("::/0", "2001:db8::1"), ("198.51.100.0/24", None)],
        )  # fmt: skip
        await plat.configure_in_jail(jid, inet)
        [info] = [i for i in await plat.list_ifnets(jid) if i.name == end]
        assert info.mtu == 1400
        assert {"192.0.2.10/24", "2001:db8::10/64"} <= set(info.addresses)
        # The test jail's root is the host's: its netstat is the host's own.
        done = await trio.run_process(["jexec", str(jid), "netstat", "-rn"], capture_stdout=True)
        routes = done.stdout.decode().split("\n")
        assert any(r.split()[:2] == ["default", "192.0.2.1"] for r in routes if r.strip())
        assert any(r.split()[:2] == ["default", "2001:db8::1"] for r in routes if r.strip())
        assert any(r.split()[0] == "198.51.100.0/24" for r in routes if r.strip())

        # CNI CHECK's view: sysctl NET_RT_DUMP in the jail, routes through ``end`` only.
        seen = await plat.inspect_in_jail(jid, end)
        assert seen is not None
        assert seen.name == end
        assert {
            ("0.0.0.0/0", "192.0.2.1"), ("::/0", "2001:db8::1"), ("198.51.100.0/24", None),
            ("192.0.2.0/24", None),  # the connected prefix, link#N
        } <= set(seen.routes)  # fmt: skip
        lo0 = await plat.inspect_in_jail(jid, "lo0")  # in every vnet; the default is not its
        assert lo0 is not None
        assert ("0.0.0.0/0", "192.0.2.1") not in lo0.routes
        assert await plat.inspect_in_jail(jid, "nosuch0") is None

        offlink = jail_inet.plan(end, None, [], [("10.0.0.0/8", "203.0.113.1")])
        with pytest.raises(OSError, check=lambda exc: exc.errno == errno.ENETUNREACH):
            await plat.configure_in_jail(jid, offlink)
    finally:
        await plat.reclaim_ifnet(end, jid)
