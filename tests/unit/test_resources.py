"""The journaled step and the UNDO table (resources.py), and the errno names on the wire."""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, cast, get_args

import pytest

from vimaged import config
from vimaged.dispatch import Dispatcher
from vimaged.errors import OperationFailedError, errno_name
from vimaged.peercred import Peer
from vimaged.platforms import HOST_JID, JailSpec
from vimaged.protocol import Error, Start
from vimaged.resources import ATOMIC, UNDO
from vimaged.state import Resource, ResourceKind
from vimaged.testing import InProcessPlatform, RecordingEvents, open_supervisor

if TYPE_CHECKING:
    from pathlib import Path

    import trio.testing

    from vimaged.supervisor import Supervisor

pytestmark = pytest.mark.unit

CONFIG = {"vimage_list": "web", "vimage_web_vnets": "em1", "vimage_web_bridges": "em0"}


def test_every_resource_kind_has_one_undo() -> None:
    assert set(UNDO) == set(ATOMIC) == set(get_args(ResourceKind))


def test_errno_name() -> None:
    assert errno_name(OSError(errno.EBUSY, "busy")) == "EBUSY"
    assert errno_name(FileExistsError(errno.EEXIST, "exists")) == "EEXIST"
    assert errno_name(OSError("no errno")) is None
    assert errno_name(ValueError("not an OSError")) is None


async def test_a_taken_jail_name_fails_with_eexist_and_the_other_jail_stays(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # jail_set(2) made nothing: the rollback must not take the jail of that name for its own
    plat = InProcessPlatform(nics=("em0", "em1"), state_dir=tmp_path)
    async with open_supervisor(config.build(CONFIG), plat) as sup:
        theirs = await plat.create_jail(JailSpec(name="web", path="/", hostname="web"))
        [outcome] = await sup.start(["web"])
        assert (outcome.ok, outcome.code, outcome.errno_name) == (
            False,
            OperationFailedError.code,
            "EEXIST",
        )
        assert [j.jid for j in await plat.list_jails() if j.name == "web"] == [theirs]
        assert await sup.journal.resources() == []
        assert (await sup.journal.vimages())["web"].desired == "stopped"
        assert plat.where("em1") == HOST_JID
        assert plat.where("ng0_web") is None


async def test_a_failed_nic_move_names_its_errno(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    plat = InProcessPlatform(nics=("em0", "em1"), state_dir=tmp_path)
    original = plat.move_ifnet

    async def move(ifname: str, jid: int) -> None:
        if ifname == "em1":
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), ifname)
        await original(ifname, jid)

    plat.move_ifnet = move  # type: ignore[method-assign]
    async with open_supervisor(config.build(CONFIG), plat) as sup:
        [outcome] = await sup.start(["web"])
        assert (outcome.code, outcome.errno_name) == (OperationFailedError.code, "EBUSY")
        assert await sup.journal.resources() == []
        assert plat.host.jails == {} or all(j.dying for j in plat.host.jails.values())


async def test_undo_leaves_alone_a_jid_that_is_another_jails(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    plat = InProcessPlatform(nics=("em0", "em1"), state_dir=tmp_path)
    events = RecordingEvents()
    async with open_supervisor(config.build(CONFIG), plat, events=events) as sup:
        theirs = await plat.create_jail(JailSpec(name="other", path="/", hostname="other"))
        await sup.journal.intend("jail", "web", vimage="web")
        await sup.journal.mark("jail", "web", "done", jid=theirs)
        row = Resource(kind="jail", key="web", vimage="web", phase="done", jid=theirs)
        await sup.resources.undo(row)
        assert [j.jid for j in await plat.list_jails()] == [theirs]
        assert events.count("reconcile.left_alone", "web") == 1
        assert await sup.journal.resources() == []


class FailingSupervisor:
    """A test fake: every start fails in a system call."""

    async def start(self, names: list[str]) -> None:
        raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), "em1")


async def test_an_os_error_reply_names_its_errno() -> None:
    dispatch = Dispatcher(cast("Supervisor", FailingSupervisor()), None)
    reply = await dispatch.handle(Start(names=("web",)), Peer(uid=0, gid=0, groups=frozenset()))
    assert isinstance(reply, Error)
    assert (reply.code, reply.errno, reply.errno_name) == ("os_error", errno.EBUSY, "EBUSY")
