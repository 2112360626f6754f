"""Dependency-aware stop and start, and what ``wanted`` says (issue 13 item 3), through the
Supervisor on the in-process sim platform, on a fake clock."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from vimaged import config
from vimaged.errors import ConflictError, DependentsRunningError, OperationFailedError
from vimaged.protocol import Stop
from vimaged.testing import (
    InProcessPlatform,
    RecordingEvents,
    open_memory_journal,
    open_supervisor,
)

if TYPE_CHECKING:
    from pathlib import Path

    import trio.testing

    from vimaged.supervisor import Supervisor

pytestmark = pytest.mark.unit

# web -> app -> db, and cache on its own
CHAIN = {
    "vimage_list": "db app web cache",
    "vimage_app_depend": "db",
    "vimage_web_depend": "app",
}


def platform(tmp_path: Path) -> InProcessPlatform:
    return InProcessPlatform(state_dir=tmp_path)


def states(sup: Supervisor) -> dict[str, str]:
    return {i.name: i.state for i in sup.infos()}


async def test_start_reports_every_dependency_it_started(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_supervisor(config.build(CHAIN), platform(tmp_path)) as sup:
        outcomes = await sup.start(["app"])
        assert [(o.name, o.ok, o.state) for o in outcomes] == [
            ("db", True, "running"),
            ("app", True, "running"),
        ]
        # db is running already: only what this start started is reported
        assert [o.name for o in await sup.start(["web"])] == ["web"]


async def test_stop_of_a_dependency_is_refused_naming_the_running_dependents(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_supervisor(config.build(CHAIN), platform(tmp_path)) as sup:
        await sup.start(["web", "cache"])
        with pytest.raises(DependentsRunningError) as refused:
            await sup.stop(["cache", "db"])
        assert refused.value.code == "dependents_running"
        assert isinstance(refused.value, ConflictError)
        assert "app" in str(refused.value)
        assert "web" in str(refused.value)
        # nothing half-done: cache, named first, was not stopped either
        assert set(states(sup).values()) == {"running"}
        assert all(i.wanted for i in sup.infos())


async def test_stop_with_dependents_stops_them_first_and_reports_each(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events = RecordingEvents()
    async with open_supervisor(config.build(CHAIN), platform(tmp_path), events=events) as sup:
        await sup.start(["web", "cache"])
        outcomes = await sup.stop(["db"], with_dependents=True)
        assert [(o.name, o.ok, o.state) for o in outcomes] == [
            ("web", True, "stopped"),
            ("app", True, "stopped"),
            ("db", True, "stopped"),
        ]
        stopping = [n for e, n, _ in events.events if e == "vimage.stopping"]
        assert stopping == ["web", "app", "db"]
        assert states(sup) == {
            "db": "stopped",
            "app": "stopped",
            "web": "stopped",
            "cache": "running",
        }
        assert {i.name: i.wanted for i in sup.infos()} == {
            "db": False, "app": False, "web": False, "cache": True,
        }  # fmt: skip


async def test_stopping_a_dependency_and_its_dependents_together_needs_no_option(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_supervisor(config.build(CHAIN), platform(tmp_path)) as sup:
        await sup.start(["app"])
        outcomes = await sup.stop(["db", "app"])  # named in the wrong order: app goes first
        assert [(o.name, o.ok) for o in outcomes] == [("app", True), ("db", True)]


async def test_a_stopped_dependent_does_not_block_a_stop(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_supervisor(config.build(CHAIN), platform(tmp_path)) as sup:
        await sup.start(["db"])
        [outcome] = await sup.stop(["db"])
        assert (outcome.name, outcome.ok) == ("db", True)


async def test_stop_all_still_stops_everything_in_reverse_order(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_supervisor(config.build(CHAIN), platform(tmp_path)) as sup:
        await sup.start(["web", "cache"])
        outcomes = await sup.stop([], everything=True)
        assert all(o.ok for o in outcomes)
        names = [o.name for o in outcomes]
        assert names.index("web") < names.index("app") < names.index("db")
        assert not any(i.wanted for i in sup.infos())


async def test_wanted_follows_autostart_then_the_operator(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    cfg = config.build({**CHAIN, "vimage_enable": "YES"})
    async with open_supervisor(cfg, platform(tmp_path), boot=False) as sup:
        # no autostart in this boot (boot=False) and no journal: vimage_enable says wanted
        assert {i.name: (i.state, i.wanted) for i in sup.infos()}["db"] == ("stopped", True)
        await sup.start(["cache"])
        await sup.stop(["cache"])
        assert not sup.info("cache").wanted  # stopped by the operator
        assert sup.info("db").wanted


async def test_a_restarted_daemon_takes_the_operators_intent_from_the_journal(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    cfg = config.build({**CHAIN, "vimage_enable": "YES"})
    plat = platform(tmp_path)
    async with open_memory_journal(boot_id=await plat.boot_id()) as journal:
        async with open_supervisor(cfg, plat, journal=journal, boot=False) as sup:
            await sup.start(["web", "cache"])
            await sup.stop(["cache"])
            await sup.stop(["db"], with_dependents=True)
        async with open_supervisor(cfg, plat, journal=journal, boot=False) as sup:
            assert not any(i.wanted for i in sup.infos())  # vimage_enable is YES
            await sup.start(["db"])
        async with open_supervisor(cfg, plat, journal=journal, boot=False) as sup:
            assert sup.info("db").wanted


def test_with_dependents_is_a_bool_field_with_a_default() -> None:
    assert Stop(names=("db",)).with_dependents is False


async def test_a_dependency_that_fails_to_start_is_reported_first(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # (an absent NIC would make db wait, not fail: tests/sim/test_late_nics.py)
    cfg = config.build({**CHAIN, "vimage_db_exec_start": "/etc/rc.d/db start"})
    plat = InProcessPlatform(state_dir=tmp_path)
    plat.script("db", "rc.d/db", status=1)
    async with open_supervisor(cfg, plat) as sup:
        outcomes = await sup.start(["app"])  # db's exec_start fails: app cannot start
        assert [(o.name, o.ok, o.code) for o in outcomes] == [
            ("db", False, OperationFailedError.code),
            ("app", False, ConflictError.code),
        ]
        assert sup.info("app").wanted  # the operator asked: health says CRITICAL


async def test_a_restart_makes_a_vimage_wanted_again(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_supervisor(config.build(CHAIN), platform(tmp_path)) as sup:
        await sup.start(["cache"])
        await sup.stop(["cache"])
        assert not sup.info("cache").wanted
        [restarted] = await sup.restart(["cache"])
        assert (restarted.ok, sup.info("cache").wanted) == (True, True)
