"""Linux tier: bridged interfaces and moved NICs carry real traffic between namespaces."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

import pytest
import trio

from vimaged.platforms import HOST_JID, BridgedIfnet, JailSpec, linux_links

if TYPE_CHECKING:
    from tests.linux.conftest import World
    from vimaged.platforms.linux import LinuxPlatform

pytestmark = pytest.mark.linux

PING = "ping -q -c1 -w5 {}"


async def _bridged_vimage(plat: LinuxPlatform, name: str, parent: str, cidr: str) -> int:
    jid = await plat.create_jail(JailSpec(name=name, hostname=name))
    ifname = f"ng0_{name}"
    await plat.create_bridged_ifnet(parent, ifname, f"02:00:00:00:01:{len(name):02x}")
    await plat.set_ifnet_up(ifname)
    await plat.move_ifnet(ifname, jid)
    assert await plat.exec_in_jail(jid, f"ip addr add {cidr} dev {ifname}") == 0
    return jid


async def test_bridged_vimages_reach_each_other_and_the_lan(
    world: World, plat: LinuxPlatform
) -> None:
    world.add_nic("lan0", "peer0", "10.9.0.1/24")
    world.ip("addr", "add", "10.9.0.254/24", "dev", "lan0", netns=world.host)
    a = await _bridged_vimage(plat, "a", "lan0", "10.9.0.2/24")
    bb = await _bridged_vimage(plat, "bb", "lan0", "10.9.0.3/24")

    assert await plat.exec_in_jail(a, PING.format("10.9.0.3")) == 0
    assert await plat.exec_in_jail(bb, PING.format("10.9.0.2")) == 0
    assert await plat.exec_in_jail(a, PING.format("10.9.0.1")) == 0
    assert await plat.exec_in_jail(bb, PING.format("10.9.0.1")) == 0
    assert sorted(await plat.list_bridged_ifnets(), key=lambda b: b.name) == [
        BridgedIfnet(name="ng0_a", parent="lan0", jid=a),
        BridgedIfnet(name="ng0_bb", parent="lan0", jid=bb),
    ]
    assert "lan0" in {i.name for i in await plat.list_ifnets()}  # the parent stays on the host
    world.ip("netns", "exec", world.host, "ping", "-q", "-c1", "-w5", "10.9.0.1")  # and works

    # macvlans need no bridge of ours: no bridge is ever released
    assert await plat.destroy_bridged_ifnet("ng0_a") is None
    await plat.reclaim_ifnet("ng0_bb", bb)
    assert await plat.destroy_bridged_ifnet("ng0_bb") is None  # from the host this time
    assert await plat.list_bridged_ifnets() == []
    await plat.remove_jail(a)
    await plat.remove_jail(bb)
    assert await plat.list_jails() == []


async def test_bridge_parent_gets_a_veth_that_reaches_the_host(
    world: World, plat: LinuxPlatform
) -> None:
    try:
        world.ip("link", "add", "br0", "type", "bridge", netns=world.host)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"no Linux bridge here (modprobe bridge): {exc.stderr.strip()}")
    world.ip("addr", "add", "10.9.2.1/24", "dev", "br0", netns=world.host)
    world.ip("link", "set", "br0", "up", netns=world.host)
    web = await _bridged_vimage(plat, "web", "br0", "10.9.2.2/24")

    assert await plat.exec_in_jail(web, PING.format("10.9.2.1")) == 0  # the host's own address
    assert await plat.list_bridged_ifnets() == [BridgedIfnet(name="ng0_web", parent="br0", jid=web)]

    await plat.destroy_bridged_ifnet("ng0_web")
    assert "master br0" not in world.ip("link", "show", netns=world.host)  # the peer went too


async def test_moved_nic_is_used_and_returned(world: World, plat: LinuxPlatform) -> None:
    world.add_nic("nic0", "peer1", "10.9.1.1/24")
    db = await plat.create_jail(JailSpec(name="db", hostname="db"))

    await plat.move_ifnet("nic0", db)
    assert await plat.locate_ifnet("nic0") == db
    assert "nic0" not in {i.name for i in await plat.list_ifnets()}
    setup = "ip addr add 10.9.1.2/24 dev nic0 && ip link set nic0 up && "
    assert await plat.exec_in_jail(db, setup + PING.format("10.9.1.1")) == 0

    await plat.reclaim_ifnet("nic0", db)
    assert await plat.locate_ifnet("nic0") == HOST_JID
    await plat.remove_jail(db)
    assert await plat.list_jails() == []
    assert await plat.locate_ifnet("nic0") == HOST_JID


async def _killed_after_first_step(plat: LinuxPlatform, parent: str, ifname: str) -> None:
    """What a daemon killed inside create_bridged_ifnet leaves: only its RTM_NEWLINK done."""
    await trio.to_thread.run_sync(plat._new_bridged_link, parent, ifname, "02:00:00:00:02:01")


@pytest.mark.parametrize("parent_kind", ["bridge", "nic"])
async def test_a_bridged_link_left_by_a_kill_is_found_and_removed(
    world: World, plat: LinuxPlatform, parent_kind: str
) -> None:
    if parent_kind == "bridge":
        try:
            world.ip("link", "add", "br0", "type", "bridge", netns=world.host)
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"no Linux bridge here (modprobe bridge): {exc.stderr.strip()}")
        parent, expected_parent = "br0", ""  # a veth pair, never enslaved
    else:
        world.add_nic("lan0", "peer0")
        parent, expected_parent = "lan0", "lan0"  # a macvlan on lan0
    # named like ours, without alias, but not in our group: someone else's, left alone
    world.ip("link", "add", "ng0_other", "type", "veth", "peer", "name", "ng9_otherp",
             netns=world.host)  # fmt: skip
    await plat.create_bridged_ifnet(parent, "ng1_web", "02:00:00:00:02:02")  # whole: kept
    await _killed_after_first_step(plat, parent, "ng0_web")

    with pytest.raises(FileExistsError):  # what every later start of web got
        await plat.create_bridged_ifnet(parent, "ng0_web", "02:00:00:00:02:01")
    assert {b.name for b in await plat.list_bridged_ifnets()} == {"ng1_web"}

    assert await plat.reconcile_strays() == [
        BridgedIfnet(name="ng0_web", parent=expected_parent, jid=HOST_JID)
    ]
    links = world.ip("-o", "link", "show", netns=world.host)
    assert "ng0_web" not in links
    assert f"{linux_links.peer_name('ng0_web')}" not in links  # the veth peer went with it
    assert "ng0_other" in links
    assert "ng1_web" in links
    assert await plat.reconcile_strays() == []

    await plat.create_bridged_ifnet(parent, "ng0_web", "02:00:00:00:02:01")  # works again
    assert {b.name for b in await plat.list_bridged_ifnets()} == {"ng0_web", "ng1_web"}
    for name in ("ng0_web", "ng1_web"):
        await plat.destroy_bridged_ifnet(name)
