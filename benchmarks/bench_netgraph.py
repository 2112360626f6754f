"""Benchmark of the netgraph binding (not a test): codec cost and round trips to the sim kernel.

    /work/venv/bin/python benchmarks/bench_netgraph.py [--sim SOCKET] [--requests N]

Without ``--sim`` it starts its own simulated host (``python -m vimaged.simhost``) in a temp
directory and stops it afterwards.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vimaged.netgraph import abi, codec  # noqa: E402
from vimaged.netgraph.ngsocket import open_ng_socket  # noqa: E402
from vimaged.netgraph.sim_transport import open_sim_transport  # noqa: E402


def bench_codec(rounds: int) -> list[str]:
    info = codec.NodeInfo(name="em0", type="ether", id=3, hooks=2)
    cases = {
        "mkpeer": (abi.NGM_GENERIC_COOKIE, abi.NGM_MKPEER, "em0:", "mkpeer"),
        "connect": (abi.NGM_GENERIC_COOKIE, abi.NGM_CONNECT, "em0:", "connect"),
        "nodeinfo reply": (abi.NGM_GENERIC_COOKIE, abi.NGM_NODEINFO, "[3]:", "nodeinfo"),
    }
    lines = []
    for label, (cookie, cmd, path, kind) in cases.items():
        start = time.perf_counter()
        for token in range(rounds):
            if kind == "mkpeer":
                args = codec.encode_mkpeer("eiface", "link2", "ether")
            elif kind == "connect":
                args = codec.encode_connect("em0:lower", "upper", "link1")
            else:
                args = codec.encode_nodeinfo(info)
            message = abi.pack_message(cookie, cmd, args, token=token)
            abi.pack_sockaddr(path)
            decoded = abi.unpack_message(message)
            if kind == "mkpeer":
                codec.decode_mkpeer(decoded.data)
            elif kind == "connect":
                codec.decode_connect(decoded.data)
            else:
                codec.decode_nodeinfo(decoded.data)
        per = (time.perf_counter() - start) / rounds * 1e6
        lines.append(f"pack+unpack {label:<15} {per:7.2f} us/message")
    return lines


async def bench_round_trips(sim: str, requests: int) -> list[str]:
    lines = []
    async with open_sim_transport(sim) as transport, open_ng_socket(transport) as sock:
        start = time.perf_counter()
        for _ in range(requests):
            await sock.nodeinfo("em0:")
        elapsed = time.perf_counter() - start
        lines.append(f"sequential nodeinfo     {requests / elapsed:9.0f} round trips/s")

        async def worker(n: int) -> None:
            for _ in range(n):
                await sock.nodeinfo("em0:")

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(worker, requests // 50)
        elapsed = time.perf_counter() - start
        lines.append(f"50 tasks, one socket    {requests / elapsed:9.0f} round trips/s")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim", metavar="SOCKET")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=50000)
    options = parser.parse_args()
    for line in bench_codec(options.rounds):
        print(line)
    if options.sim:
        for line in trio.run(bench_round_trips, options.sim, options.requests):
            print(line)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sim.sock")
        proc = subprocess.Popen(
            [sys.executable, "-m", "vimaged.simhost", "--socket", path, "--sim-nics", "em0 em1"],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 15
            while not os.path.exists(path + ".ng"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("simulated host did not start")
                time.sleep(0.02)
            for line in trio.run(bench_round_trips, path, options.requests):
                print(line)
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
