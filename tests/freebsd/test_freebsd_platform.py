"""FreeBSD tier: FreeBSDPlatform against a real VIMAGE kernel (root, netgraph loadable).

Each test cleans up what it made: jails named ``vimgtest*`` and epair(4) interfaces. Skipped
elsewhere with the reason tests/conftest.py gives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio

from vimaged.platforms import HOST_JID, JailSpec, freebsd

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.freebsd


@pytest.fixture
async def jid(plat: freebsd.FreeBSDPlatform) -> AsyncIterator[int]:
    new = await plat.create_jail(JailSpec(name="vimgtest", hostname="vimgtest"))
    try:
        yield new
    finally:
        await trio.run_process(["jail", "-R", str(new)], check=False, capture_stderr=True)


async def test_host_uuid_matches_sysctl(plat: freebsd.FreeBSDPlatform) -> None:
    result = await trio.run_process(["sysctl", "-n", "kern.hostuuid"], capture_stdout=True)
    expected = result.stdout.decode().strip()
    assert await plat.host_uuid() == expected


async def test_created_jail_is_listed_with_its_jid(plat: freebsd.FreeBSDPlatform, jid: int) -> None:
    jails = {jail.jid: jail for jail in await plat.list_jails()}
    assert jails[jid].name == "vimgtest"
    assert not jails[jid].dying


async def test_jls_agrees_with_jail_get(plat: freebsd.FreeBSDPlatform, jid: int) -> None:
    result = await trio.run_process(["jls", "-d", "jid"], capture_stdout=True)
    jls = result.stdout.split()
    assert sorted(int(j) for j in jls) == sorted(jail.jid for jail in await plat.list_jails())


async def test_exec_in_jail_reports_status_and_runs_inside(
    plat: freebsd.FreeBSDPlatform, jid: int
) -> None:
    assert await plat.exec_in_jail(jid, 'test "$(sysctl -n security.jail.jailed)" = 1') == 0
    assert await plat.exec_in_jail(jid, "exit 7") == 7


async def test_move_and_reclaim_an_epair_end(
    plat: freebsd.FreeBSDPlatform, jid: int, epair: str
) -> None:
    end = epair[:-1] + "b"
    assert await plat.locate_ifnet(end) == HOST_JID
    await plat.move_ifnet(end, jid)
    assert await plat.locate_ifnet(end) == jid
    assert end in [ifnet.name for ifnet in await plat.list_ifnets(jid)]
    await plat.reclaim_ifnet(end, jid)
    assert await plat.locate_ifnet(end) == HOST_JID


async def test_rename_and_up_read_back_through_getifaddrs(
    plat: freebsd.FreeBSDPlatform, epair: str
) -> None:
    await plat.rename_ifnet(epair, "vimgtest0")
    try:
        await plat.set_ifnet_up("vimgtest0")
        [info] = [i for i in await plat.list_ifnets() if i.name == "vimgtest0"]
        assert info.up
        assert info.mac is not None
    finally:
        await plat.rename_ifnet("vimgtest0", epair)


async def test_addresses_inside_a_jail_read_back_through_getifaddrs(
    plat: freebsd.FreeBSDPlatform, jid: int, epair: str
) -> None:
    end = epair[:-1] + "b"
    await plat.move_ifnet(end, jid)
    try:
        await trio.run_process(["jexec", str(jid), "ifconfig", end, "inet", "192.0.2.10/24"])
        [info] = [i for i in await plat.list_ifnets(jid) if i.name == end]
        assert "192.0.2.10/24" in info.addresses
    finally:
        await plat.reclaim_ifnet(end, jid)


async def test_create_taken_name_is_eexist(plat: freebsd.FreeBSDPlatform, jid: int) -> None:
    with pytest.raises(FileExistsError):
        await plat.create_jail(JailSpec(name="vimgtest", hostname="x"))


async def test_remove_jail_makes_it_dying_or_gone(plat: freebsd.FreeBSDPlatform) -> None:
    new = await plat.create_jail(JailSpec(name="vimgtest2", hostname="vimgtest2"))
    await plat.remove_jail(new)
    assert all(j.dying for j in await plat.list_jails() if j.jid == new)


async def test_bridged_ifnet_round_trip(plat: freebsd.FreeBSDPlatform, epair: str) -> None:
    await plat.create_bridged_ifnet(epair, "ng0_vimgtest", "02:00:00:00:00:01")
    try:
        names = {ifnet.name: ifnet for ifnet in await plat.list_ifnets()}
        assert names["ng0_vimgtest"].mac == "02:00:00:00:00:01"
        assert [b.name for b in await plat.list_bridged_ifnets()] == ["ng0_vimgtest"]
    finally:
        # the last interface on its bridge: the bridge goes with it
        assert await plat.destroy_bridged_ifnet("ng0_vimgtest") == epair
