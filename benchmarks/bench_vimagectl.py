"""Benchmark: ``vimagectl list --json`` start-to-exit wall time (control layer).

Serves N vimages (two interfaces each) from vimaged.server with a fixed handler in a child, then
times the real ``vimagectl -s SOCK --json list`` against bare ``python -c pass`` on the same
interpreter, the two taking turns. Target: at most 4x. ``vimagectl -h`` shows the start-up
alone. For the real daemon, see benchmarks/bench_daemon.py.

Run it from an install without development tools, as a user has it (docs/performance.md):
``python3 -m venv /tmp/v && /tmp/v/bin/pip install . &&
/tmp/v/bin/python benchmarks/bench_vimagectl.py [--vimages 1000] [--runs 30]``
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
from vimaged.protocol import (  # noqa: E402
    Error,
    Event,
    Interface,
    ListVimages,
    VimageInfo,
    Vimages,
    VimagesEnd,
    vimages_pages,
)
from vimaged.server import open_control_listener, serve_control  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator

    from vimaged.peercred import Peer
    from vimaged.protocol import AnyRequest, Reply


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

    async def handle(
        self, request: AnyRequest, peer: Peer
    ) -> Reply | AsyncGenerator[bytes | Reply, None]:
        if isinstance(request, ListVimages):
            return self.pages() if request.stream else self.reply
        return Error(code="invalid_request", message="this benchmark answers list only")

    async def pages(self) -> AsyncGenerator[bytes | Reply, None]:
        """The listing streamed as the daemon streams it (vimaged/dispatch.py)."""
        for page in vimages_pages(self.reply.vimages):
            yield page
        yield VimagesEnd(count=len(self.reply.vimages))

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


def interleaved(
    commands: dict[str, list[str]], runs: int, env: dict[str, str]
) -> dict[str, list[float]]:
    """Wall times of each command in ms, after a warm-up run of each.

    The commands take turns, so that a slow spell of this shared machine hits all of them
    alike: the ratios stay steady where separate series drifted by 30%.
    """
    times: dict[str, list[float]] = {label: [] for label in commands}
    for command in commands.values():
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    for _ in range(runs):
        for label, command in commands.items():
            started = time.perf_counter()
            subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
            times[label].append((time.perf_counter() - started) * 1000)
    return times


def report(times: dict[str, list[float]], baseline: str) -> None:
    """Median and minimum of each, and the ratio of medians to ``baseline`` (target <= 4x)."""
    base = statistics.median(times[baseline])
    for label, series in times.items():
        median = statistics.median(series)
        print(
            f"{label:<28} median {median:6.1f} ms  min {min(series):6.1f} ms  "
            f"{median / base:.2f}x {baseline}"
        )


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
    python = sys.executable
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
        ctl = [script] if script else [python, "-m", "vimagectl"]
        listing = [*ctl, "-s", path, "--json", "list"]
        size = len(subprocess.run(listing, env=env, check=True, capture_output=True).stdout)
        commands = {
            "python -c pass": [python, "-c", "pass"],
            "vimagectl -h": [*ctl, "-h"],
            "vimagectl --json list": listing,
            "vimagectl list": [*ctl, "-s", path, "list"],
        }
        times = interleaved(commands, args.runs, env)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(directory)
    print(f"{ctl[-1]}: {args.vimages} vimages, {size} bytes of JSON, {args.runs} runs each")
    report(times, "python -c pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
