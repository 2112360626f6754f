"""Sim tier: vimages whose NICs arrive late, and parents that go and come back (issue 13
item 5), through the real Supervisor on the sim host; ``plug_nic`` is the hardware."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import pytest
import trio

from tests.sim.daemon_harness import Daemon
from vimaged import config
from vimaged.events import EventHub
from vimaged.platforms import HOST_JID
from vimaged.platforms.sim import SimOptions, SimPlatform
from vimaged.state import Journal
from vimaged.supervisor import Supervisor

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping
    from pathlib import Path

    from tests.sim.conftest import SimHostHandle

pytestmark = pytest.mark.sim


@asynccontextmanager
async def running(
    sim_host: SimHostHandle, tmp_path: Path, raw: Mapping[str, str]
) -> AsyncIterator[Supervisor]:
    plat = SimPlatform(SimOptions(sim_host=sim_host.socket_path, state_dir=str(tmp_path)))
    journal = await Journal.open(str(tmp_path))
    try:
        sup = Supervisor(config.build(dict(raw)), plat, journal, EventHub())
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                await nursery.start(sup.run)
                yield sup
                nursery.cancel_scope.cancel()
    finally:
        await plat.aclose()
        await journal.aclose()


async def until(check: Callable[[], bool]) -> None:
    """Until ``check()`` holds (the test's fail_after bounds it); polled, since the state it
    reads changes in another task after an event in another process."""
    while not check():  # noqa: ASYNC110
        await trio.sleep(0.01)


async def test_a_vimage_waits_for_an_absent_nic_and_starts_when_it_is_plugged(
    sim_host: SimHostHandle, tmp_path: Path
) -> None:
    raw = {"vimage_list": "usb", "vimage_usb_vnets": "ue0", "vimage_usb_bridges": "ue1"}
    async with running(sim_host, tmp_path, raw) as sup:
        [outcome] = await sup.start(["usb"])
        assert (outcome.ok, outcome.state) == (True, "waiting")
        info = sup.info("usb")
        assert info.waiting_for == ("ue0", "ue1")
        assert {i.name: i.where for i in info.interfaces}["ue0"] == "absent"
        assert sim_host.jails() == []  # nothing made while it waits
        [again] = await sup.start(["usb"])  # a second start joins the wait
        assert again.state == "waiting"
        sim_host.plug_nic("ue0")
        await until(lambda: sup.info("usb").waiting_for == ("ue1",))
        assert sup.info("usb").state == "waiting"
        sim_host.plug_nic("ue1")
        await until(lambda: sup.info("usb").state == "running")
        jid = sup.info("usb").jid
        assert jid is not None
        assert sim_host.vnet_of("ue0") == jid
        assert sup.info("usb").waiting_for == ()
        [stopped] = await sup.stop(["usb"])
        assert stopped.ok
        assert sim_host.vnet_of("ue0") == HOST_JID


async def test_stop_ends_the_wait_and_a_later_plug_starts_nothing(
    sim_host: SimHostHandle, tmp_path: Path
) -> None:
    raw = {"vimage_list": "usb", "vimage_usb_vnets": "ue0"}
    async with running(sim_host, tmp_path, raw) as sup:
        [outcome] = await sup.start(["usb"])
        assert outcome.state == "waiting"
        [stopped] = await sup.stop(["usb"])
        assert (stopped.ok, stopped.state) == (True, "stopped")
        assert sup.info("usb").waiting_for == ()
        record = (await sup.journal.vimages())["usb"]
        assert record.desired == "stopped"
        sim_host.plug_nic("ue0")
        await until(lambda: sup.arrivals.ifnets.is_present("ue0") is True)
        await trio.sleep(0.1)  # a wait that were still going would start it now
        assert sup.info("usb").state == "stopped"
        assert sim_host.jails() == []


async def test_a_reload_that_removes_a_waiting_vimage_ends_its_wait(
    sim_host: SimHostHandle, tmp_path: Path
) -> None:
    raw = {"vimage_list": "usb web", "vimage_usb_vnets": "ue0", "vimage_web_bridges": "em0"}
    async with running(sim_host, tmp_path, raw) as sup:
        [outcome] = await sup.start(["usb"])
        assert outcome.state == "waiting"
        reloaded = sup.reload(config.build({"vimage_list": "web", "vimage_web_bridges": "em0"}))
        assert reloaded.removed == ("usb",)
        assert "usb" not in sup.vimages
        sim_host.plug_nic("ue0")
        await until(lambda: sup.arrivals.ifnets.is_present("ue0") is True)
        await trio.sleep(0.1)  # a wait that were still going would start it now
        assert sim_host.jails() == []


async def test_a_dependent_waits_with_its_dependency(
    sim_host: SimHostHandle, tmp_path: Path
) -> None:
    raw = {
        "vimage_list": "db app",
        "vimage_db_vnets": "ue0",
        "vimage_app_bridges": "em0",
        "vimage_app_depend": "db",
    }
    async with running(sim_host, tmp_path, raw) as sup:
        outcomes = {o.name: o.state for o in await sup.start(["app"])}
        assert outcomes == {"db": "waiting", "app": "waiting"}  # start reports its dependencies
        assert sup.info("db").waiting_for == ("ue0",)
        assert sup.info("app").waiting_for == ("db",)
        sim_host.plug_nic("ue0")
        await until(lambda: sup.info("app").state == "running")
        assert sup.info("db").state == "running"


async def test_an_unplugged_parent_degrades_and_its_return_rewires(
    sim_host: SimHostHandle, tmp_path: Path
) -> None:
    raw = {"vimage_list": "web", "vimage_web_bridges": "em1", "vimage_web_health_interval": "60"}
    async with running(sim_host, tmp_path, raw) as sup:
        [outcome] = await sup.start(["web"])
        assert outcome.ok
        first_jid = sup.info("web").jid
        sim_host.plug_nic("em1", plugged=False)
        await until(lambda: sup.info("web").health == "degraded")
        assert "parent em1 is gone" in (sup.info("web").health_reason or "")
        assert sup.info("web").state == "running"
        sim_host.plug_nic("em1")
        await until(lambda: sup.info("web").jid not in (None, first_jid))
        await until(lambda: sup.info("web").health == "ok")
        assert sup.info("web").state == "running"
        # wired to the new em1: its ng_ether node has a hook again
        em1 = next(n for n in sim_host.ng_nodes() if n.name == "em1")
        assert em1.hooks
        [stopped] = await sup.stop(["web"])
        assert stopped.ok
        assert not any(n.type == "bridge" for n in sim_host.ng_nodes())


async def test_a_vimage_stops_while_its_parent_is_gone(
    sim_host: SimHostHandle, tmp_path: Path
) -> None:
    raw = {"vimage_list": "web", "vimage_web_bridges": "em1"}
    async with running(sim_host, tmp_path, raw) as sup:
        await sup.start(["web"])
        sim_host.plug_nic("em1", plugged=False)
        await until(lambda: sup.info("web").health == "degraded")
        [stopped] = await sup.stop(["web"])
        assert (stopped.ok, stopped.state) == (True, "stopped")
        assert not any(i.name.startswith("ng") for i in sim_host.ifnets(0))
        sim_host.plug_nic("em1")
        [again] = await sup.start(["web"])  # a fresh bridge on the new node
        assert (again.ok, again.state) == (True, "running")


def test_check_config_and_the_daemon_warn_about_an_absent_nic(
    sim_host: SimHostHandle, tmp_path: Path
) -> None:
    daemon = Daemon(sim_socket=sim_host.socket_path, workdir=tmp_path)
    daemon.write_config('vimage_list="usb"\nvimage_usb_vnets="ue0"\nvimage_usb_bridges="em0"\n')
    daemon.extra_args = ["--check-config"]  # rc.d's configtest: must not refuse a late NIC
    checked = daemon.run_to_exit()
    assert checked.returncode == 0, checked
    assert "vimage_usb_vnets: ue0" in checked.stderr
    assert "NICs present: em0; absent: ue0" in checked.stdout
    assert sim_host.jails() == []


def test_the_daemon_starts_with_an_absent_nic_and_autostart_waits_for_it(
    sim_host: SimHostHandle, tmp_path: Path
) -> None:
    daemon = Daemon(sim_socket=sim_host.socket_path, workdir=tmp_path)
    daemon.write_config('vimage_enable="YES"\nvimage_list="usb"\nvimage_usb_vnets="ue0"\n')
    daemon.start()
    try:
        daemon.wait_until(lambda: daemon.vimages()["usb"]["state"] == "waiting", what="waiting")
        assert daemon.vimages()["usb"]["waiting_for"] == ["ue0"]
        assert "waiting for ue0" in daemon.ok("status", "usb").stdout
        sim_host.plug_nic("ue0")
        daemon.wait_until(lambda: daemon.vimages()["usb"]["state"] == "running", what="running")
        assert sim_host.vnet_of("ue0") == daemon.vimages()["usb"]["jid"]
        daemon.ok("stop", "usb")
        assert sim_host.vnet_of("ue0") == HOST_JID
    finally:
        daemon.stop()


async def test_a_vimage_added_by_reload_is_watched_for_its_parent(
    sim_host: SimHostHandle, tmp_path: Path
) -> None:
    raw = {"vimage_list": "web", "vimage_web_bridges": "em0", "vimage_web_health_interval": "60"}
    async with running(sim_host, tmp_path, raw) as sup:
        await sup.start(["web"])
        sim_host.plug_nic("em1", plugged=False)  # nobody's parent yet: nothing happens
        await until(lambda: sup.arrivals.ifnets.is_present("em1") is False)
        sim_host.plug_nic("em1")
        sup.reload(config.build({**raw, "vimage_list": "web lan", "vimage_lan_bridges": "em1",
                                 "vimage_lan_health_interval": "60"}))  # fmt: skip
        [started] = await sup.start(["lan"])
        assert started.ok
        sim_host.plug_nic("em1", plugged=False)
        await until(lambda: sup.info("lan").health == "degraded")
        assert sup.info("web").health == "ok"
