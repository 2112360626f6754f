"""Benchmark, reliability: a soak of the real vimaged process on a simulated FreeBSD host.

N operations (default 10,000): start, stop or restart of a random vimage, sent in-process over
one ``vimagectl.client.Client`` connection (no process per operation). Now and then a fault is
injected on the sim host (dying jails that linger, failing ``-vnet``/``vnet``, raced bridge
links, a jail removed from outside, a SIGKILLed and restarted daemon). Every ``--check-every``
operations, and at the end, the invariants of tests/sim/test_stateful.py are checked once the
daemon is quiet; at the very end every vimage is stopped and the host must be as it started:
every NIC home, no jail left, no netgraph node but the NICs' own.

Prints operations per second, NICs lost and orphans (both must be 0); exits 1 otherwise.

Run: ``/work/venv/bin/python benchmarks/soak.py --ops 10000 --seed 1``
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.sim.conftest import SimHostHandle
from tests.sim.daemon_harness import Daemon, exchange
from tests.sim.test_stateful import Snapshot
from vimagectl.client import Client, ClientError
from vimaged.protocol import Done, ListVimages, Restart, Start, Stop, Vimages

if TYPE_CHECKING:
    from vimaged.protocol import VimageInfo

NICS = ("em0", "em1", "em2", "fxp0", "igb0")
NAMES = ("db", "cache", "web", "app", "api", "mail")
CONFIG = """
vimage_enable="NO"
vimage_list="db cache web app api mail"
vimage_db_vnets="em1"
vimage_cache_vnets="fxp0 igb0"
vimage_web_bridges="em0"
vimage_app_bridges="em0 em0"
vimage_app_depend="db"
vimage_api_bridges="em2"
vimage_api_depend="cache"
vimage_mail_bridges="em2 em0"
""" + "".join(f'vimage_{n}_stop_timeout="2"\nvimage_{n}_health_interval="0.5"\n' for n in NAMES)
FAULTS = (
    "dying=1",
    "reclaim_fail=2",
    "move_fail=1",
    "dying=1, reclaim_fail=3",
    "link_race=2",
)
QUIET_TIMEOUT = 60.0


class Soak:
    def __init__(self, sim: SimHostHandle, daemon: Daemon, rng: random.Random) -> None:
        self.sim = sim
        self.daemon = daemon
        self.rng = rng
        self.client: Client | None = None
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.injected: collections.Counter[str] = collections.Counter()
        self.violations: list[str] = []
        self.checks = 0

    def connect(self) -> Client:
        if self.client is None:
            self.client = Client(self.daemon.socket_path, 120.0)
            self.client.connect()
        return self.client

    def infos(self) -> dict[str, VimageInfo]:
        reply = exchange(self.connect(), ListVimages())
        assert isinstance(reply, Vimages), reply
        return {v.name: v for v in reply.vimages}

    def operate(self) -> None:
        verb = self.rng.choice((Start, Stop, Restart))
        name = self.rng.choice(NAMES)
        reply = exchange(self.connect(), verb(names=(name,)))
        if not isinstance(reply, Done):
            self.outcomes[f"{verb.__name__.lower()} error {type(reply).__name__}"] += 1
            return
        for outcome in reply.outcomes:
            result = "ok" if outcome.ok else f"refused {outcome.code}"
            self.outcomes[f"{verb.__name__.lower()} {result}"] += 1

    def inject(self) -> None:
        kind = self.rng.choice(("fault", "fault", "vanish", "sigkill", "clear"))
        self.injected[kind] += 1
        if kind == "fault":
            self.sim.set_faults(self.rng.choice(FAULTS))
        elif kind == "clear":
            self.sim.set_faults("")
        elif kind == "vanish":
            live = [j for j in self.sim.jails() if not j.dying]
            if live:
                self.sim.kill_jail(self.rng.choice(live).name)
        else:
            if self.client is not None:
                self.client.close()
                self.client = None
            self.daemon.kill(signal.SIGKILL)
            self.daemon.start()

    def check(self, *, settle: bool) -> None:
        """Wait for a quiet daemon whose view the sim confirms; record what stays wrong."""
        self.checks += 1
        deadline = time.monotonic() + QUIET_TIMEOUT
        problems: list[str] = []
        while time.monotonic() < deadline:
            before = self.infos()
            snapshot = Snapshot(before, self.sim, NICS)
            pending = any(
                i.where == "pending-return" for v in snapshot.infos.values() for i in v.interfaces
            )
            if self.infos() == before and not snapshot.torn:
                problems = snapshot.violations()
                if not problems and not (settle and pending):
                    return
            time.sleep(0.05)
        self.violations.extend(problems or ["pending NICs never came home"])

    def final_host_is_clean(self) -> list[str]:
        """After ``stop --all`` and a quiet period: everything home, nothing of ours left."""
        found: list[str] = []
        deadline = time.monotonic() + QUIET_TIMEOUT
        while time.monotonic() < deadline:
            found = []
            lost = [n for n in NICS if self.sim.vnet_of(n) != 0]
            found += [f"{n} not home (in {self.sim.vnet_of(n)})" for n in lost]
            found += [f"jail {j.name} (jid {j.jid}) left" for j in self.sim.jails()]
            found += [
                f"node {n.name or n.id} ({n.type}) left"
                for n in self.sim.ng_nodes()
                if n.type not in ("ether", "socket")
            ]
            found += [f"ifnet {i.name} left" for i in self.sim.ifnets(0) if i.name.startswith("ng")]
            if not found:
                break
            time.sleep(0.1)
        return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fault-every", type=int, default=50, help="mean ops between faults")
    parser.add_argument("--check-every", type=int, default=1000)
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep the daemon's log")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        sim_socket = str(work / "sim.sock")
        simhost = subprocess.Popen(
            [sys.executable, "-m", "vimaged.simhost", "--socket", sim_socket],
            stdin=subprocess.DEVNULL,
        )
        try:
            while not os.path.exists(sim_socket):
                time.sleep(0.05)
            sim = SimHostHandle(sim_socket)
            sim.reset(nics=list(NICS))
            daemon = Daemon(sim_socket=sim_socket, workdir=work, log_level="info")
            daemon.write_config(CONFIG)
            daemon.start()
            soak = Soak(sim, daemon, rng)
            busy = 0.0
            started = time.perf_counter()
            for op in range(1, args.ops + 1):
                if rng.random() < 1 / args.fault_every:
                    soak.inject()
                t0 = time.perf_counter()
                try:
                    soak.operate()
                except ClientError as exc:  # only a daemon we killed may drop us
                    soak.violations.append(f"op {op}: {exc.code}: {exc.message}")
                busy += time.perf_counter() - t0
                if op % args.check_every == 0:
                    sim.set_faults("")
                    soak.check(settle=False)
                    print(f"{op} ops, {len(soak.violations)} violations", flush=True)
            elapsed = time.perf_counter() - started
            sim.set_faults("")
            soak.check(settle=True)
            reply = exchange(soak.connect(), Stop(all_=True))
            assert isinstance(reply, Done), reply
            leftovers = soak.final_host_is_clean()
            if soak.client is not None:
                soak.client.close()
            daemon.stop()
            sim.close()
        finally:
            simhost.terminate()
            simhost.wait()
    lost = [v for v in [*soak.violations, *leftovers] if "lost" in v or "not home" in v]
    orphans = [v for v in [*soak.violations, *leftovers] if v not in lost]
    print(f"operations: {args.ops} in {elapsed:.1f} s: {args.ops / elapsed:.1f} ops/s overall,")
    print(f"  {args.ops / busy:.1f} ops/s counting request time only (seed {args.seed})")
    print(f"faults injected: {dict(sorted(soak.injected.items()))}")
    for key, count in sorted(soak.outcomes.items()):
        print(f"  {key}: {count}")
    print(f"invariant checks: {soak.checks}, daemon starts: {daemon.starts}")
    print(f"NICs lost: {len(lost)}")
    print(f"orphans and disagreements: {len(orphans)}")
    for problem in [*lost, *orphans][:20]:
        print(f"  {problem}")
    return 0 if not lost and not orphans else 1


if __name__ == "__main__":
    sys.exit(main())
