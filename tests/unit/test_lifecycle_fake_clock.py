"""Start and stop through the Supervisor on the in-process sim platform, on a fake clock."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from vimaged import config
from vimaged.platforms import HOST_JID, JailSpec
from vimaged.testing import InProcessPlatform, RecordingEvents, open_supervisor

if TYPE_CHECKING:
    from pathlib import Path


pytestmark = pytest.mark.unit


async def test_start_then_stop(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    cfg = config.build(
        {"vimage_list": "web", "vimage_web_vnets": "em1", "vimage_web_bridges": "em0"}
    )
    plat = InProcessPlatform(nics=("em0", "em1"), state_dir=tmp_path)
    events = RecordingEvents()
    async with open_supervisor(cfg, plat, events=events) as sup:
        [started] = await sup.start(["web"])
        assert started.ok
        assert started.state == "running"
        info = sup.info("web")
        jid = info.jid
        assert jid is not None
        assert plat.host.jails[jid].name == "web"
        assert plat.where("em1") == jid
        assert plat.where("ng0_web") == jid
        assert {i.name: i.where for i in info.interfaces} == {"ng0_web": "vimage", "em1": "vimage"}
        assert plat.commands("web") == [cfg.vimages[0].exec_start]

        [stopped] = await sup.stop(["web"])
        assert stopped.ok
        assert stopped.state == "stopped"
        assert plat.where("em1") == HOST_JID
        assert plat.where("ng0_web") is None  # destroyed, not just moved out
        assert plat.host.jails == {}
        assert await sup.journal.resources() == []
        assert (await sup.journal.vimages())["web"].desired == "stopped"
        assert events.names("web") == [
            "vimage.starting",
            "jail.created",
            "ifnet.bridged",
            "ifnet.moved",
            "vimage.started",
            "health.ok",
            "vimage.stopping",
            "ifnet.returned",
            "jail.removed",
            "vimage.stopped",
        ]


async def test_start_refused_while_a_nic_is_elsewhere(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cfg = config.build({"vimage_list": "web", "vimage_web_vnets": "em0 em1"})
    plat = InProcessPlatform(nics=("em0", "em1"))
    async with open_supervisor(cfg, plat) as sup:
        other = await plat.create_jail(JailSpec(name="other", hostname="other"))
        await plat.move_ifnet("em1", other)
        [refused] = await sup.start(["web"])
        assert not refused.ok
        assert refused.code == "conflict"
        assert [j.name for j in plat.host.jails.values()] == ["other"]  # nothing made
        assert plat.where("em0") == HOST_JID
        assert plat.where("em1") == other
        assert await sup.journal.resources() == []


async def test_failed_start_rolls_back(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    cfg = config.build(
        {
            "vimage_list": "web",
            "vimage_web_vnets": "em1",
            "vimage_web_bridges": "em0",
            "vimage_web_exec_start": "/bin/sh /etc/rc",
        }
    )
    plat = InProcessPlatform(nics=("em0", "em1"), state_dir=tmp_path)
    plat.script("web", "/etc/rc", status=1, duration=3, output="rc: no network\n")
    events = RecordingEvents()
    async with open_supervisor(cfg, plat, events=events) as sup:
        [failed] = await sup.start(["web"])
        assert not failed.ok
        assert failed.state == "failed"
        assert failed.code == "failed"
        assert plat.host.jails == {}
        assert plat.where("em1") == HOST_JID
        assert plat.where("ng0_web") is None
        assert await plat.list_bridges() == []
        assert await sup.journal.resources() == []
        assert (await sup.journal.vimages())["web"].desired == "stopped"
        assert "vimage.rolled_back" in events.names("web")


async def test_exec_start_past_its_timeout_is_killed_and_rolled_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cfg = config.build(
        {
            "vimage_list": "web",
            "vimage_web_vnets": "em1",
            "vimage_web_exec_start": "/etc/rc.hang",
            "vimage_web_exec_timeout": "30",
        }
    )
    plat = InProcessPlatform()
    plat.script("web", "/etc/rc.hang", duration=3600)
    async with open_supervisor(cfg, plat) as sup:
        began = trio.current_time()
        [failed] = await sup.start(["web"])
        assert trio.current_time() - began == pytest.approx(30)
        assert not failed.ok
        assert failed.state == "failed"
        [record] = [r for r in plat.host.exec_log if r.command == "/etc/rc.hang"]
        assert record.outcome == "killed"
        assert plat.where("em1") == HOST_JID
        assert plat.host.jails == {}


async def test_stop_interrupts_a_hanging_start(autojump_clock: trio.testing.MockClock) -> None:
    cfg = config.build(
        {"vimage_list": "web", "vimage_web_vnets": "em1", "vimage_web_exec_start": "/etc/rc.hang"}
    )
    plat = InProcessPlatform()
    plat.script("web", "/etc/rc.hang", duration=3600)
    async with open_supervisor(cfg, plat) as sup:
        outcomes = []

        async def start() -> None:
            outcomes.extend(await sup.start(["web"]))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(start)
            await trio.sleep(10)
            assert sup.info("web").state == "starting"
            [stopped] = await sup.stop(["web"])
        assert stopped.ok
        assert stopped.state == "stopped"
        [interrupted] = outcomes
        assert not interrupted.ok
        assert trio.current_time() < 3600  # it did not wait for exec_start
        assert plat.where("em1") == HOST_JID
        assert plat.host.jails == {}
