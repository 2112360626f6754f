"""Fixtures of the linux tier: a private world of network namespaces per test.

Each test gets a "host" namespace the platform treats as the daemon's own, a "lan"
namespace holding peers with 10.x addresses, and a namespace prefix no other test uses.
Everything is removed afterwards, also on failure; the machine's own interfaces and
namespaces are never touched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from typing import TYPE_CHECKING

import pytest

from vimaged.platforms import linux
from vimaged_cni import launcher

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from pathlib import Path

NEEDED_TOOLS = ("ip", "ping", "nsenter", "chroot")


class World:
    """Names and helpers of one test's namespaces."""

    def __init__(self, state_dir: Path) -> None:
        self.tag = "vt" + secrets.token_hex(3)
        self.host = f"{self.tag}h"
        self.lan = f"{self.tag}l"
        self.prefix = f"{self.tag}v-"
        self.state_dir = state_dir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.extra_netns: list[str] = []
        """Namespaces made under other names (by a daemon with the default prefix)."""

    def ip(self, *args: str, netns: str | None = None) -> str:
        argv = ["ip", *(("-n", netns) if netns else ()), *args]
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout

    def platform(self) -> linux.LinuxPlatform:
        return linux.create(
            host_netns=self.host, netns_prefix=self.prefix, state_dir=str(self.state_dir)
        )

    def add_nic(self, name: str, peer: str, peer_cidr: str | None = None) -> None:
        """A veth standing in for a host NIC ``name``, its far end ``peer`` in the lan."""
        self.ip("link", "add", name, "type", "veth", "peer", "name", peer, "netns", self.lan,
                netns=self.host)  # fmt: skip
        self.ip("link", "set", name, "up", netns=self.host)
        self.ip("link", "set", peer, "up", netns=self.lan)
        if peer_cidr is not None:
            self.ip("addr", "add", peer_cidr, "dev", peer, netns=self.lan)

    def linger(self, netns_path: str) -> subprocess.Popen[bytes]:
        """A process sleeping inside the namespace at ``netns_path``."""
        proc = subprocess.Popen(["nsenter", f"--net={netns_path}", "sleep", "600"])
        self.processes.append(proc)
        return proc

    def wait_until_in(self, proc: subprocess.Popen[bytes], jid: int) -> None:
        """Block until ``proc`` has entered the namespace whose inode is ``jid``."""
        deadline = time.monotonic() + 5
        while os.stat(f"/proc/{proc.pid}/ns/net").st_ino != jid:
            assert time.monotonic() < deadline, "the process never entered the namespace"
            time.sleep(0.01)

    def netns_pids(self, netns: str) -> list[str]:
        argv = ["ip", "netns", "pids", netns]
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.split()

    def touch(self, path: str) -> None:
        with open(path, "x"):
            pass

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def run(self, *argv: str) -> str:
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout

    def cleanup(self) -> None:
        for proc in self.processes:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        pins = self.state_dir / "linux-netns"
        if pins.is_dir():
            for pin in pins.iterdir():
                if "@" in pin.name:
                    subprocess.run(["umount", "-l", str(pin)], check=False, capture_output=True)
        if os.path.isdir("/run/netns"):
            for name in os.listdir("/run/netns"):
                if name.startswith(self.tag) or name in self.extra_netns:
                    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                                          text=True, check=False).stdout.split()  # fmt: skip
                    for pid in pids:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(pid), signal.SIGKILL)
                    subprocess.run(
                        ["ip", "netns", "delete", name], check=False, capture_output=True
                    )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    missing = [tool for tool in NEEDED_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(
            f"missing {', '.join(missing)}: apt-get install iproute2 iputils-ping util-linux"
        )
    w = World(tmp_path / "state")
    try:
        try:
            w.ip("netns", "add", w.host)
            w.ip("netns", "add", w.lan)
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot create network namespaces here: {exc.stderr.strip()}")
        w.ip("link", "set", "lo", "up", netns=w.host)
        yield w
    finally:
        w.cleanup()


@pytest.fixture
async def plat(world: World) -> AsyncIterator[linux.LinuxPlatform]:
    platform = world.platform()
    try:
        yield platform
    finally:
        await platform.aclose()


CNI_CLIENTS: dict[str, Callable[[str], str]] = {
    "c": launcher.install_compiled,
    "python": launcher.install,
}
"""The vimaged-cni clients, by test id: each writes ``DIR/vimaged-cni`` and returns its path.
Every test that installs the plugin runs once per client."""


@pytest.fixture(params=sorted(CNI_CLIENTS))
def install_cni_plugin(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Puts one vimaged-cni client into a CNI bin dir (``install(DIR) -> path``)."""
    return CNI_CLIENTS[request.param]
