"""Linux tier: namespaces as vimages: ids, exec, lingering processes, adoption."""

from __future__ import annotations

import errno
import os
import shutil
from typing import TYPE_CHECKING

import pytest
import trio

from tests.linux.test_linux_errors import errno_of
from vimaged.platforms import HOST_JID, BridgedIfnet, IfnetInfo, JailInfo, JailSpec

if TYPE_CHECKING:
    from pathlib import Path

    from tests.linux.conftest import World
    from vimaged.platforms.linux import LinuxPlatform

pytestmark = pytest.mark.linux


async def test_jail_is_an_ip_netns_whose_jid_is_its_inode(
    world: World, plat: LinuxPlatform
) -> None:
    jid = await plat.create_jail(JailSpec(name="web", hostname="web"))
    path = f"/run/netns/{world.prefix}web"

    assert os.stat(path).st_ino == jid
    out = world.run("ip", "netns", "exec", f"{world.prefix}web", "ip", "-o", "link")
    assert "lo:" in out
    assert await plat.list_jails() == [JailInfo(jid=jid, name="web")]
    # the platform brings lo up, and Linux gives an up loopback its addresses
    assert await plat.list_ifnets(jid) == [
        IfnetInfo(name="lo", mac=None, up=True, addresses=("127.0.0.1/8", "::1/128"))
    ]

    await plat.remove_jail(jid)
    assert not world.exists(path)
    assert await plat.list_jails() == []


async def test_other_namespaces_are_not_listed(world: World, plat: LinuxPlatform) -> None:
    world.ip("netns", "add", f"{world.tag}x-other")
    jid = await plat.create_jail(JailSpec(name="a", hostname="a"))

    assert [j.jid for j in await plat.list_jails()] == [jid]


async def test_exec_returns_status_and_runs_in_the_namespace(
    world: World, plat: LinuxPlatform
) -> None:
    jid = await plat.create_jail(JailSpec(name="a", hostname="a"))
    assert await plat.exec_in_jail(jid, "exit 7") == 7
    inode = "$(stat -L -c %i /proc/self/ns/net)"
    assert await plat.exec_in_jail(jid, f'test "{inode}" = {jid}') == 0


async def test_exec_chroots_into_the_vimage_path(
    world: World, plat: LinuxPlatform, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    sh = world.run("readlink", "-f", "/bin/sh").strip()
    libs = world.run("ldd", sh)
    for path in [sh, *(w for w in libs.split() if w.startswith("/"))]:
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    (root / "bin").mkdir(exist_ok=True)
    if not (root / "bin" / "sh").exists():
        (root / "bin" / "sh").symlink_to(sh)
    marker = f"only-in-{world.tag}"
    (root / marker).touch()
    jid = await plat.create_jail(JailSpec(name="a", hostname="a", path=str(root)))

    assert await plat.exec_in_jail(jid, f"test -e /{marker} && test ! -e /etc") == 0
    fresh = world.platform()
    try:
        assert await fresh.exec_in_jail(jid, f"test -e /{marker}") == 0  # the path is adopted
    finally:
        await fresh.aclose()


async def test_cancelling_exec_kills_the_command(world: World, plat: LinuxPlatform) -> None:
    jid = await plat.create_jail(JailSpec(name="a", hostname="a"))
    with trio.fail_after(5):
        with trio.move_on_after(0.3):
            await plat.exec_in_jail(jid, "sleep 30; sleep 30")
        # The whole group got SIGKILL; the orphaned sleep is reaped by init a moment later.
        for _ in range(80):
            if not world.netns_pids(f"{world.prefix}a"):
                break
            await trio.sleep(0.05)
    assert world.netns_pids(f"{world.prefix}a") == []


async def test_lingering_process_keeps_the_nic_until_it_is_reclaimed(
    world: World, plat: LinuxPlatform
) -> None:
    world.add_nic("nic0", "peer1")
    jid = await plat.create_jail(JailSpec(name="db", hostname="db"))
    await plat.move_ifnet("nic0", jid)
    proc = world.linger(f"/run/netns/{world.prefix}db")
    world.wait_until_in(proc, jid)

    await plat.remove_jail(jid)
    assert not world.exists(f"/run/netns/{world.prefix}db")
    assert await plat.list_jails() == [JailInfo(jid=jid, name="db", dying=True)]
    assert await plat.locate_ifnet("nic0") == jid
    assert await errno_of(plat.exec_in_jail(jid, "true")) == errno.ENOENT  # no jexec when dying

    fresh = world.platform()  # a restarted daemon finds the dying namespace and the NIC
    try:
        assert await fresh.list_jails() == [JailInfo(jid=jid, name="db", dying=True)]
        assert await fresh.locate_ifnet("nic0") == jid
        await fresh.reclaim_ifnet("nic0", jid)
        assert await fresh.locate_ifnet("nic0") == HOST_JID
        assert await fresh.list_jails() == [JailInfo(jid=jid, name="db", dying=True)]
    finally:
        await fresh.aclose()

    proc.kill()
    proc.wait()
    assert await plat.list_jails() == []  # now really gone
    assert os.listdir(world.state_dir / "linux-netns") == []
    assert await plat.locate_ifnet("nic0") == HOST_JID


async def test_a_fresh_platform_adopts_what_the_last_one_made(
    world: World, plat: LinuxPlatform
) -> None:
    world.add_nic("lan0", "peer0")
    world.add_nic("nic0", "peer1")
    web = await plat.create_jail(JailSpec(name="web", hostname="web"))
    await plat.create_bridged_ifnet("lan0", "ng0_web", "02:00:00:00:02:01")
    await plat.create_bridged_ifnet("lan0", "ng1_web", "02:00:00:00:02:02")
    await plat.move_ifnet("ng0_web", web)
    await plat.move_ifnet("nic0", web)
    await plat.aclose()

    fresh = world.platform()
    try:
        assert await fresh.list_jails() == [JailInfo(jid=web, name="web")]
        assert sorted(await fresh.list_bridged_ifnets(), key=lambda b: b.name) == [
            BridgedIfnet(name="ng0_web", parent="lan0", jid=web),
            BridgedIfnet(name="ng1_web", parent="lan0", jid=HOST_JID),
        ]
        assert await fresh.locate_ifnet("nic0") == web
        await fresh.reclaim_ifnet("nic0", web)
        await fresh.destroy_bridged_ifnet("ng0_web")
        await fresh.destroy_bridged_ifnet("ng1_web")
        await fresh.remove_jail(web)
        assert await fresh.list_jails() == []
        assert await fresh.list_bridged_ifnets() == []
    finally:
        await fresh.aclose()


async def test_rename_and_up_act_on_the_host(world: World, plat: LinuxPlatform) -> None:
    world.add_nic("nic0", "peer1")
    world.ip("link", "set", "nic0", "down", netns=world.host)

    await plat.rename_ifnet("nic0", "uplink")
    await plat.set_ifnet_up("uplink")

    [info] = [i for i in await plat.list_ifnets() if i.name == "uplink"]
    assert info.up
    assert info.mac is not None
    assert "uplink" in world.ip("link", "show", "uplink", netns=world.host)


async def test_preflight_and_host_uuid(plat: LinuxPlatform) -> None:
    await plat.preflight()
    assert len((await plat.host_uuid()).replace("-", "")) == 32


async def test_concurrent_vimages_get_their_own_interfaces(
    world: World, plat: LinuxPlatform
) -> None:
    world.add_nic("lan0", "peer0")
    names = [f"c{i}" for i in range(6)]
    jids: dict[str, int] = {}

    async def start(name: str) -> None:
        jids[name] = await plat.create_jail(JailSpec(name=name, hostname=name))
        for b in (0, 1):
            await plat.create_bridged_ifnet(
                "lan0", f"ng{b}_{name}", f"02:00:00:04:{b:02x}:0{name[1]}"
            )
            await plat.move_ifnet(f"ng{b}_{name}", jids[name])

    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(start, name)
    expected = {
        BridgedIfnet(name=f"ng{b}_{name}", parent="lan0", jid=jids[name])
        for name in names
        for b in (0, 1)
    }
    assert set(await plat.list_bridged_ifnets()) == expected

    async def stop(name: str) -> None:
        await plat.destroy_bridged_ifnet(f"ng0_{name}")
        await plat.destroy_bridged_ifnet(f"ng1_{name}")
        await plat.remove_jail(jids[name])

    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(stop, name)
    assert await plat.list_jails() == []
    assert await plat.list_bridged_ifnets() == []


async def test_removing_a_vimage_with_a_bridged_ifnet_inside_pins_it_until_destroyed(
    world: World, plat: LinuxPlatform
) -> None:
    world.add_nic("lan0", "peer0")
    jid = await plat.create_jail(JailSpec(name="web", hostname="web"))
    await plat.create_bridged_ifnet("lan0", "ng0_web", "02:00:00:05:00:01")
    await plat.move_ifnet("ng0_web", jid)

    await plat.remove_jail(jid)
    assert await plat.list_jails() == [JailInfo(jid=jid, name="web", dying=True)]
    assert await plat.list_bridged_ifnets() == [
        BridgedIfnet(name="ng0_web", parent="lan0", jid=jid)
    ]
    await plat.destroy_bridged_ifnet("ng0_web")
    assert await plat.list_jails() == []


async def test_remains_of_a_killed_create_do_not_block_the_name(
    world: World, plat: LinuxPlatform
) -> None:
    world.touch(f"/run/netns/{world.prefix}a")  # the file a namespace is mounted on, alone

    jid = await plat.create_jail(JailSpec(name="a", hostname="a"))
    assert await plat.list_jails() == [JailInfo(jid=jid, name="a")]
