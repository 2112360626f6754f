"""Linux tier: bad requests fail with the kernel's errno and leave nothing behind."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

import pytest

from vimaged.platforms import HOST_JID, JailSpec

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from tests.linux.conftest import World
    from vimaged.platforms.linux import LinuxPlatform

pytestmark = pytest.mark.linux

MAC = "02:00:00:00:03:01"


async def errno_of(call: Awaitable[object]) -> int | None:
    """The errno of the OSError ``call`` raises, None if it succeeds."""
    try:
        await call
    except OSError as exc:
        return exc.errno
    return None


async def test_moving_a_missing_nic_is_enoent(world: World, plat: LinuxPlatform) -> None:
    jid = await plat.create_jail(JailSpec(name="a", hostname="a"))
    assert await errno_of(plat.move_ifnet("nosuch0", jid)) == errno.ENOENT


async def test_moving_into_a_missing_vimage_is_enoent(world: World, plat: LinuxPlatform) -> None:
    world.add_nic("nic0", "peer1")
    assert await errno_of(plat.move_ifnet("nic0", 12345)) == errno.ENOENT
    assert await plat.locate_ifnet("nic0") == HOST_JID


async def test_a_taken_vimage_name_is_eexist(world: World, plat: LinuxPlatform) -> None:
    jid = await plat.create_jail(JailSpec(name="a", hostname="a"))
    assert await errno_of(plat.create_jail(JailSpec(name="a", hostname="a"))) == errno.EEXIST
    assert [j.jid for j in await plat.list_jails()] == [jid]


async def test_a_taken_interface_name_is_eexist(world: World, plat: LinuxPlatform) -> None:
    world.add_nic("lan0", "peer0")
    world.add_nic("ng0_a", "peer1")
    before = await plat.list_ifnets()
    assert await errno_of(plat.create_bridged_ifnet("lan0", "ng0_a", MAC)) == errno.EEXIST
    assert await plat.list_ifnets() == before
    assert await plat.list_bridged_ifnets() == []


async def test_a_name_taken_inside_the_vimage_is_eexist(world: World, plat: LinuxPlatform) -> None:
    world.add_nic("nic0", "peer0")
    jid = await plat.create_jail(JailSpec(name="a", hostname="a"))
    world.ip("link", "add", "nic0", "type", "veth", "peer", "x0", netns=f"{world.prefix}a")
    assert await errno_of(plat.move_ifnet("nic0", jid)) == errno.EEXIST
    assert await plat.locate_ifnet("nic0") == HOST_JID


async def test_a_missing_parent_is_enoent(world: World, plat: LinuxPlatform) -> None:
    assert await errno_of(plat.create_bridged_ifnet("nosuch0", "ng0_a", MAC)) == errno.ENOENT


async def test_destroying_an_interface_not_ours_is_enoent(
    world: World, plat: LinuxPlatform
) -> None:
    world.add_nic("nic0", "peer0")
    assert await errno_of(plat.destroy_bridged_ifnet("nic0")) == errno.ENOENT
    assert await plat.locate_ifnet("nic0") == HOST_JID


@pytest.mark.parametrize(
    ("parent", "ifname", "mac"),
    [("lan0", "ng0_a", "02:00:00:00:03"), ("lan0", "ng0_much_too_long", MAC), ("lan0", "", MAC)],
    ids=["short-mac", "long-name", "empty-name"],
)
async def test_bad_bridged_arguments_are_einval(
    world: World, plat: LinuxPlatform, parent: str, ifname: str, mac: str
) -> None:
    world.add_nic("lan0", "peer0")
    assert await errno_of(plat.create_bridged_ifnet(parent, ifname, mac)) == errno.EINVAL
    assert await plat.list_bridged_ifnets() == []


@pytest.mark.parametrize("name", ["1web", "we/b", "a-b"])
async def test_bad_vimage_names_are_einval(world: World, plat: LinuxPlatform, name: str) -> None:
    assert await errno_of(plat.create_jail(JailSpec(name=name, hostname="x"))) == errno.EINVAL
    assert await plat.list_jails() == []


async def test_a_missing_rootdir_is_enoent(world: World, plat: LinuxPlatform) -> None:
    assert (
        await errno_of(
            plat.create_jail(JailSpec(name="a", hostname="a", path="/nonexistent/vimage"))
        )
        == errno.ENOENT
    )
    assert await plat.list_jails() == []
