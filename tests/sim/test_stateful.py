"""Sim tier, reliability: a hypothesis state machine driving the real vimaged process.

Random starts, stops, restarts and reloads of a small configuration (a vimage with a moved NIC,
two with bridged interfaces on the same parent, one depending on another), random faults
(dying jails that linger, failing ``vnet``/``-vnet``, a jail removed from outside) and random
SIGKILLs of the daemon, some in the middle of a ``vimagectl`` command, each followed by a
restart. After every step, once no vimage is starting or stopping, the invariants of
docs/design.md must hold:

- no NIC is lost: each is on the host, inside the running vimage that owns it, or reported
  ``pending-return`` with the holder jid the sim reports;
- no orphan: every eiface node and every ``ngN_NAME`` ifnet belongs to a running vimage and
  sits in its jail, and every bridge node has an eiface on it;
- the daemon's view is the sim's: running vimages have a live jail with their jid, others have
  none, and every live jail is a running vimage's (dying ones may linger).

CI runs 15 examples of 15 steps (about 45 s); hunt longer with
``STATEFUL_EXAMPLES=300 /work/venv/bin/pytest tests/sim/test_stateful.py``. The crash-window
tests at the end put the journal and kernel where a SIGKILL between two writes leaves them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from tests.sim.daemon_harness import Daemon, exchange
from vimagectl.client import Client
from vimaged.protocol import (
    Done,
    Error,
    ListVimages,
    Reload,
    Reloaded,
    Restart,
    Start,
    Stop,
    Vimages,
)
from vimaged.simhost import rpc
from vimaged.state import Journal

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from tests.sim.conftest import SimHostHandle
    from vimaged.protocol import Reply, Request, State, VimageInfo
    from vimaged.simhost.rpc import IfnetRecord, JailRecord, NgNodeRecord

pytestmark = pytest.mark.sim

NAMES = ("db", "web", "app")
NICS = ("em0", "em1", "fxp0")

COMMON = """
vimage_enable="NO"
vimage_list="db web app"
vimage_app_depend="db"
vimage_db_stop_timeout="2"
vimage_web_stop_timeout="2"
vimage_app_stop_timeout="2"
vimage_db_health_interval="0.2"
vimage_web_health_interval="0.2"
vimage_app_health_interval="0.2"
"""
CONFIGS = {
    "small": COMMON + 'vimage_db_vnets="em1"\nvimage_web_bridges="em0"\nvimage_app_bridges="em0"\n',
    "grown": COMMON
    + 'vimage_db_vnets="em1 fxp0"\nvimage_web_bridges="em0 em0"\nvimage_app_bridges="em0"\n',
}
FAULT = st.sampled_from(
    [
        "",
        "",
        "dying=1.5",
        "reclaim_fail=2",
        "move_fail=1",
        "dying=1, reclaim_fail=3",
        "dying=1.5, reclaim_fail=1:ENXIO",
        "link_race=2",
        "vanish=web@0.3",
        "vanish=db@0.5, dying=1",
    ]
)
"""Set before each operation: a dying jail lingers with its NICs, ``-vnet``/``vnet`` fail a
few times, bridge links are raced, a jail is removed from outside soon after it is made."""
SOME = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True)

BRIDGED = re.compile(r"^ng\d+_")
EIFACE_NODE_PREFIX = "vimaged_if_"
REQUEST_TIMEOUT = 60.0
QUIET_TIMEOUT = 30.0
"""How long a step may take to settle: stops wait out ``stop_timeout``, NICs a dying jail."""


class Snapshot:
    """The daemon's view and the sim's truth, taken between two equal daemon views."""

    def __init__(
        self, infos: dict[str, VimageInfo], sim: SimHostHandle, nics: Iterable[str]
    ) -> None:
        self.infos = infos
        self.jails: list[JailRecord] = sim.jails()
        self.where = {nic: sim.vnet_of(nic) for nic in nics}
        self.ifnets: dict[int, list[IfnetRecord]] = {0: sim.ifnets(0)}
        self.torn = False
        """A dying jail was gone by the time we looked inside: take another snapshot."""
        for jail in self.jails:
            try:
                self.ifnets[jail.jid] = sim.ifnets(jail.jid)
            except OSError as exc:
                # ENOENT: gone meanwhile; EINVAL: dying, so not enterable (jail_attach)
                if exc.errno not in (errno.ENOENT, errno.EINVAL):
                    raise
                self.ifnets[jail.jid] = []
                self.torn = True
        self.nodes: list[NgNodeRecord] = sim.ng_nodes()

    def violations(self) -> list[str]:
        return [*self._daemon_vs_sim(), *self._nics(), *self._orphans()]

    def _running(self) -> dict[int, VimageInfo]:
        return {v.jid: v for v in self.infos.values() if v.state == "running" and v.jid}

    def _daemon_vs_sim(self) -> list[str]:
        found = []
        live = {j.jid: j for j in self.jails if not j.dying}
        for v in self.infos.values():
            if v.state in ("starting", "stopping"):
                found.append(f"{v.name} is still {v.state}")
            elif v.state == "running":
                jail = live.get(v.jid or -1)
                if jail is None or jail.name != v.name:
                    found.append(f"{v.name} runs as jid {v.jid}, the sim has no such live jail")
                    continue
                inside = {i.name for i in self.ifnets[jail.jid]}
                for ifc in v.interfaces:
                    if ifc.where != "vimage" or ifc.name not in inside:
                        found.append(f"{v.name}: {ifc.name} is not inside jid {jail.jid}")
            elif any(j.name == v.name for j in live.values()):
                found.append(f"{v.name} is {v.state} but the sim has a live jail of that name")
        running = self._running()
        for jid, jail in live.items():
            if jid not in running:
                found.append(f"live jail {jail.name} (jid {jid}) belongs to no running vimage")
        return found

    def _nics(self) -> list[str]:
        found = []
        running = self._running()
        pending = {
            ifc.name: ifc.holder_jid
            for v in self.infos.values()
            for ifc in v.interfaces
            if ifc.where == "pending-return"
        }
        for nic, where in self.where.items():
            if where is None:
                found.append(f"{nic} is lost: in no vnet at all")
            elif nic in pending:
                if where != pending[nic]:
                    found.append(
                        f"{nic} reported pending from {pending[nic]}, sim has it in {where}"
                    )
            elif where != 0:
                holder = running.get(where)
                owned = holder is not None and any(
                    i.name == nic and i.kind == "vnet" for i in holder.interfaces
                )
                if not owned:
                    found.append(f"{nic} is in jid {where}: no running vimage owns it there")
        for v in self.infos.values():
            for ifc in v.interfaces:
                if ifc.kind == "vnet" and ifc.where == "host" and self.where.get(ifc.name) != 0:
                    actual = self.where.get(ifc.name)
                    found.append(f"{v.name}: {ifc.name} reported home, sim has it in {actual}")
        return found

    def _orphans(self) -> list[str]:
        found = []
        running = self._running()
        owned = {
            ifc.name: jid
            for jid, v in running.items()
            for ifc in v.interfaces
            if ifc.kind == "bridge"
        }
        for jid, ifnets in self.ifnets.items():
            for ifnet in ifnets:
                bridged = BRIDGED.match(ifnet.name) or ifnet.name.startswith("ngeth")
                if bridged and owned.get(ifnet.name) != jid:
                    found.append(f"orphan ifnet {ifnet.name} in jid {jid}")
        kinds = {n.id: n.type for n in self.nodes}
        for node in self.nodes:
            if node.type == "eiface":
                ifname = node.name.removeprefix(EIFACE_NODE_PREFIX)
                if ifname not in owned:
                    found.append(f"orphan eiface node {node.name!r}")
            elif node.type == "bridge" and not any(
                kinds.get(h.peer_id) == "eiface" for h in node.hooks
            ):
                found.append(f"bridge node {node.name!r} has no eiface")
        return found


class DaemonMachine(RuleBasedStateMachine):
    """One example: a fresh sim host, a fresh state directory, one daemon at a time."""

    def __init__(self, sim: SimHostHandle, workdir: Path) -> None:
        super().__init__()
        self.sim = sim
        sim.reset(nics=list(NICS))
        self.daemon = Daemon(sim_socket=sim.socket_path, workdir=workdir, log_level="info")
        self.daemon.write_config(CONFIGS["small"])
        self.daemon.start()

    def teardown(self) -> None:
        self.daemon.stop()

    # ------------------------------------------------------------------ driving

    def request(self, req: Request) -> Reply:
        with Client(self.daemon.socket_path, REQUEST_TIMEOUT) as client:
            return exchange(client, req)

    def infos(self) -> dict[str, VimageInfo]:
        reply = self.request(ListVimages())
        assert isinstance(reply, Vimages), reply
        return {v.name: v for v in reply.vimages}

    def done(self, req: Request, goal: State, *, refused: str | None = None) -> None:
        before = self.infos() if refused else {}
        reply = self.request(req)
        if refused and isinstance(reply, Error) and reply.code == refused:
            # refused before acting: nothing running was stopped (a fault may still fail one)
            after = self.infos()
            assert all(after[n].state != "stopped" for n, v in before.items()
                       if v.state == "running"), (before, after)  # fmt: skip
            return
        assert isinstance(reply, Done), f"{req} -> {reply}"
        for outcome in reply.outcomes:
            # what succeeded reached its goal; what failed says why with a wire code
            assert outcome.state == goal if outcome.ok else outcome.code, outcome
            if not outcome.ok:
                assert outcome.state != goal or outcome.code == "conflict", outcome

    def restart_daemon(self) -> None:
        self.daemon.start()

    # ------------------------------------------------------------------ rules

    @rule(names=SOME, fault=FAULT)
    def start(self, names: list[str], fault: str) -> None:
        self.sim.set_faults(fault)
        self.done(Start(names=tuple(names)), "running")

    @rule(names=SOME, fault=FAULT, with_dependents=st.booleans())
    def stop(self, names: list[str], fault: str, with_dependents: bool) -> None:
        self.sim.set_faults(fault)
        req = Stop(names=tuple(names), with_dependents=with_dependents)
        # app depends on db: stopping db alone while app runs is refused (issue 13 item 3)
        self.done(req, "stopped", refused=None if with_dependents else "dependents_running")

    @rule(name=st.sampled_from(NAMES), fault=FAULT)
    def restart(self, name: str, fault: str) -> None:
        self.sim.set_faults(fault)
        self.done(Restart(names=(name,)), "running")

    @rule(fault=FAULT)
    def start_all(self, fault: str) -> None:
        self.sim.set_faults(fault)
        self.done(Start(all_=True), "running")

    @rule(fault=FAULT)
    def stop_all(self, fault: str) -> None:
        self.sim.set_faults(fault)
        self.done(Stop(all_=True), "stopped")

    @rule(config=st.sampled_from(sorted(CONFIGS)))
    def reload(self, config: str) -> None:
        self.daemon.write_config(CONFIGS[config])
        reply = self.request(Reload())
        assert isinstance(reply, Reloaded), reply
        # app is the same in both; a running vimage is compared with what it runs
        assert (reply.added, reply.removed) == ((), ())
        assert set(reply.changed) <= {"db", "web"}

    @rule(name=st.sampled_from(NAMES))
    def jail_vanishes(self, name: str) -> None:
        if self.infos()[name].state != "running":
            return
        with contextlib.suppress(OSError):  # a vanish fault may have been quicker
            self.sim.kill_jail(name)
        # the health poll sees it gone and tears the rest down
        self.wait_for(lambda: self.infos()[name].state == "failed", f"{name} failed")

    @rule()
    def sigkill(self) -> None:
        self.daemon.kill(signal.SIGKILL)
        self.restart_daemon()

    @rule(
        verb=st.sampled_from(
            [("start", "--all"), ("stop", "--all"), ("restart", "app"), ("start", "app")]
        ),
        delay=st.floats(min_value=0.0, max_value=0.6),
        fault=FAULT,
    )
    def sigkill_during(self, verb: tuple[str, str], delay: float, fault: str) -> None:
        self.sim.set_faults(fault)
        ctl = subprocess.Popen(
            [sys.executable, "-m", "vimagectl", "-s", self.daemon.socket_path, *verb],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(delay)  # a random point in the operation, not a wait for a condition
            self.daemon.kill(signal.SIGKILL)
        finally:
            ctl.wait(timeout=REQUEST_TIMEOUT)
        self.restart_daemon()

    # ------------------------------------------------------------------ invariants

    def wait_for(self, predicate: object, what: str) -> None:
        assert callable(predicate)
        deadline = time.monotonic() + QUIET_TIMEOUT
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}\n{self.tail()}"
            time.sleep(0.05)

    def tail(self) -> str:
        return "\n".join(self.daemon.log().splitlines()[-60:])

    @invariant()
    def kernel_and_daemon_agree(self) -> None:
        """Poll until a stable snapshot shows no violation; fail with the last one seen."""
        deadline = time.monotonic() + QUIET_TIMEOUT
        problems: list[str] = []
        while time.monotonic() < deadline:
            before = self.infos()
            snapshot = Snapshot(before, self.sim, NICS)
            if self.infos() == before and not snapshot.torn:
                problems = snapshot.violations()
                if not problems:
                    return
            time.sleep(0.05)
        raise AssertionError("\n".join([*problems, self.tail()]))


def test_daemon_survives_random_operations_faults_and_kills(
    sim_host: SimHostHandle, tmp_path_factory: pytest.TempPathFactory
) -> None:
    class Machine(DaemonMachine):
        def __init__(self) -> None:
            super().__init__(sim_host, Path(tmp_path_factory.mktemp("stateful")))

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=int(os.environ.get("STATEFUL_EXAMPLES", "15")),
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


# ---------------------------------------------------------------------- crash windows
# A SIGKILL lands between two journal writes only by luck; these tests put the daemon in the
# narrow windows on purpose: the kernel and journal as a kill there leaves them.


@pytest.fixture
def daemon(sim_host: SimHostHandle, tmp_path: Path) -> Iterator[Daemon]:
    sim_host.reset(nics=list(NICS))
    d = Daemon(sim_socket=sim_host.socket_path, workdir=tmp_path, log_level="info")
    d.write_config(CONFIGS["small"])
    yield d
    d.stop()


def check_agree(d: Daemon, sim: SimHostHandle) -> dict[str, VimageInfo]:
    deadline = time.monotonic() + QUIET_TIMEOUT
    problems: list[str] = []
    while time.monotonic() < deadline:
        with Client(d.socket_path, REQUEST_TIMEOUT) as client:
            reply = exchange(client, ListVimages())
        assert isinstance(reply, Vimages), reply
        infos = {v.name: v for v in reply.vimages}
        snapshot = Snapshot(infos, sim, NICS)
        problems = ["torn"] if snapshot.torn else snapshot.violations()
        if not problems:
            return infos
        time.sleep(0.05)
    raise AssertionError("\n".join([*problems, d.log()[-4000:]]))


def test_killed_between_jail_creation_and_its_journal_entry(
    daemon: Daemon, sim_host: SimHostHandle
) -> None:
    boot = sim_host.call(rpc.GetBootId())
    assert isinstance(boot, rpc.BootId)

    async def journal_start_intent() -> None:
        journal = await Journal.open(str(daemon.workdir / "state"), boot_id=boot.boot_id)
        await journal.set_autostarted_boot(boot.boot_id)  # a restarted daemon, not the boot one
        await journal.set_vimage("web", desired="running", jid=None)
        await journal.intend("jail", "web", vimage="web")
        await journal.aclose()

    trio.run(journal_start_intent)
    orphan = sim_host.create_jail("web")  # created, then killed before marking it done
    daemon.start()
    infos = check_agree(daemon, sim_host)
    assert infos["web"].state == "running"  # the interrupted start was retried
    assert infos["web"].jid != orphan
    assert [j.jid for j in sim_host.jails() if not j.dying] == [infos["web"].jid]


def test_killed_during_stop_stays_stopped(daemon: Daemon, sim_host: SimHostHandle) -> None:
    daemon.start()
    daemon.ok("start", "db")
    sim_host.script_exec("db", "rc.shutdown", status=0, duration=30.0)
    ctl = subprocess.Popen(
        [sys.executable, "-m", "vimagectl", "-s", daemon.socket_path, "stop", "db"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        daemon.wait_until(
            lambda: any(
                "rc.shutdown" in e.command and e.outcome == "running" for e in sim_host.exec_log()
            ),
            what="exec_stop running",
        )
        daemon.kill(signal.SIGKILL)
    finally:
        ctl.wait(timeout=REQUEST_TIMEOUT)
    daemon.start()
    infos = check_agree(daemon, sim_host)
    assert infos["db"].state == "stopped"  # the operator asked for it; a crash keeps the ask
    assert sim_host.vnet_of("em1") == 0
    assert not [j for j in sim_host.jails() if not j.dying]


def test_nic_pending_return_stays_visible_after_reload_drops_it(
    daemon: Daemon, sim_host: SimHostHandle
) -> None:
    daemon.write_config(CONFIGS["grown"])
    daemon.start()
    daemon.ok("start", "db")
    jid = daemon.vimages()["db"]["jid"]
    sim_host.set_faults("dying=30, reclaim_fail=1000")
    daemon.ok("stop", "db")
    daemon.write_config(CONFIGS["small"])  # fxp0 is no longer db's, but db's jail holds it
    daemon.ok("reload")
    assert sim_host.vnet_of("fxp0") == jid
    where = {i["name"]: (i["where"], i["holder_jid"]) for i in daemon.vimages()["db"]["interfaces"]}
    assert where["fxp0"] == ("pending-return", jid)
    sim_host.set_faults("")  # the watcher brings both home; fxp0 is then db's no more
    daemon.wait_until(
        lambda: [i["name"] for i in daemon.vimages()["db"]["interfaces"]] == ["em1"],
        what="fxp0 home and forgotten",
    )
    assert sim_host.vnet_of("fxp0") == 0
