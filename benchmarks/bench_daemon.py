"""Benchmark: the daemon on the sim host (docs/performance.md records the figures).

- ``vimagectl list --json`` wall time with N configured vimages, against bare
  ``python3 -c pass`` (target: at most 4x);
- start and stop throughput of N bridged vimages (``vimagectl start --all`` / ``stop --all``).

Run: ``.venv/bin/python benchmarks/bench_daemon.py --vimages 1000``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.sim.daemon_harness import Daemon


def wall(command: list[str], runs: int) -> float:
    """Median wall time of ``command`` over ``runs`` runs, in milliseconds."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vimages", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sim_socket = str(work / "sim.sock")
        sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vimaged.simhost",
                "--socket",
                sim_socket,
                "--sim-nics",
                "em0 em1",
            ]
        )
        try:
            while not os.path.exists(sim_socket):
                time.sleep(0.05)
            names = [f"v{i:04d}" for i in range(args.vimages)]
            lines = [
                'vimage_enable="NO"',
                'vimage_parallel_start="YES"',
                f'vimage_list="{" ".join(names)}"',
            ]
            lines += [f'vimage_{n}_bridges="em0"' for n in names]
            daemon = Daemon(sim_socket=sim_socket, workdir=work, log_level="warning")
            daemon.write_config("\n".join(lines) + "\n")
            daemon.start()
            ctl = [sys.executable, "-m", "vimagectl", "-s", daemon.socket_path]
            baseline = wall([sys.executable, "-c", "pass"], args.runs)
            listing = wall([*ctl, "--json", "list"], args.runs)
            print(f"python3 -c pass: {baseline:.1f} ms (median of {args.runs})")
            print(
                f"vimagectl list --json, {args.vimages} vimages: {listing:.1f} ms "
                f"({listing / baseline:.2f}x)"
            )
            started = time.perf_counter()
            result = daemon.ctl("--timeout", "3600", "start", "--all", timeout=3600)
            took = time.perf_counter() - started
            assert result.code == 0, result
            print(f"start --all: {took:.2f} s, {args.vimages / took:.1f} vimages/s")
            started = time.perf_counter()
            result = daemon.ctl("--timeout", "3600", "stop", "--all", timeout=3600)
            took = time.perf_counter() - started
            assert result.code == 0, result
            print(f"stop --all: {took:.2f} s, {args.vimages / took:.1f} vimages/s")
            daemon.stop()
        finally:
            sim.terminate()
            sim.wait()


if __name__ == "__main__":
    main()
