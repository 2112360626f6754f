"""Benchmark: the daemon on the sim host (docs/performance.md records the figures).

- ``vimagectl --json list`` wall time with N configured vimages, stopped and then running,
  against bare ``python3 -c pass``, the two taking turns (target: at most 4x);
- start and stop throughput of N bridged vimages (``vimagectl start --all`` / ``stop --all``);
- memory: vimaged and the sim host with N vimages running, and vimagectl's peak for a listing.

Run it from an install without development tools, as a user has it (docs/performance.md):
``python3 -m venv /tmp/v && /tmp/v/bin/pip install . &&
/tmp/v/bin/python benchmarks/bench_daemon.py --vimages 1000``
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_vimagectl import interleaved, report

from tests.sim import daemon_harness
from tests.sim.daemon_harness import Daemon

if TYPE_CHECKING:
    from collections.abc import Iterator


def memory(pid: int) -> str:
    """Resident and peak resident size of a live process (Linux /proc), in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    rss, peak = (int(fields[key][0]) / 1024 for key in ("VmRSS", "VmHWM"))
    return f"{rss:.1f} MiB resident, peak {peak:.1f} MiB"


def cpu_seconds(pids: tuple[int, ...]) -> float:
    """User and system CPU time of live processes, all their threads (Linux /proc): unlike
    wall time, what other work on the machine does not inflate."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (proc(5) fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


PEAK = """
import atexit, sys
def report():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            print(line.split()[1], file=sys.stderr)
atexit.register(report)
if sys.argv[1:]:
    from vimagectl.cli import main
    sys.exit(main(sys.argv[1:]))
"""
"""Runs vimagectl (or nothing) and prints its peak RSS in KiB at exit. VmHWM belongs to the
process image and starts afresh at exec; wait4's ru_maxrss would keep the forking parent's."""


def peak_of(argv: list[str]) -> float:
    """Peak resident size of vimagectl ``argv`` (none: a bare interpreter), in MiB."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK, *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    )
    return int(done.stderr.split()[-1]) / 1024


def package_entry(directory: Path) -> Path:
    """vimagectl's entry script as the FreeBSD package installs it (scripts/build-pkg.py),
    run here by this interpreter: unlike the one pip before 25.0 writes, it imports no ``re``
    (~5 ms of start-up) before vimagectl starts."""
    spec = importlib.util.spec_from_file_location(
        "build_pkg", Path(__file__).resolve().parent.parent / "scripts" / "build-pkg.py"
    )
    assert spec is not None
    assert spec.loader is not None
    builder = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = builder  # its dataclasses look their module up
    spec.loader.exec_module(builder)
    path = directory / "vimagectl"
    path.write_bytes(
        builder.entry_script(f"{sys.version_info[0]}.{sys.version_info[1]}", "vimagectl.cli")
    )
    return path


def config_lines(count: int) -> list[str]:
    names = [f"v{i:05d}" for i in range(count)]
    lines = [
        'vimage_enable="NO"',
        'vimage_parallel_start="YES"',
        f'vimage_list="{" ".join(names)}"',
    ]
    return lines + [f'vimage_{n}_bridges="em0"' for n in names]


@contextmanager
def sim_daemon(count: int) -> Iterator[tuple[Daemon, subprocess.Popen[bytes]]]:
    """A fresh sim host and vimaged with ``count`` bridged vimages configured, stopped."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sim_socket = str(work / "sim.sock")
        sim = subprocess.Popen(
            [sys.executable, "-m", "vimaged.simhost", "--socket", sim_socket, "--sim-nics", "em0"]
        )
        try:
            while not os.path.exists(sim_socket):
                time.sleep(0.05)
            daemon = Daemon(sim_socket=sim_socket, workdir=work, log_level="warning")
            daemon.write_config("\n".join(config_lines(count)) + "\n")
            started = time.perf_counter()
            daemon_harness.READY_TIMEOUT = 600  # 100,000 vimages take a while to load
            daemon.start()
            print(f"  vimaged up with {count} vimages in {time.perf_counter() - started:.1f} s")
            try:
                yield daemon, sim
            finally:
                daemon.stop()  # a failed step must not leave the daemon behind
        finally:
            sim.terminate()
            sim.wait()


def listing_sizes(sizes: list[int], runs: int) -> None:
    """``vimagectl --json list`` against ``python -c pass`` at each size, and vimaged's RSS."""
    script = shutil.which("vimagectl", path=os.path.dirname(sys.executable))
    for count in sizes:
        print(f"{count} vimages configured (stopped):")
        with sim_daemon(count) as (daemon, _):
            assert daemon.proc is not None
            print(f"  vimaged before listing: {memory(daemon.proc.pid)}")
            ctl = [script or "vimagectl", "-s", daemon.socket_path]
            entry = [sys.executable, str(package_entry(daemon.workdir)), "-s", daemon.socket_path]
            commands = {
                "python -c pass": [sys.executable, "-c", "pass"],
                "vimagectl --json list": [*ctl, "--json", "list"],
                "the package's vimagectl": [*entry, "--json", "list"],
            }
            n = max(3, runs * 1000 // count)
            report(interleaved(commands, n, dict(os.environ)), "python -c pass")
            size = len(subprocess.run([*ctl, "--json", "list"], capture_output=True).stdout)
            print(f"  {n} runs each; {size / 1e6:.1f} MB of JSON")
            print(f"  vimaged after listing: {memory(daemon.proc.pid)}")
            listing = peak_of(["-s", daemon.socket_path, "--json", "list"])
            print(f"  peak: vimagectl --json list {listing:.1f} MiB; bare {peak_of([]):.1f} MiB")


def start_stop_sizes(sizes: list[int]) -> None:
    """Per-vimage wall time of ``start --all`` and ``stop --all`` at each size, in the order
    given (``100,10000,100`` lets the machine's load hit both sizes alike); each run's
    ratio is to the mean of the runs at the first size."""
    costs: list[tuple[int, float, float, float, float]] = []
    for count in sizes:
        print(f"{count} vimages:")
        with sim_daemon(count) as (daemon, sim):
            assert daemon.proc is not None
            pids = (daemon.proc.pid, sim.pid)
            took, cpu = [], []
            for verb in ("start", "stop"):
                started, cpu_before = time.perf_counter(), cpu_seconds(pids)
                result = daemon.ctl("--timeout", "7200", verb, "--all", timeout=7200)
                took.append(time.perf_counter() - started)
                cpu.append(cpu_seconds(pids) - cpu_before)
                if result.code != 0:  # the daemon's log goes with its temporary directory
                    worst = [ln for ln in daemon.log().splitlines() if '"error"' in ln]
                    raise AssertionError(f"{result}\n" + "\n".join(worst[-5:]))
                if verb == "start":
                    assert daemon.proc is not None
                    print(f"  running: vimaged {memory(daemon.proc.pid)}; sim {memory(sim.pid)}")
            start, stop = took[0] * 1000 / count, took[1] * 1000 / count
            start_cpu, stop_cpu = cpu[0] * 1000 / count, cpu[1] * 1000 / count
            costs.append((count, start, stop, start_cpu, stop_cpu))
            print(f"  start --all {start:.2f} ms/vimage, stop --all {stop:.2f}; CPU of vimaged "
                  f"and the sim host: start {start_cpu:.2f} ms/vimage, "
                  f"stop {stop_cpu:.2f}")  # fmt: skip
    base = [c[1:] for c in costs if c[0] == sizes[0]]
    mean = [sum(b[i] for b in base) / len(base) for i in range(4)]
    print(f"mean of {len(base)} run(s) at {sizes[0]}: start {mean[0]:.2f}, stop {mean[1]:.2f}; "
          f"CPU start {mean[2]:.2f}, stop {mean[3]:.2f}")  # fmt: skip
    for count, *cost in costs:
        wall, cpu_ = (
            " ".join(f"{cost[i] / mean[i]:.2f}x" for i in pair) for pair in ((0, 1), (2, 3))
        )
        print(f"{count:>7}: start {cost[0]:.2f} ms, stop {cost[1]:.2f} ms: "
              f"start, stop {wall}; CPU {cpu_}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vimages", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--list-sizes", help="comma-separated sizes: listing time and RSS only (issue 13)"
    )
    parser.add_argument(
        "--start-stop-sizes", help="comma-separated sizes: start/stop --all cost per vimage"
    )
    args = parser.parse_args()
    if args.list_sizes or args.start_stop_sizes:
        if args.list_sizes:
            listing_sizes([int(n) for n in args.list_sizes.split(",")], args.runs)
        if args.start_stop_sizes:
            start_stop_sizes([int(n) for n in args.start_stop_sizes.split(",")])
        return
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
            assert daemon.proc is not None
            print(f"memory: vimaged {memory(daemon.proc.pid)}; sim host {memory(sim.pid)}")
            bare = peak_of([])
            listing = peak_of(["-s", daemon.socket_path, "--json", "list"])
            print(f"peak: vimagectl --json list {listing:.1f} MiB; a bare python {bare:.1f} MiB")
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
