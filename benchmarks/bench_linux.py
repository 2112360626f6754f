"""Benchmark of the linux platform layer: N vimages started and stopped, vimaged vs iproute2.

Everything happens in a private "host" namespace with a veth as the parent NIC, so the
machine's own interfaces are never touched. Each vimage gets the platform calls the
supervisor makes (vimaged/supervisor.py): create_jail, then per bridged interface
create_bridged_ifnet and move_ifnet; on stop destroy_bridged_ifnet (inside the vimage) and
remove_jail. The script bench_linux_iproute2.sh does the same steps with one ``ip``
command each. vimaged runs twice: one vimage at a time, and PARALLEL_STARTS vimages at a
time as the supervisor does.

usage (root): python benchmarks/bench_linux.py [N]   (default 200)
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING

import trio

from vimaged.platforms import JailSpec, linux

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_linux_iproute2.sh")
PARALLEL_STARTS = 8
"""As vimaged.supervisor.PARALLEL_STARTS."""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


async def start(plat: linux.LinuxPlatform, i: int, jids: dict[int, int]) -> None:
    jid = await plat.create_jail(JailSpec(name=f"v{i}", hostname=f"v{i}"))
    for b in (0, 1):
        ifname = f"ng{b}_v{i}"
        await plat.create_bridged_ifnet(
            "lan0", ifname, f"02:00:{b:02x}:00:{i >> 8:02x}:{i & 255:02x}"
        )
        await plat.move_ifnet(ifname, jid)
    jids[i] = jid


async def stop(plat: linux.LinuxPlatform, i: int, jid: int) -> None:
    await plat.destroy_bridged_ifnet(f"ng0_v{i}")
    await plat.destroy_bridged_ifnet(f"ng1_v{i}")
    await plat.remove_jail(jid)


async def run_vimaged(host: str, prefix: str, n: int, parallel: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as state_dir:
        plat = linux.create(host_netns=host, netns_prefix=prefix, state_dir=state_dir)
        limiter = trio.CapacityLimiter(parallel)

        async def limited(fn: Callable[..., Awaitable[None]], *args: object) -> None:
            async with limiter:
                await fn(plat, *args)

        try:
            jids: dict[int, int] = {}
            started = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for i in range(n):
                    nursery.start_soon(limited, start, i, jids)
            start_time = time.perf_counter() - started
            started = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for i, jid in jids.items():
                    nursery.start_soon(limited, stop, i, jid)
            stop_time = time.perf_counter() - started
            assert await plat.list_jails() == []
            return start_time, stop_time
        finally:
            await plat.aclose()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    tag = "vb" + secrets.token_hex(3)
    host, lan = f"{tag}h", f"{tag}l"
    try:
        ip("netns", "add", host)
        ip("netns", "add", lan)
        ip("-n", host, "link", "add", "lan0", "type", "veth", "peer", "name", "peer0", "netns", lan)
        ip("-n", host, "link", "set", "lan0", "up")
        serial = trio.run(run_vimaged, host, f"{tag}a-", n, 1)
        parallel = trio.run(run_vimaged, host, f"{tag}b-", n, PARALLEL_STARTS)
        started = time.perf_counter()
        subprocess.run([SCRIPT, host, "lan0", f"{tag}s-", str(n)], check=True)
        script = time.perf_counter() - started
    finally:
        for name in os.listdir("/run/netns"):
            if name.startswith(tag):
                subprocess.run(["ip", "netns", "delete", name], check=False)
    print(f"{n} vimages x 2 bridged interfaces, start then stop")
    print(f"iproute2 script (one ip per step):    {script:6.2f} s")
    for label, (up, down) in (("1 at a time", serial), (f"{PARALLEL_STARTS} at a time", parallel)):
        total = up + down
        print(
            f"vimaged platform, {label + ':':13} {total:6.2f} s"
            f" (start {up:.2f} s, stop {down:.2f} s), ratio to script {total / script:.2f}"
        )


if __name__ == "__main__":
    main()
