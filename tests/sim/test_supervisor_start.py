"""A start that fails anywhere, for any reason, is rolled back to a consistent journal.

In process: the real Supervisor on the sim host, with a sim platform whose bridge step (or
its undo) raises what a platform should never raise, a ValueError (issue 11 item 3: a VLAN
parent made ``bridges._check_ifname`` raise it on every start and again in the rollback).
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

import pytest

from vimaged import config
from vimaged.errors import OperationFailedError
from vimaged.events import EventHub
from vimaged.platforms import HOST_JID
from vimaged.platforms.sim import SimOptions, SimPlatform
from vimaged.state import Journal
from vimaged.supervisor import Supervisor

if TYPE_CHECKING:
    from pathlib import Path

    from tests.sim.conftest import SimHostHandle

pytestmark = pytest.mark.sim

CONFIG = {
    "vimage_list": "web",
    "vimage_web_vnets": "em1",
    "vimage_web_bridges": "em0",
}


class BrokenBridges(SimPlatform):
    """The sim platform, with a bridge step that raises ValueError (a test fake)."""

    fail_create = True
    fail_destroy = False

    async def create_bridged_ifnet(self, parent: str, ifname: str, mac: str) -> None:
        if self.fail_create:
            raise ValueError(f"{parent}: refused by the binding")
        await super().create_bridged_ifnet(parent, ifname, mac)

    async def destroy_bridged_ifnet(self, ifname: str) -> str | None:
        if self.fail_destroy:
            raise ValueError(f"{ifname}: refused by the binding")
        return await super().destroy_bridged_ifnet(ifname)


async def start_web(
    sim_host: SimHostHandle, tmp_path: Path, *, fail_create: bool, fail_destroy: bool
) -> tuple[Supervisor, Journal, BrokenBridges]:
    plat = BrokenBridges(SimOptions(sim_host=sim_host.socket_path, state_dir=str(tmp_path)))
    plat.fail_create, plat.fail_destroy = fail_create, fail_destroy
    journal = await Journal.open(str(tmp_path))
    return Supervisor(config.build(CONFIG), plat, journal, EventHub()), journal, plat


async def test_a_bridge_step_that_raises_valueerror_is_a_clear_error_and_rolled_back(
    sim_host: SimHostHandle, tmp_path: Path
) -> None:
    sup, journal, plat = await start_web(sim_host, tmp_path, fail_create=True, fail_destroy=False)
    try:
        [outcome] = await sup.start(["web"])
        assert (outcome.ok, outcome.code) == (False, OperationFailedError.code)
        assert outcome.state == "failed"
        assert (await journal.vimages())["web"].desired == "stopped"
        assert await journal.resources() == []
        assert sim_host.jails() == []
        assert sim_host.vnet_of("em1") == HOST_JID
    finally:
        await plat.aclose()


async def test_an_undo_that_raises_does_not_stop_the_rollback(
    sim_host: SimHostHandle, tmp_path: Path
) -> None:
    # The bridged interface is made and moved; then the NIC move fails, and the undo of the
    # bridged interface raises: the jail must still go, and the journal say "stopped".
    sup, journal, plat = await start_web(sim_host, tmp_path, fail_create=False, fail_destroy=True)
    try:
        original_move = plat.move_ifnet

        async def move(ifname: str, jid: int) -> None:
            if ifname == "em1":
                raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), ifname)
            await original_move(ifname, jid)

        plat.move_ifnet = move  # type: ignore[method-assign]
        [outcome] = await sup.start(["web"])
        assert (outcome.ok, outcome.code) == (False, OperationFailedError.code)
        assert (await journal.vimages())["web"].desired == "stopped"
        assert sim_host.jails() == []  # removed after the undo that raised
        assert sim_host.vnet_of("em1") == HOST_JID
    finally:
        await plat.aclose()
