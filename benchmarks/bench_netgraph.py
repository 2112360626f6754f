"""Benchmark of the netgraph binding (not a test): codec cost, round trips to the sim kernel,
and what adding an eiface costs as one bridge grows (requests, reply bytes, time).

    /work/venv/bin/python benchmarks/bench_netgraph.py [--sim SOCKET] [--requests N] [--eifaces N]

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

from contextlib import asynccontextmanager  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

from tests.sim.ngcount import CountingTransport  # noqa: E402
from vimaged.netgraph import abi, codec  # noqa: E402
from vimaged.netgraph.ngsocket import open_ng_socket  # noqa: E402
from vimaged.platforms.netgraph_bridges import NetgraphBridges  # noqa: E402
from vimaged.platforms.sim_transport import open_sim_transport  # noqa: E402
from vimaged.simhost import rpc  # noqa: E402
from vimaged.simhost.client import SimHostClient, raise_failed  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from vimaged.netgraph.transport import NgTransport


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


def _rpc(sim: str, request: rpc.Request) -> None:
    """One request to the sim host's RPC socket; raises OSError if it failed."""
    with SimHostClient(sim) as client:
        raise_failed(client.call(request), type(request).__name__)


async def bench_bridge_growth(sim: str, eifaces: int) -> list[str]:
    """Fill one bridge with ``eifaces`` eifaces; the cost of the first and last tenth."""
    counting: list[CountingTransport] = []

    @asynccontextmanager
    async def open_counting() -> AsyncIterator[NgTransport]:
        async with open_sim_transport(sim) as inner:
            counting.append(CountingTransport(inner))
            yield counting[-1]

    async def rename(old: str, new: str) -> None:
        await trio.to_thread.run_sync(_rpc, sim, rpc.RenameIfnet(name=old, newname=new))

    async def set_up(name: str) -> None:
        await trio.to_thread.run_sync(_rpc, sim, rpc.SetIfnetUp(name=name))

    await trio.to_thread.run_sync(_rpc, sim, rpc.Reset(nics=["em0", "em1"], kernel=14))
    nb = NetgraphBridges(open_counting, rename, set_up)
    lines = []
    try:
        await nb.socket()
        transport = counting[0]
        tenth = max(eifaces // 10, 1)
        for label, numbers in (
            ("first", range(tenth)),
            ("", range(tenth, eifaces - tenth)),
            ("last", range(eifaces - tenth, eifaces)),
        ):
            transport.requests = transport.reply_bytes = 0
            start = time.perf_counter()
            for i in numbers:
                await nb.create("em0", f"ng{i}_b", f"02:00:00:00:{i // 256:02x}:{i % 256:02x}")
            elapsed = time.perf_counter() - start
            if label:
                lines.append(
                    f"create, {label} {tenth} of {eifaces} on one bridge: "
                    f"{transport.requests / tenth:.1f} requests, "
                    f"{transport.reply_bytes / tenth:.0f} reply bytes, "
                    f"{elapsed / tenth * 1e3:.2f} ms per eiface"
                )
        transport.requests = 0
        start = time.perf_counter()
        await nb.list()
        elapsed = time.perf_counter() - start
        lines.append(
            f"list() of {eifaces} eifaces: {transport.requests} requests, {elapsed * 1e3:.1f} ms"
        )
    finally:
        await nb.aclose()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim", metavar="SOCKET")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=50000)
    parser.add_argument("--eifaces", type=int, default=1000)
    options = parser.parse_args()
    for line in bench_codec(options.rounds):
        print(line)
    if options.sim:
        for line in trio.run(bench_round_trips, options.sim, options.requests):
            print(line)
        for line in trio.run(bench_bridge_growth, options.sim, options.eifaces):
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
            for line in trio.run(bench_bridge_growth, path, options.eifaces):
                print(line)
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
