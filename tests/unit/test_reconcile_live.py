"""Reconciliation while the daemon serves requests: after the platform came back as another
host (the sim host restarted), on a fake clock (issue 10 item 8, issue 12)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from vimaged import config
from vimaged.platforms import HOST_JID
from vimaged.testing import InProcessPlatform, RecordingEvents, open_supervisor

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.unit

CONFIG = {
    "vimage_list": "web db",
    "vimage_web_bridges": "em0",
    "vimage_web_restart": "on-failure",
    "vimage_web_health_interval": "1",
    "vimage_db_bridges": "em0",
}


async def new_host_with_a_stray(tmp_path: Path) -> InProcessPlatform:
    """Another host, on which something left ``ng0_db`` (vimaged's naming, no journal row)."""
    other = InProcessPlatform(nics=("em0", "em1"), state_dir=tmp_path / "other")
    await other.create_bridged_ifnet("em0", "ng0_db", "02:00:00:00:00:db")
    assert other.where("ng0_db") == HOST_JID
    await other.aclose()
    return other


async def move_to(plat: InProcessPlatform, other: InProcessPlatform) -> None:
    """``plat`` talks to ``other``'s host from now on, as the sim platform after a reconnect
    to a restarted sim host (its binding is opened anew, as SimPlatform._reconnect does)."""
    plat.server = other.server
    plat.host.clock = plat.host.ng.clock = trio.current_time
    stale, plat._bridges = plat._bridges, plat._new_bridges()
    await stale.aclose()


async def test_after_a_reconnect_strays_are_removed_and_the_journal_converges(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    plat = InProcessPlatform(nics=("em0", "em1"), state_dir=tmp_path)
    events = RecordingEvents()
    async with open_supervisor(config.build(CONFIG), plat, events=events) as sup:
        [started] = await sup.start(["web"])
        assert started.ok
        old_boot = sup.journal.boot_id
        plat.disconnect()
        await events.wait_for("health.unknown", "web")
        assert sup.info("web").state == "running"  # nothing acted on a guess
        other = await new_host_with_a_stray(tmp_path)
        await move_to(plat, other)
        plat.reconnect()
        with trio.fail_after(60):
            await events.wait_for("platform.reconciled")
            await events.wait_for("vimage.started", "web", count=2)
        assert other.where("ng0_db") is None  # the stray on the new host is gone
        assert sup.journal.boot_id == await plat.boot_id() != old_boot
        info = sup.info("web")
        assert (info.state, info.restarts) == ("running", 1)
        assert info.jid is not None
        assert plat.host.jails[info.jid].name == "web"
        rows = await sup.journal.resources()
        assert {(r.kind, r.key) for r in rows} == {("jail", "web"), ("bridge", "ng0_web")}
        assert {r.boot for r in rows} == {sup.journal.boot_id}  # no row of the old host left
        assert sup.info("db").state == "stopped"


async def test_reconciling_waits_for_a_start_in_progress(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # Reconciliation holds every vimage's lock: a start that is running its exec_start is
    # not rolled back under it, and its bridged interface is not taken for a stray.
    plat = InProcessPlatform(nics=("em0", "em1"), state_dir=tmp_path)
    events = RecordingEvents()
    cfg = config.build({"vimage_list": "db", "vimage_db_bridges": "em0"})
    async with open_supervisor(cfg, plat, events=events) as sup:
        plat.script("db", cfg.vimages[0].exec_start, duration=30)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.start, ["db"])
            await events.wait_for("ifnet.bridged", "db")
            plat.reconnect()  # as if the platform had been lost and found meanwhile
            await events.wait_for("platform.reconciled")
        assert events.names().index("vimage.started") < events.names().index("platform.reconciled")
        assert sup.info("db").state == "running"
        assert plat.where("ng0_db") == sup.info("db").jid
        assert "vimage.recovered" not in events.names("db")
