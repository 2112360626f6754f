"""Benchmark: ``vimagectl list --json`` start-to-exit wall time (control layer).

Serves N vimages (two interfaces each) from vimaged.server with a fixed handler in a child, then
times the real ``vimagectl -s SOCK list --json`` against bare ``python -c pass`` on
the same interpreter (with and without site, whose .pth files include an editable install's
import hook here) and on the system's ``/usr/bin/python3``. Target: at most 4x. For the real
daemon, see benchmarks/bench_daemon.py.

Run: ``/work/venv/bin/python benchmarks/bench_vimagectl.py [--vimages 1000] [--runs 30]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import trio  # noqa: E402

from vimaged import log  # noqa: E402
from vimaged.protocol import Error, Event, Interface, ListVimages, VimageInfo, Vimages  # noqa: E402
from vimaged.server import open_control_listener, serve_control  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from vimaged.peercred import Peer
    from vimaged.protocol import AnyRequest, Reply

SYSTEM_PYTHON = "/usr/bin/python3"


class FixedVimages:
    """Answers ``list`` with the same N vimages, as a daemon holding them would."""

    def __init__(self, count: int) -> None:
        self.reply = Vimages(
            vimages=tuple(
                VimageInfo(
                    name=f"v{i}",
                    state="running",
                    jid=i + 1,
                    health="ok",
                    interfaces=(
                        Interface(
                            name=f"ng0_v{i}",
                            kind="bridge",
                            parent="em0",
                            mac=f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}",
                            where="vimage",
                        ),
                        Interface(name=f"em{i + 2}", kind="vnet", where="vimage"),
                    ),
                )
                for i in range(count)
            )
        )

    async def handle(self, request: AnyRequest, peer: Peer) -> Reply:
        if isinstance(request, ListVimages):
            return self.reply
        return Error(code="invalid_request", message="this benchmark answers list only")

    @asynccontextmanager
    async def events(self) -> AsyncIterator[trio.MemoryReceiveChannel[Event]]:
        send, receive = trio.open_memory_channel[Event](0)
        async with send:
            yield receive


async def serve(path: str, count: int) -> None:
    """The server side, in its own process so the timing parent stays small to fork."""
    listener = await open_control_listener(path)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            partial(serve_control, listener, FixedVimages(count), handler_nursery=nursery)
        )
        print("ready", flush=True)


def wall_ms(command: list[str], runs: int, env: dict[str, str]) -> tuple[float, float]:
    """Median and minimum wall time of ``command``, in ms, after one warm-up run."""
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), min(times)


SCRIPT = "import sys; from vimagectl.cli import main; sys.exit(main(sys.argv[1:]))"
"""What the installed vimagectl script runs."""
LEAN = "import sys; sys.modules['typing_extensions'] = None; " + SCRIPT
"""vimagectl as on a host without typing_extensions (msgspec then uses typing; this venv has it
for mypy, and msgspec's import of it pulls in inspect)."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vimages", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--serve", metavar="SOCKET", help=argparse.SUPPRESS)
    args = parser.parse_args()
    log.configure(json=True, level="warning")
    if args.serve:
        trio.run(serve, args.serve, args.vimages)
        return 0
    directory = tempfile.mkdtemp(prefix="vbench", dir="/tmp")
    path = os.path.join(directory, "vimaged.sock")
    # Installed packages have their bytecode compiled; let the warm-up run write ours.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(ROOT)
    python = sys.executable
    argv = ["-s", path, "list", "--json"]
    # -S skips site and its .pth files (an editable install's finder costs every start-up
    # ~12 ms here); PYTHONPATH then supplies msgspec.
    site_packages = next(p for p in sys.path if p.endswith("site-packages"))
    no_site = {**env, "PYTHONPATH": os.pathsep.join([str(ROOT), site_packages])}
    server = subprocess.Popen(
        [python, __file__, "--serve", path, "--vimages", str(args.vimages)],
        stdout=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline() != b"ready\n":
            print("bench_vimagectl: server did not start", file=sys.stderr)
            return 1
        script = shutil.which("vimagectl", path=os.path.dirname(python))
        ctl = [script, *argv] if script else [python, "-m", "vimagectl", *argv]
        size = len(subprocess.run(ctl, env=env, check=True, capture_output=True).stdout)
        runs = args.runs
        results = {
            "vimagectl list --json": wall_ms(ctl, runs, env),
            "python -c pass": wall_ms([python, "-c", "pass"], runs, env),
            "python -S: vimagectl list --json": wall_ms(
                [python, "-S", "-c", SCRIPT, *argv], runs, no_site
            ),
            "  same, without typing_extensions": wall_ms(
                [python, "-S", "-c", LEAN, *argv], runs, no_site
            ),
            "python -S -c pass": wall_ms([python, "-S", "-c", "pass"], runs, no_site),
        }
        if os.path.exists(SYSTEM_PYTHON):
            results[f"{SYSTEM_PYTHON} -c pass"] = wall_ms([SYSTEM_PYTHON, "-c", "pass"], runs, env)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(directory)
    print(f"{' '.join(ctl[:1])}: {args.vimages} vimages, {size} bytes of JSON, {runs} runs")
    for label, (median, fastest) in results.items():
        print(f"{label:<36} median {median:6.1f} ms  min {fastest:6.1f} ms")

    def ratio(command: str, baseline: str) -> str:
        if baseline not in results:
            return "-"
        (median, fastest), (base_median, base_fastest) = results[command], results[baseline]
        return f"{median / base_median:.2f}x (minima {fastest / base_fastest:.2f}x)"

    print("ratios of medians, of minima in brackets (target <= 4x):")
    venv = ratio("vimagectl list --json", "python -c pass")
    print(f"  vimagectl / python -c pass, this venv: {venv}")
    system = ratio("vimagectl list --json", f"{SYSTEM_PYTHON} -c pass")
    print(f"  vimagectl / {SYSTEM_PYTHON} -c pass: {system}")
    bare = ratio("python -S: vimagectl list --json", "python -S -c pass")
    lean = ratio("  same, without typing_extensions", "python -S -c pass")
    print(f"  without site: {bare}; and without typing_extensions: {lean}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
