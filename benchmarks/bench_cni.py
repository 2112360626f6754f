"""Benchmark of vimaged-cni against the reference macvlan plugin, both with host-local IPAM.

Everything happens in private namespaces: a "host" namespace where vimaged runs (linux
platform) with a veth as the parent NIC, and one sandbox namespace per container. Both plugins
are exec'd as a runtime does (CNI_* environment, the config on stdin); the reference macvlan
plugin (Debian's containernetworking-plugins) runs inside the host namespace, where its
``master`` is. Measured: ADD + DEL latency, one container at a time, and N concurrent ADDs on
one parent followed by N concurrent DELs (distinct links, all removed).

usage (root): python benchmarks/bench_cni.py [N] [ROUNDS]   (defaults 200 and 20)
"""

from __future__ import annotations

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

from vimaged_cni import client

REFERENCE = "/usr/lib/cni"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class Bench:
    def __init__(self, tmp: Path, tag: str) -> None:
        self.tmp = tmp
        self.tag = tag
        self.host = f"{tag}h"
        self.lan = f"{tag}l"
        self.socket = str(tmp / "vimaged.sock")
        self.bin = tmp / "bin"
        self.bin.mkdir()
        plugin = self.bin / "vimaged-cni"
        plugin.write_text(
            f"#!/bin/sh\nexec {sys.executable} -c 'from vimaged_cni.cli import main; main()'\n"
        )
        plugin.chmod(0o755)
        for name in ("host-local", "macvlan"):
            (self.bin / name).symlink_to(f"{REFERENCE}/{name}")

    def conf(self, kind: str) -> bytes:
        ipam = {
            "type": "host-local",
            "ranges": [[{"subnet": "10.64.0.0/16", "gateway": "10.64.0.1"}]],
            "dataDir": str(self.tmp / f"ipam-{kind}"),
        }
        plugin: dict[str, object] = {"cniVersion": "1.0.0", "name": f"b{kind}", "ipam": ipam}
        if kind == "vimaged":
            plugin.update(type="vimaged-cni", parent="lan0", socket=self.socket)
        else:
            plugin.update(type="macvlan", master="lan0", mode="bridge")
        return json.dumps(plugin).encode()

    def call(self, kind: str, command: str, i: int) -> float:
        env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=f"c{i}",
                   CNI_NETNS=f"/run/netns/{self.tag}s{i}", CNI_IFNAME="eth0",
                   CNI_PATH=str(self.bin))  # fmt: skip
        argv = [str(self.bin / ("vimaged-cni" if kind == "vimaged" else "macvlan"))]
        if kind == "macvlan":
            argv = ["nsenter", f"--net=/run/netns/{self.host}", *argv]
        began = time.perf_counter()
        done = subprocess.run(argv, input=self.conf(kind), env=env, capture_output=True)
        elapsed = time.perf_counter() - began
        if done.returncode != 0:
            raise RuntimeError(f"{kind} {command} c{i}: {done.stdout!r} {done.stderr!r}")
        return elapsed

    def host_links(self) -> int:
        out = subprocess.run(["ip", "-n", self.host, "-o", "link"], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
        return len(out.splitlines())


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    tag = "bc" + secrets.token_hex(3)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        b = Bench(tmp, tag)
        daemon = None
        sandboxes = range(max(n, 1))
        try:
            ip("netns", "add", b.host)
            ip("netns", "add", b.lan)
            ip("-n", b.host, "link", "add", "lan0", "type", "veth", "peer", "name", "p0",
               "netns", b.lan)  # fmt: skip
            ip("-n", b.host, "link", "set", "lan0", "up")
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
            for kind in ("macvlan", "vimaged", "macvlan", "vimaged"):  # in turns: machine load
                adds, dels = [], []
                for r in range(rounds):
                    adds.append(b.call(kind, "ADD", r))
                    dels.append(b.call(kind, "DEL", r))
                print(f"  {kind:8} ADD {statistics.median(adds) * 1e3:7.1f}"
                      f"  DEL {statistics.median(dels) * 1e3:7.1f}")  # fmt: skip
            print("  the daemon's part alone (cni_add / cni_del requests, no IPAM, no exec):")
            adds, dels = [], []
            for r in range(rounds):
                key = {"network": "direct", "container_id": f"c{r}", "ifname": "eth0"}
                began = time.perf_counter()
                client.request(b.socket, {"op": "cni_add", **key, "parent": "lan0",
                                          "sandbox": f"/run/netns/{tag}s{r}"})  # fmt: skip
                adds.append(time.perf_counter() - began)
                began = time.perf_counter()
                client.request(b.socket, {"op": "cni_del", **key})
                dels.append(time.perf_counter() - began)
            print(f"  {'daemon':8} ADD {statistics.median(adds) * 1e3:7.1f}"
                  f"  DEL {statistics.median(dels) * 1e3:7.1f}")  # fmt: skip
            print(f"{n} concurrent ADDs on one parent, then {n} concurrent DELs (wall, s):")
            for kind in ("macvlan", "vimaged"):
                with ThreadPoolExecutor(max_workers=n) as pool:
                    began = time.perf_counter()
                    list(pool.map(lambda i, k=kind: b.call(k, "ADD", i), range(n)))
                    added = time.perf_counter() - began
                    began = time.perf_counter()
                    list(pool.map(lambda i, k=kind: b.call(k, "DEL", i), range(n)))
                    deleted = time.perf_counter() - began
                left = b.host_links() - baseline
                print(f"  {kind:8} ADD {added:6.2f}  DEL {deleted:6.2f}  left on host: {left}")
        finally:
            if daemon is not None:
                daemon.terminate()
                daemon.wait()
            for netns in [b.host, b.lan, *(f"{tag}s{i}" for i in sandboxes)]:
                subprocess.run(["ip", "netns", "delete", netns], capture_output=True, check=False)


if __name__ == "__main__":
    main()
