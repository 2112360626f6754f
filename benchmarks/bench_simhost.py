"""A throughput benchmark of the sim host through the sim platform.

``python benchmarks/bench_simhost.py`` starts a private sim host, then times platform RPCs,
netgraph round trips over a simulated socket, and bridged-ifnet create/destroy cycles.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time

import trio

from vimaged import platforms
from vimaged.netgraph.ngsocket import open_ng_socket
from vimaged.platforms.sim import SimPlatform

ROUND_TRIPS = 2000
BRIDGED = 200


async def measure(path: str) -> str:
    plat = platforms.load("sim", sim_host=path)
    assert isinstance(plat, SimPlatform)
    try:
        started = time.perf_counter()
        for _ in range(ROUND_TRIPS):
            await plat.set_ifnet_up("em1")
        rpc_rate = ROUND_TRIPS / (time.perf_counter() - started)
        async with plat.open_netgraph() as transport, open_ng_socket(transport) as sock:
            started = time.perf_counter()
            for _ in range(ROUND_TRIPS):
                await sock.nodeinfo("em0:")
            ng_rate = ROUND_TRIPS / (time.perf_counter() - started)
        started = time.perf_counter()
        for i in range(BRIDGED):
            await plat.create_bridged_ifnet("em0", f"ng{i}_bench", "02:00:00:00:00:01")
        for i in range(BRIDGED):
            await plat.destroy_bridged_ifnet(f"ng{i}_bench")
        bridged_rate = BRIDGED / (time.perf_counter() - started)
    finally:
        await plat.aclose()
    return (
        f"platform RPC (set_ifnet_up): {rpc_rate:.0f}/s; "
        f"NGM_NODEINFO round trips: {ng_rate:.0f}/s; "
        f"bridged ifnet create+destroy ({BRIDGED} on one bridge): {bridged_rate:.0f}/s"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "sim.sock")
        host = subprocess.Popen(
            [sys.executable, "-m", "vimaged.simhost", "--socket", path],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(400):
                probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    probe.connect(path)
                    break
                except OSError:
                    time.sleep(0.05)
                finally:
                    probe.close()
            print(trio.run(measure, path))
        finally:
            host.terminate()
            host.wait()


if __name__ == "__main__":
    main()
