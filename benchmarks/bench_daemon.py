"""Benchmark: the daemon on the sim host (docs/performance.md records the figures).

- ``vimagectl --json list`` wall time with N configured vimages, stopped and then running,
  against bare ``python3 -c pass``, the two taking turns (target: at most 4x);
- start and stop throughput of N bridged vimages (``vimagectl start --all`` / ``stop --all``).

Run it from an install without development tools, as a user has it (docs/performance.md):
``python3 -m venv /tmp/v && /tmp/v/bin/pip install . &&
/tmp/v/bin/python benchmarks/bench_daemon.py --vimages 1000``
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_vimagectl import interleaved, report

from tests.sim.daemon_harness import Daemon


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
            # The installed script, as a user runs it: `python -m` from the checkout would
            # import (and, without bytecode, compile) the source tree instead.
            script = shutil.which("vimagectl", path=os.path.dirname(sys.executable))
            ctl = [script or "vimagectl", "-s", daemon.socket_path]
            commands = {
                "python -c pass": [sys.executable, "-c", "pass"],
                "vimagectl --json list": [*ctl, "--json", "list"],
            }
            print(f"{args.vimages} vimages, stopped; {args.runs} runs each, taking turns:")
            report(interleaved(commands, args.runs, dict(os.environ)), "python -c pass")
            started = time.perf_counter()
            result = daemon.ctl("--timeout", "3600", "start", "--all", timeout=3600)
            took = time.perf_counter() - started
            assert result.code == 0, result
            print(f"start --all: {took:.2f} s, {args.vimages / took:.1f} vimages/s")
            print(f"{args.vimages} vimages, running:")
            report(interleaved(commands, args.runs, dict(os.environ)), "python -c pass")
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
