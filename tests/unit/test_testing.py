"""The public test doubles themselves (``vimaged.testing``): the in-process platform answers as
the sim host does, on trio's clock."""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from vimaged.platforms import HOST_JID, JailSpec
from vimaged.simhost.host import SIGKILL_STATUS
from vimaged.testing import InProcessPlatform, RecordingEvents, open_memory_journal

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.unit


async def test_jail_and_nic_round_trip() -> None:
    plat = InProcessPlatform(nics=("em0", "em1"))
    jid = await plat.create_jail(JailSpec(name="web", hostname="web"))
    await plat.move_ifnet("em1", jid)
    assert await plat.locate_ifnet("em1") == jid
    assert plat.where("em1") == jid
    with pytest.raises(FileExistsError):
        await plat.create_jail(JailSpec(name="web", hostname="web"))
    await plat.reclaim_ifnet("em1", jid)
    assert plat.where("em1") == HOST_JID


async def test_dying_jail_hides_its_nic_from_locate(autojump_clock: trio.testing.MockClock) -> None:
    plat = InProcessPlatform(faults="dying=100")
    jid = await plat.create_jail(JailSpec(name="web", hostname="web"))
    await plat.move_ifnet("em1", jid)
    await plat.remove_jail(jid)
    assert await plat.locate_ifnet("em1") is None  # jail_attach refuses a dying jail
    assert plat.where("em1") == jid  # the truth, for the test
    await trio.sleep(100)
    assert await plat.locate_ifnet("em1") == HOST_JID  # vnet_if_return


async def test_scripted_command_takes_fake_time_and_dies_with_its_jail(
    autojump_clock: trio.testing.MockClock,
) -> None:
    plat = InProcessPlatform()
    plat.script("web", "sleep", status=3, duration=50, output="done\n")
    jid = await plat.create_jail(JailSpec(name="web", hostname="web"))
    read, write = os.pipe()
    try:
        before = trio.current_time()
        assert await plat.exec_in_jail(jid, "sleep 50", output=write) == 3
        assert trio.current_time() - before == pytest.approx(50)
        assert os.read(read, 100) == b"done\n"
        async with trio.open_nursery() as nursery:
            status: list[int] = []

            async def run() -> None:
                status.append(await plat.exec_in_jail(jid, "sleep 50", output=write))

            nursery.start_soon(run)
            await trio.sleep(10)
            await plat.remove_jail(jid)
        assert status == [SIGKILL_STATUS]
        assert [r.outcome for r in plat.host.exec_log] == ["exited", "killed"]
    finally:
        os.close(read)
        os.close(write)


async def test_disconnect_is_an_oserror_until_reconnect() -> None:
    plat = InProcessPlatform()
    plat.disconnect()
    with pytest.raises(OSError) as caught:  # noqa: PT011 (the errno is checked)
        await plat.list_jails()
    assert caught.value.errno == errno.ENOTCONN
    async with trio.open_nursery() as nursery:
        nursery.start_soon(plat.wait_reconnected)
        await trio.testing.wait_all_tasks_blocked()
        plat.reconnect()
    assert await plat.list_jails() == []


async def test_bridged_ifnet_through_the_netgraph_model(tmp_path: Path) -> None:
    plat = InProcessPlatform(state_dir=str(tmp_path))
    await plat.create_bridged_ifnet("em0", "ng0_web", "02:00:00:00:00:01")
    listed = await plat.list_bridged_ifnets()
    assert [(b.name, b.parent) for b in listed] == [("ng0_web", "em0")]
    assert {n.type_name for n in plat.host.ng.iter_nodes()} >= {"bridge", "eiface"}
    await plat.destroy_bridged_ifnet("ng0_web")
    assert await plat.list_bridged_ifnets() == []
    assert "eiface" not in {n.type_name for n in plat.host.ng.iter_nodes()}
    await plat.aclose()


async def test_memory_journal_and_recorded_events(autojump_clock: trio.testing.MockClock) -> None:
    async with open_memory_journal(boot_id="b1") as journal:
        await journal.set_vimage("web", desired="running", jid=3)
        assert (await journal.vimages())["web"].jid == 3
    events = RecordingEvents()
    with trio.fail_after(1):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(events.wait_for, "vimage.started", "web")
            await trio.testing.wait_all_tasks_blocked()
            events.emit("vimage.started", "web", jid=3)
    assert events.names("web") == ["vimage.started"]
