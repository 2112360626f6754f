"""What one start or stop costs as vimages grow (issue 13 item 2), counted on a fake clock:
the MACs other vimages configure are kept, not gathered per new MAC; a ``stop --all`` does not
health-check what queues to be stopped."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
import pytest
import trio
import trio.testing

from vimaged import config, macs
from vimaged.testing import InProcessPlatform, open_supervisor

if TYPE_CHECKING:
    from collections.abc import Iterator

    from vimaged.vimage import Vimage

pytestmark = pytest.mark.unit


def explicit(i: int) -> str:
    return f"02:00:00:00:{i >> 8:02x}:{i & 0xFF:02x}"


async def test_a_derived_mac_does_not_look_at_every_configured_one(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    names = [f"v{i}" for i in range(300)]
    raw = {"vimage_list": " ".join([*names, "new"]), "vimage_new_bridges": "em0"}
    for i, name in enumerate(names):
        raw[f"vimage_{name}_bridges"] = "em0"
        raw[f"vimage_{name}_ether_0"] = explicit(i)
    normalized: list[str] = []
    real = macs._comparable

    def counted(mac: str) -> str:
        normalized.append(mac)
        return real(mac)

    async with open_supervisor(config.build(raw), InProcessPlatform()) as sup:
        monkeypatch.setattr(macs, "_comparable", counted)
        [started] = await sup.start(["new"])
        assert started.ok
        assert len(normalized) < 10  # the host's MACs, not the 300 configured ones
        assert sup.macs.known[("new", 0)] not in {explicit(i) for i in range(300)}


async def test_the_configured_macs_follow_reloads_starts_and_removals(
    autojump_clock: trio.testing.MockClock,
) -> None:
    plat = InProcessPlatform()
    uuid = await plat.host_uuid()

    def derived(name: str, attempt: int = 0) -> str:
        return macs.host_mac(uuid, name, 0, attempt)

    def build(**ethers: str) -> config.Config:
        names = "a b c d e"
        raw = {"vimage_list": names, **{f"vimage_{n}_bridges": "em0" for n in names.split()}}
        raw.update({f"vimage_{n}_ether_0": mac for n, mac in ethers.items()})
        return config.build(raw)

    async with open_supervisor(build(a=derived("b")), plat) as sup:
        assert sup.macs.taken_by_config() == {derived("b")}
        sup.reload(build(a=explicit(1)))  # a is stopped: its new MAC frees b's first choice
        assert sup.macs.taken_by_config() == {explicit(1)}
        assert all(o.ok for o in await sup.start(["a", "b"]))
        assert sup.macs.known[("b", 0)] == derived("b")

        # a runs: its reloaded configuration waits for a restart, and already takes its MAC
        sup.reload(build(a=derived("c")))
        assert sup.macs.taken_by_config() == {explicit(1), derived("c")}
        assert all(o.ok for o in await sup.start(["c"]))
        assert sup.macs.known[("c", 0)] == derived("c", 1)
        assert all(o.ok for o in await sup.restart(["a"]))  # next_cfg applied: 1 is free
        assert sup.macs.taken_by_config() == {derived("c")}

        # a vimage removed while it runs keeps its MAC until it is stopped and forgotten
        sup.reload(config.build({"vimage_list": "b c d e", "vimage_e_bridges": "em0"}))
        assert sup.macs.taken_by_config() == {derived("c")}
        assert all(o.ok for o in await sup.stop(["a"]))
        assert "a" not in sup.vimages
        assert sup.macs.taken_by_config() == set()
        assert all(o.ok for o in await sup.start(["e"]))
        assert sup.macs.known[("e", 0)] == derived("e")


async def test_a_reload_of_a_stopped_vimage_drops_the_one_reloaded_while_it_ran(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def build(hostname: str) -> config.Config:
        return config.build({"vimage_list": "a", "vimage_a_hostname": hostname})

    async with open_supervisor(build("one"), InProcessPlatform()) as sup:
        assert all(o.ok for o in await sup.start(["a"]))
        sup.reload(build("two"))  # a runs: applied at its next start
        assert all(o.ok for o in await sup.stop(["a"]))
        sup.reload(build("three"))
        assert all(o.ok for o in await sup.start(["a"]))
        assert sup.vimages["a"].cfg.hostname == "three"


async def test_stop_all_does_not_check_what_queues_to_be_stopped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    names = [f"v{i}" for i in range(40)]
    raw = {"vimage_list": " ".join(names), "vimage_parallel_start": "YES"}
    for name in names:
        raw[f"vimage_{name}_health_interval"] = "1"
        raw[f"vimage_{name}_exec_stop"] = "/bin/sleep 5"  # each stop takes 5 s, 8 at a time
    plat = InProcessPlatform()
    plat.script("*", "/bin/sleep 5", duration=5)
    async with open_supervisor(config.build(raw), plat) as sup:
        assert all(o.ok for o in await sup.start(names))
        checked: list[str] = []
        real = sup.health.check

        async def counted(v: Vimage, *, run_cmd: bool = True) -> tuple[str, str | None, bool]:
            checked.append(v.name)
            return await real(v, run_cmd=run_cmd)

        sup.health.check = counted  # type: ignore[assignment,method-assign]
        await trio.sleep(3)
        assert len(checked) >= 2 * len(names)  # the polls go on while they run
        assert {sup.info(n).health for n in names} == {"ok"}
        checked.clear()
        assert all(o.ok for o in await sup.stop(names, everything=True))
        assert checked == []  # 25 s of stops, yet no poll looked at the queue


async def test_a_stop_all_cut_short_lets_the_polls_go_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    names = [f"v{i}" for i in range(40)]
    raw = {"vimage_list": " ".join(names), "vimage_parallel_start": "YES"}
    for name in names:
        raw[f"vimage_{name}_health_interval"] = "1"
        raw[f"vimage_{name}_exec_stop"] = "/bin/sleep 5"
    plat = InProcessPlatform()
    plat.script("*", "/bin/sleep 5", duration=5)
    async with open_supervisor(config.build(raw), plat) as sup:
        assert all(o.ok for o in await sup.start(names))
        with trio.move_on_after(2):  # the client gave up: 8 stop (shielded), 32 queue
            await sup.stop(names, everything=True)
        await trio.sleep(4)
        running = [n for n in names if sup.info(n).state == "running"]
        assert len(running) == 32
        checked: list[str] = []
        real = sup.health.check

        async def counted(v: Vimage, *, run_cmd: bool = True) -> tuple[str, str | None, bool]:
            checked.append(v.name)
            return await real(v, run_cmd=run_cmd)

        sup.health.check = counted  # type: ignore[assignment,method-assign]
        await trio.sleep(3)
        assert set(checked) == set(running)


class CountedVimages(tuple):  # type: ignore[type-arg]
    """A test fake: a configuration's vimages, every one handed out counted."""

    handed = 0

    def __iter__(self) -> Iterator[Any]:
        for item in super().__iter__():
            CountedVimages.handed += 1
            yield item


async def test_stop_all_reads_the_configuration_a_few_times_not_once_per_vimage(
    autojump_clock: trio.testing.MockClock,
) -> None:
    names = [f"v{i}" for i in range(200)]
    cfg = config.build({"vimage_list": " ".join(names), "vimage_parallel_start": "YES"})
    async with open_supervisor(cfg, InProcessPlatform()) as sup:
        assert all(o.ok for o in await sup.start(names))
        sup.cfg = msgspec.structs.replace(cfg, vimages=CountedVimages(cfg.vimages))
        CountedVimages.handed = 0
        assert all(o.ok for o in await sup.stop(names, everything=True))
        assert CountedVimages.handed < 10 * len(names)  # was a pass per vimage: 40,800
        assert {sup.info(n).state for n in names} == {"stopped"}


class CountedName(str):
    """A test fake: a vimage name whose comparisons are counted."""

    compared = 0
    __hash__ = str.__hash__

    def __eq__(self, other: object) -> bool:
        CountedName.compared += 1
        return str.__eq__(self, other)


async def test_start_compares_each_name_a_few_times_not_with_every_other(
    autojump_clock: trio.testing.MockClock,
) -> None:
    names = [f"v{i}" for i in range(200)]
    cfg = config.build({"vimage_list": " ".join(names), "vimage_parallel_start": "YES"})
    async with open_supervisor(cfg, InProcessPlatform()) as sup:
        CountedName.compared = 0
        outcomes = await sup.start([CountedName(n) for n in names])
        assert [o.name for o in outcomes] == names
        assert all(o.ok for o in outcomes)
        assert CountedName.compared < 20 * len(names)  # was ~N²/2 in sorting out the reply
