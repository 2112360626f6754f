"""Benchmark of vimaged-cni against the reference macvlan and bridge plugins, all with host-local.

Everything happens in private namespaces: a "host" namespace where vimaged runs (linux
platform) with a veth ``lan0`` as the parent NIC and a Linux bridge ``br0``, and one sandbox
namespace per container. The plugins are exec'd as a runtime does (CNI_* environment, the
config on stdin); the reference plugins (Debian's containernetworking-plugins) run inside the
host namespace, where their ``master`` / ``bridge`` is. vimaged-cni runs as the launcher of
``python3 -m vimaged_cni.launcher`` writes: the compiled client (``vimaged-c``, ``vimaged-c-br``
with parent br0: a veth pair, as the bridge plugin makes), the ``-IS`` Python launcher
(``vimaged``, ``vimaged-br``), and pip's console script (``vimaged-pip``). Measured: ADD +
DEL latency, one container at a time, and N concurrent ADDs on one parent followed by N
concurrent DELs (distinct links, all removed).

usage (root): python benchmarks/bench_cni.py [N] [ROUNDS] [OLD]   (defaults 200 and 40)
OLD: a directory holding another vimaged_cni (say, an older commit's, from ``git archive``),
run as pip's console script runs it (kind ``old-pip``), for before/after figures.
"""

from __future__ import annotations

import ast
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from vimagectl.client import Client
from vimaged_cni import launcher

if TYPE_CHECKING:
    from vimagectl.replies import CniAdd, CniDel

REFERENCE = "/usr/lib/cni"
PIP_SCRIPT = Path(sys.executable).parent / "vimaged-cni"


PROFILER = """#!{python} -IS
import time
t0 = time.perf_counter()
import sys
sys.path.append({root!r})
from vimaged_cni import cli, client
phases = {{"imports": time.perf_counter() - t0, "daemon": 0.0}}
def timed(name, f):
    def run(*args):
        began = time.perf_counter()
        try:
            return f(*args)
        finally:
            phases[name] += time.perf_counter() - began
    return run
client.cni_exec = timed("daemon", client.cni_exec)  # connect to reply: IPAM runs in there
try:
    cli.main()
finally:
    phases["in_python"] = time.perf_counter() - t0
    sys.stderr.write(repr(phases))
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class Bench:
    def __init__(self, tmp: Path, tag: str, old: str | None) -> None:
        self.tmp = tmp
        self.tag = tag
        self.host = f"{tag}h"
        self.lan = f"{tag}l"
        self.socket = str(tmp / "vimaged.sock")
        self.bin = tmp / "bin"
        self.bin.mkdir()
        launcher.install(str(self.bin))
        (self.bin / "c").mkdir()
        (self.bin / "vimaged-c").symlink_to(launcher.install_compiled(str(self.bin / "c")))
        if PIP_SCRIPT.exists():  # an editable install of the tree may have none
            (self.bin / "vimaged-pip").symlink_to(PIP_SCRIPT)
        if old is not None:  # what pip's console script (distlib's template) does, at OLD
            script = self.bin / "old-pip"
            script.write_text(f"#!{sys.executable}\nimport re, sys\nsys.path.insert(0, {old!r})\n"
                              "from vimaged_cni.cli import main\nmain()\n")  # fmt: skip
            script.chmod(0o755)
        root = str(Path(launcher.__file__).resolve().parents[1])
        prof = self.bin / "vimaged-prof"  # the launcher, timing its phases onto stderr
        prof.write_text(PROFILER.format(python=sys.executable, root=root))
        prof.chmod(0o755)
        for name in ("host-local", "macvlan", "bridge"):
            (self.bin / name).symlink_to(f"{REFERENCE}/{name}")

    def conf(self, kind: str) -> bytes:
        ipam = {
            "type": "host-local",
            "ranges": [[{"subnet": "10.64.0.0/16", "gateway": "10.64.0.1"}]],
            "dataDir": str(self.tmp / f"ipam-{kind}"),
        }
        plugin: dict[str, object] = {"cniVersion": "1.0.0", "name": f"b{kind}", "ipam": ipam}
        if kind == "macvlan":
            plugin.update(type="macvlan", master="lan0", mode="bridge")
        elif kind == "bridge":
            plugin.update(type="bridge", bridge="br0")
        else:
            parent = "br0" if kind in ("vimaged-br", "vimaged-c-br") else "lan0"
            plugin.update(type="vimaged-cni", parent=parent, socket=self.socket)
        return json.dumps(plugin).encode()

    def call(self, kind: str, command: str, i: int) -> float:
        return self.run(kind, command, i)[0]

    def run(self, kind: str, command: str, i: int) -> tuple[float, bytes]:
        env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=f"c{i}",
                   CNI_NETNS=f"/run/netns/{self.tag}s{i}", CNI_IFNAME="eth0",
                   CNI_PATH=str(self.bin))  # fmt: skip
        programs = {
            "vimaged": "vimaged-cni",
            "vimaged-br": "vimaged-cni",
            "vimaged-c-br": "vimaged-c",
        }
        program = programs.get(kind, kind)
        kind = "vimaged" if kind == "vimaged-prof" else kind
        argv = [str(self.bin / program)]
        if kind in ("macvlan", "bridge"):
            argv = ["nsenter", f"--net=/run/netns/{self.host}", *argv]
        began = time.perf_counter()
        done = subprocess.run(argv, input=self.conf(kind), env=env, capture_output=True)
        elapsed = time.perf_counter() - began
        if done.returncode != 0:
            raise RuntimeError(f"{kind} {command} c{i}: {done.stdout!r} {done.stderr!r}")
        return elapsed, done.stderr

    def host_links(self) -> int:
        out = subprocess.run(["ip", "-n", self.host, "-o", "link"], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
        return len(out.splitlines())


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    old = sys.argv[3] if len(sys.argv) > 3 else None
    tag = "bc" + secrets.token_hex(3)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        b = Bench(tmp, tag, old)
        daemon = None
        sandboxes = range(max(n, 1))
        try:
            ip("netns", "add", b.host)
            ip("netns", "add", b.lan)
            ip("-n", b.host, "link", "add", "lan0", "type", "veth", "peer", "name", "p0",
               "netns", b.lan)  # fmt: skip
            ip("-n", b.host, "link", "set", "lan0", "up")
            ip("-n", b.host, "link", "add", "br0", "type", "bridge")
            ip("-n", b.host, "link", "set", "br0", "up")
            for i in sandboxes:
                ip("netns", "add", f"{tag}s{i}")
            (tmp / "rc.conf").write_text('vimage_enable="NO"\nvimage_list=""\n')
            daemon = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{b.host}", sys.executable, "-m", "vimaged",
                 "--platform", "linux", "--config", str(tmp / "rc.conf"), "--socket", b.socket,
                 "--state-dir", str(tmp / "state"), "--log-level", "warning"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + 20
            while not os.path.exists(b.socket):
                if time.monotonic() > deadline or daemon.poll() is not None:
                    raise RuntimeError("vimaged did not come up")
                time.sleep(0.05)
            time.sleep(0.2)
            baseline = b.host_links()
            print(f"ADD + DEL latency, one at a time, {rounds} rounds (medians, ms):")
            kinds = ["macvlan", "bridge", "vimaged-c", "vimaged-c-br", "vimaged", "vimaged-br",
                     "vimaged-pip"]  # fmt: skip
            if not PIP_SCRIPT.exists():
                kinds.remove("vimaged-pip")
            if old is not None:
                kinds.append("old-pip")
            adds: dict[str, list[float]] = {kind: [] for kind in kinds}
            dels: dict[str, list[float]] = {kind: [] for kind in kinds}
            for r in range(rounds):  # every kind in each round: the machine's load varies
                for kind in kinds:
                    adds[kind].append(b.call(kind, "ADD", r))
                    dels[kind].append(b.call(kind, "DEL", r))
            for kind in kinds:
                a, d = sorted(adds[kind]), sorted(dels[kind])
                med_a, med_d = statistics.median(a) * 1e3, statistics.median(d) * 1e3
                print(f"  {kind:11} ADD {med_a:7.1f} (min {a[0] * 1e3:5.1f})"
                      f"  DEL {med_d:7.1f} (min {d[0] * 1e3:5.1f})")  # fmt: skip
            print("  where a vimaged-cni ADD's time goes (medians, ms):")
            phases: dict[str, list[float]] = {}
            for r in range(rounds):
                wall, stderr = b.run("vimaged-prof", "ADD", r)
                b.call("vimaged", "DEL", r)
                timing = ast.literal_eval(stderr.decode())
                timing["interpreter start"] = wall - timing.pop("in_python")
                timing["wall"] = wall
                for name, seconds in timing.items():
                    phases.setdefault(name, []).append(seconds)
            print("   ", "  ".join(f"{name} {statistics.median(v) * 1e3:.1f}"
                                   for name, v in phases.items()))  # fmt: skip
            print("  the daemon's part alone (cni_add / cni_del requests, no IPAM, no exec):")
            direct_adds: list[float] = []
            direct_dels: list[float] = []
            for r in range(rounds):
                cid = f"c{r}"
                add: CniAdd = {"op": "cni_add", "network": "direct", "container_id": cid,
                               "ifname": "eth0", "parent": "lan0",
                               "sandbox": f"/run/netns/{tag}s{r}"}  # fmt: skip
                delete: CniDel = {"op": "cni_del", "network": "direct", "container_id": cid,
                                  "ifname": "eth0"}  # fmt: skip
                for request, times in ((add, direct_adds), (delete, direct_dels)):
                    began = time.perf_counter()
                    with Client(b.socket, 30) as ctl:
                        ctl.request(request)
                    times.append(time.perf_counter() - began)
            print(f"  {'daemon':11} ADD {statistics.median(direct_adds) * 1e3:7.1f}"
                  f"  DEL {statistics.median(direct_dels) * 1e3:7.1f}")  # fmt: skip
            print(f"{n} concurrent ADDs on one parent, then {n} concurrent DELs (wall, s):")
            for kind in ("macvlan", "bridge", "vimaged-c", "vimaged"):
                with ThreadPoolExecutor(max_workers=n) as pool:
                    began = time.perf_counter()
                    list(pool.map(lambda i, k=kind: b.call(k, "ADD", i), range(n)))
                    added = time.perf_counter() - began
                    began = time.perf_counter()
                    list(pool.map(lambda i, k=kind: b.call(k, "DEL", i), range(n)))
                    deleted = time.perf_counter() - began
                left = b.host_links() - baseline
                print(f"  {kind:11} ADD {added:6.2f}  DEL {deleted:6.2f}  left on host: {left}")
        finally:
            if daemon is not None:
                daemon.terminate()
                daemon.wait()
            for netns in [b.host, b.lan, *(f"{tag}s{i}" for i in sandboxes)]:
                subprocess.run(["ip", "netns", "delete", netns], capture_output=True, check=False)


if __name__ == "__main__":
    main()
