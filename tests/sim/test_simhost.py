"""The sim host process through its RPC and the sim Platform: jails, vnet moves, dying jails,
faults, exec scripting, bridged ifnets. Assertions are on what the host reports and on errnos."""

from __future__ import annotations

import errno
import os
import signal
import time
from typing import TYPE_CHECKING

import pytest
import trio

from vimaged import platforms
from vimaged.platforms import JailSpec
from vimaged.platforms.sim import SimPlatform

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable
    from pathlib import Path

    from tests.sim.conftest import SimHostHandle
    from vimaged.simhost import rpc

pytestmark = pytest.mark.sim


@pytest.fixture
async def plat(sim_host: SimHostHandle, tmp_path: Path) -> AsyncIterator[SimPlatform]:
    platform = platforms.load("sim", sim_host=sim_host.socket_path, state_dir=str(tmp_path))
    assert isinstance(platform, SimPlatform)
    try:
        yield platform
    finally:
        await platform.aclose()


async def errno_of(call: Awaitable[object]) -> int:
    """The errno ``call`` fails with; the test fails if it succeeds."""
    try:
        await call
    except OSError as exc:
        return exc.errno or 0
    pytest.fail("expected an OSError")


def spec(name: str) -> JailSpec:
    return JailSpec(name=name, hostname=f"{name}.example")


def ether_nodes(sim_host: SimHostHandle) -> dict[str, rpc.NgNodeRecord]:
    return {n.name: n for n in sim_host.ng_nodes() if n.type == "ether"}


async def test_jids_count_up_and_names_are_unique(plat: SimPlatform) -> None:
    assert await plat.create_jail(spec("web")) == 1
    assert await plat.create_jail(spec("db")) == 2
    with pytest.raises(FileExistsError):
        await plat.create_jail(spec("web"))
    await plat.remove_jail(1)
    # get_next_prid continues from lastprid: a freed jid is not reused at once.
    assert await plat.create_jail(spec("web")) == 3
    assert [(j.jid, j.name, j.dying) for j in await plat.list_jails()] == [
        (2, "db", False),
        (3, "web", False),
    ]


async def test_numeric_jail_name_is_the_jid_or_einval(plat: SimPlatform) -> None:
    # kern_jail.c@002c06d2 kern_jail_set: an all-digit name is the jid to create.
    assert await plat.create_jail(spec("123")) == 123
    assert await errno_of(plat.create_jail(spec("0123"))) == errno.EINVAL


async def test_move_and_reclaim_nic(plat: SimPlatform, sim_host: SimHostHandle) -> None:
    jid = await plat.create_jail(spec("web"))
    await plat.set_ifnet_up("em1")
    await plat.move_ifnet("em1", jid)
    assert sim_host.vnet_of("em1") == jid
    assert "em1" not in ether_nodes(sim_host)  # ng_ether lives in the vnet it is in
    inside = {i.name: i for i in await plat.list_ifnets(jid)}
    assert set(inside) == {"em1", "lo0"}
    # The kernel's if_vmove brings it down (if.c@d87a5f2a if_detach_internal → if_down);
    # move_ifnet raises it again inside the jail, as the freebsd platform does.
    assert inside["em1"].up
    assert await plat.locate_ifnet("em1") != 0
    await plat.reclaim_ifnet("em1", jid)
    assert await plat.locate_ifnet("em1") == 0
    assert "em1" in ether_nodes(sim_host)
    home = {i.name: i for i in await plat.list_ifnets()}
    assert not home["em1"].up  # SIOCSIFRVNET: home down, nobody raises it again


@pytest.mark.parametrize(
    ("ifname", "target", "expected"),
    [
        ("em9", "vnet", errno.ENXIO),  # no such ifnet on the host
        ("em1", "nojail", errno.ENXIO),  # prison_find_child fails
        ("em1", "novnet", errno.EEXIST),  # pr_vnet == if_vnet
        ("lo0", "vnet", errno.EEXIST),  # the jail has its own lo0
    ],
)
async def test_move_errnos(
    plat: SimPlatform, sim_host: SimHostHandle, ifname: str, target: str, expected: int
) -> None:
    jids = {"vnet": sim_host.create_jail("web"), "novnet": sim_host.create_jail("ip", vnet=False)}
    jids["nojail"] = 77
    assert await errno_of(plat.move_ifnet(ifname, jids[target])) == expected
    assert sim_host.vnet_of("em1") == 0


async def test_reclaim_errnos(plat: SimPlatform, sim_host: SimHostHandle) -> None:
    web = sim_host.create_jail("web")
    db = sim_host.create_jail("db")
    await plat.move_ifnet("em1", web)
    for ifname, jid, expected in [
        ("em1", db, errno.ENXIO),  # not in that jail's vnet
        ("em0", web, errno.ENXIO),
        ("em1", 99, errno.ENXIO),  # no such jail
    ]:
        assert await errno_of(plat.reclaim_ifnet(ifname, jid)) == expected
    assert sim_host.vnet_of("em1") == web


async def test_rename_errnos(plat: SimPlatform, sim_host: SimHostHandle) -> None:
    with pytest.raises(FileExistsError):
        await plat.rename_ifnet("em0", "em1")
    # 16 characters, as in the field survey's problem 7: "File name too long".
    assert await errno_of(plat.rename_ifnet("em0", "e11a_bridgenomac")) == errno.ENAMETOOLONG
    await plat.rename_ifnet("em0", "lan0")
    assert sim_host.vnet_of("lan0") == 0
    assert sim_host.vnet_of("em0") is None
    assert "lan0" in ether_nodes(sim_host)


async def test_removed_jail_returns_its_nics(plat: SimPlatform, sim_host: SimHostHandle) -> None:
    jid = await plat.create_jail(spec("web"))
    await plat.move_ifnet("em1", jid)
    await plat.remove_jail(jid)
    assert sim_host.vnet_of("em1") == 0
    assert sim_host.jails() == []
    assert "em1" in ether_nodes(sim_host)  # re-attached on return


async def test_dying_jail_keeps_nic_until_gone(plat: SimPlatform, sim_host: SimHostHandle) -> None:
    sim_host.set_faults("dying=0.4")
    jid = await plat.create_jail(spec("web"))
    await plat.move_ifnet("em1", jid)
    await plat.remove_jail(jid)
    assert [(j.jid, j.dying) for j in await plat.list_jails()] == [(jid, True)]
    assert sim_host.vnet_of("em1") == jid
    # Like the freebsd platform, which must jail_attach to look inside: not visible.
    assert await plat.locate_ifnet("em1") is None
    assert await errno_of(plat.list_ifnets(jid)) == errno.EINVAL
    await plat.remove_jail(jid)  # jail_remove of a dying jail: silently accepted
    # jail_attach refuses a dying jail.
    assert await errno_of(plat.exec_in_jail(jid, "true")) == errno.EINVAL
    await trio.sleep(0.5)
    assert await plat.list_jails() == []
    assert await plat.locate_ifnet("em1") == 0


async def test_reclaim_from_dying_jail_works(plat: SimPlatform, sim_host: SimHostHandle) -> None:
    sim_host.set_faults("dying=30")
    jid = await plat.create_jail(spec("web"))
    await plat.move_ifnet("em1", jid)
    await plat.remove_jail(jid)
    await plat.reclaim_ifnet("em1", jid)  # prison_find_child still finds a dying prison
    assert await plat.locate_ifnet("em1") == 0


async def test_reclaim_fails_transiently(plat: SimPlatform, sim_host: SimHostHandle) -> None:
    jid = await plat.create_jail(spec("web"))
    await plat.move_ifnet("em1", jid)
    sim_host.set_faults("reclaim_fail=2")
    for _ in range(2):
        assert await errno_of(plat.reclaim_ifnet("em1", jid)) == errno.EBUSY
        assert await plat.locate_ifnet("em1") == jid
    await plat.reclaim_ifnet("em1", jid)
    assert await plat.locate_ifnet("em1") == 0


async def test_jail_vanishes_under_the_daemon(plat: SimPlatform, sim_host: SimHostHandle) -> None:
    sim_host.set_faults("dying=30")
    jid = await plat.create_jail(spec("web"))
    await plat.move_ifnet("em1", jid)
    assert sim_host.kill_jail("web") == jid
    assert [(j.name, j.dying) for j in sim_host.jails()] == [("web", True)]
    assert sim_host.vnet_of("em1") == jid


async def test_vanish_fault_from_spec(plat: SimPlatform, sim_host: SimHostHandle) -> None:
    sim_host.set_faults("vanish=web@0.2")
    jid = await plat.create_jail(spec("web"))
    assert [j.jid for j in await plat.list_jails()] == [jid]
    await trio.sleep(0.3)
    assert await plat.list_jails() == []


async def test_exec_scripting_and_log(plat: SimPlatform, sim_host: SimHostHandle) -> None:
    jid = await plat.create_jail(spec("web"))
    sim_host.script_exec("web", "service nginx", status=3)
    assert await plat.exec_in_jail(jid, "service nginx start") == 3
    assert await plat.exec_in_jail(jid, "true") == 0
    log = sim_host.exec_log()
    assert [(e.jid, e.jail, e.command, e.outcome, e.status) for e in log] == [
        (jid, "web", "service nginx start", "exited", 3),
        (jid, "web", "true", "exited", 0),
    ]
    assert await errno_of(plat.exec_in_jail(99, "true")) == errno.EINVAL


async def test_scripted_duration(plat: SimPlatform, sim_host: SimHostHandle) -> None:
    jid = await plat.create_jail(spec("web"))
    sim_host.script_exec("*", "slow", status=0, duration=0.3)
    started = time.monotonic()
    assert await plat.exec_in_jail(jid, "slow thing") == 0
    assert time.monotonic() - started >= 0.3


async def test_cancelled_exec_is_killed(plat: SimPlatform, sim_host: SimHostHandle) -> None:
    jid = await plat.create_jail(spec("web"))
    sim_host.script_exec("web", "hang", duration=30)
    with trio.move_on_after(0.2):
        await plat.exec_in_jail(jid, "hang forever")
    for _ in range(50):
        if sim_host.exec_log()[0].outcome != "running":
            break
        await trio.sleep(0.02)
    assert [(e.outcome, e.status) for e in sim_host.exec_log()] == [("killed", 137)]


async def test_jail_removal_kills_its_commands(plat: SimPlatform, sim_host: SimHostHandle) -> None:
    jid = await plat.create_jail(spec("web"))
    sim_host.script_exec("web", "", duration=30)
    statuses: list[int] = []

    async def run() -> None:
        statuses.append(await plat.exec_in_jail(jid, "daemon"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.sleep(0.1)
        sim_host.kill_jail("web")
    assert statuses == [137]


async def test_host_uuid_is_stable_and_settable(plat: SimPlatform, sim_host: SimHostHandle) -> None:
    first = await plat.host_uuid()
    assert first == sim_host.host_uuid() == await plat.host_uuid()
    sim_host.set_host_uuid("0b0e5f8a-8d0c-4b1e-9f2a-6a1c2d3e4f50")
    assert await plat.host_uuid() == "0b0e5f8a-8d0c-4b1e-9f2a-6a1c2d3e4f50"
    sim_host.reset()
    assert await plat.host_uuid() == first  # the instance's own UUID, whatever tests set


async def test_bridged_ifnet_lifecycle(plat: SimPlatform, sim_host: SimHostHandle) -> None:
    jid = await plat.create_jail(spec("web"))
    await plat.create_bridged_ifnet("em0", "ng0_web", "02:00:27:e7:1b:18")
    host = {i.name: i for i in await plat.list_ifnets()}
    assert host["ng0_web"].mac == "02:00:27:e7:1b:18"
    assert host["ng0_web"].up
    assert ether_nodes(sim_host)["em0"].state["promisc"] is True
    await plat.move_ifnet("ng0_web", jid)
    assert [(b.name, b.parent) for b in await plat.list_bridged_ifnets()] == [("ng0_web", "em0")]
    assert await plat.locate_ifnet("ng0_web") == jid
    # destroyed inside the jail; its bridge goes with it, the last one on em0
    assert await plat.destroy_bridged_ifnet("ng0_web") == "em0"
    assert sim_host.vnet_of("ng0_web") is None
    em0 = ether_nodes(sim_host)["em0"]
    assert (em0.state["promisc"], em0.state["autosrc"], em0.hooks) == (False, True, [])


async def test_eiface_in_dying_jail_returns_home(
    plat: SimPlatform, sim_host: SimHostHandle
) -> None:
    sim_host.set_faults("dying=0.2")
    jid = await plat.create_jail(spec("web"))
    await plat.create_bridged_ifnet("em0", "ng0_web", "02:00:00:00:00:01")
    await plat.move_ifnet("ng0_web", jid)
    await plat.remove_jail(jid)
    assert sim_host.vnet_of("ng0_web") == jid
    await trio.sleep(0.3)
    assert sim_host.vnet_of("ng0_web") == 0  # vnet_if_return


async def test_bad_fault_spec_is_refused(sim_host: SimHostHandle) -> None:
    with pytest.raises(OSError, match="bogus") as info:
        sim_host.set_faults("dying=1 bogus=2")
    assert info.value.errno == errno.EINVAL


async def test_platform_starts_a_detached_host(tmp_path: Path) -> None:
    platform = platforms.load("sim", state_dir=str(tmp_path), sim_nics="em0 fxp0")
    assert isinstance(platform, SimPlatform)
    try:
        await platform.preflight()
        assert platform.spawned_pid is not None
        assert {i.name for i in await platform.list_ifnets()} == {"em0", "fxp0", "lo0"}
        await platform.aclose()
        # A second platform finds the live host instead of starting another.
        again = platforms.load("sim", state_dir=str(tmp_path))
        assert isinstance(again, SimPlatform)
        await again.preflight()
        assert again.spawned_pid is None
        await again.aclose()
    finally:
        if platform.spawned_pid is not None:
            os.kill(platform.spawned_pid, signal.SIGTERM)
            await trio.to_thread.run_sync(os.waitpid, platform.spawned_pid, 0)
    assert not (tmp_path / "sim.sock").exists()


def test_unknown_option_is_refused() -> None:
    with pytest.raises(ValueError, match="sim_nic"):
        platforms.load("sim", sim_nic="em0")
