"""The return watcher: a NIC held by a dying jail is retried with capped backoff until it is
home. On the in-process sim platform and a fake clock: the jail lingers dying for 10 minutes
and ``ifconfig em1 -vnet`` fails with EBUSY meanwhile (if_vmove_reclaim while the source vnet
shuts down), until vnet_if_return brings em1 home."""

from __future__ import annotations

import errno

import pytest
import trio
import trio.testing

from vimaged import config, vnets
from vimaged.platforms import HOST_JID, JailSpec
from vimaged.testing import (
    InProcessPlatform,
    RecordingEvents,
    open_memory_journal,
    open_supervisor,
)

pytestmark = pytest.mark.unit

DYING = 600.0


class RecordingReclaims(InProcessPlatform):
    """Remembers when each ``-vnet`` was tried (a test fake)."""

    def __init__(self, *, faults: str) -> None:
        super().__init__(faults=faults)
        self.reclaims: list[float] = []

    async def reclaim_ifnet(self, ifname: str, jid: int) -> None:
        self.reclaims.append(trio.current_time())
        await super().reclaim_ifnet(ifname, jid)


async def test_nic_held_by_a_dying_jail_comes_home(autojump_clock: trio.testing.MockClock) -> None:
    cfg = config.build({"vimage_list": "web", "vimage_web_vnets": "em1"})
    plat = RecordingReclaims(faults=f"dying={DYING:g}, reclaim_fail=100000:EBUSY")
    events = RecordingEvents()
    async with open_supervisor(cfg, plat, events=events) as sup:
        await sup.start(["web"])
        jid = sup.info("web").jid
        assert jid is not None
        [stopped] = await sup.stop(["web"])
        assert stopped.ok  # the stop does not wait for the NIC
        began = trio.current_time()
        assert plat.where("em1") == jid
        assert plat.host.jails[jid].dying

        await trio.sleep(DYING / 2)
        pending = sup.watcher.pending["em1"]
        assert pending.last_errno == errno.EBUSY
        assert pending.dying
        [nic] = sup.info("web").interfaces
        assert nic.where == "pending-return"
        assert nic.holder_jid == jid
        assert nic.holder_dying
        [refused] = await sup.start(["web"])  # em1 is not ours to move until it is home
        assert not refused.ok
        assert refused.code == "conflict"

        with trio.fail_after(DYING):
            await events.wait_for("ifnet.returned", "web")
        assert plat.where("em1") == HOST_JID
        assert "em1" not in sup.watcher.pending
        assert await sup.journal.resources() == []
        # home within one capped step of the jail's end
        assert trio.current_time() - began <= DYING + vnets.MAX_DELAY
        gaps = [b - a for a, b in zip(plat.reclaims, plat.reclaims[1:], strict=False)]
        assert max(gaps) <= vnets.MAX_DELAY  # capped...
        assert len(plat.reclaims) >= DYING / vnets.MAX_DELAY  # ...so it kept trying
        uncapped = [g for g in gaps if g < vnets.MAX_DELAY / 2]
        assert uncapped == sorted(uncapped)  # and backed off before the cap
        [started] = await sup.start(["web"])
        assert started.ok


async def test_failed_reclaim_retried_until_it_works(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cfg = config.build({"vimage_list": "web", "vimage_web_vnets": "em1"})
    plat = RecordingReclaims(faults=f"dying={DYING:g}, reclaim_fail=3:EBUSY")
    events = RecordingEvents()
    async with open_supervisor(cfg, plat, events=events) as sup:
        await sup.start(["web"])
        await sup.stop(["web"])
        with trio.fail_after(60):  # long before the jail is gone: reclaimed from it
            await events.wait_for("ifnet.returned", "web")
        assert len(plat.reclaims) == 4  # three refused, the fourth worked
        assert any(j.dying for j in plat.host.jails.values())
        assert plat.where("em1") == HOST_JID
        assert sup.watcher.pending == {}


async def test_watcher_alone_waits_out_a_dying_jail(autojump_clock: trio.testing.MockClock) -> None:
    """vnets.ReturnWatcher without a supervisor: the journal row goes when the NIC is home."""
    plat = RecordingReclaims(faults="dying=100, reclaim_fail=100000:EBUSY")
    jid = await plat.create_jail(JailSpec(name="web", hostname="web"))
    await plat.move_ifnet("em1", jid)
    events = RecordingEvents()
    async with open_memory_journal() as journal:
        await journal.intend("vnet", "em1", vimage="web", jid=jid)
        await journal.mark("vnet", "em1", "done")
        watcher = vnets.ReturnWatcher(plat, journal, events)
        async with trio.open_nursery() as nursery:
            await nursery.start(watcher.run)
            await plat.remove_jail(jid)
            assert not await watcher.return_home("em1", vimage="web", jid=jid)
            assert events.names("web") == ["ifnet.return_pending"]
            with trio.fail_after(100 + vnets.MAX_DELAY):
                await events.wait_for("ifnet.returned", "web")
            nursery.cancel_scope.cancel()
        assert await journal.resources() == []
    assert watcher.pending == {}
    assert plat.where("em1") == HOST_JID
    assert len(plat.reclaims) > 3  # retried meanwhile
