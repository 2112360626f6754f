"""Linux tier: containerd end to end, ``ctr run --cni --rootfs`` with a static busybox rootfs.

The test starts its own containerd (private config, root, state and socket under tmp_path, no
CRI plugin) and runs a container on vimaged's network. ctr 1.6 reads its CNI configuration only
from /etc/cni/net.d and its plugins only from /opt/cni/bin (``gocni.New(gocni.WithDefaultConf)``
in cmd/ctr/commands/run/run.go; go-cni's defaults), and ctr itself execs the plugins. So ctr
runs in a private mount namespace where the test's directories are mounted on those two paths
(an overlay on the nearest existing parent when a path is absent): nothing is written to the
machine's /etc or /opt, and a containerd or kubelet of the machine never sees the test network.
What containerd 1.6 keeps at fixed paths: shim sockets in /run/containerd/s (gone with the
shim); the test removes the directories it made there.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.linux.test_linux_cni import HOST_LOCAL, PEER
from tests.linux.test_linux_daemon import LinuxDaemon

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.linux.conftest import World

pytestmark = pytest.mark.linux

BUSYBOX = "/bin/busybox"
CTR_CNI_DIRS = ("/etc/cni/net.d", "/opt/cni/bin")  # go-cni's defaults, what ctr uses
FIXED_STATE = "/run/containerd"


def _tools() -> dict[str, str]:
    tools = {name: shutil.which(name) for name in ("containerd", "ctr", "runc", "unshare")}
    missing = [name for name, path in tools.items() if path is None]
    if missing or not os.access(HOST_LOCAL, os.X_OK):
        pytest.skip(f"{', '.join(missing) or 'host-local'} absent: apt-get install containerd "
                    "runc containernetworking-plugins (scripts/setup.sh does)")  # fmt: skip
    if not os.path.isfile(BUSYBOX) or _has_interpreter(Path(BUSYBOX).read_bytes()):
        pytest.skip("no static busybox: apt-get install busybox-static")
    return {name: str(path) for name, path in tools.items()}


def _has_interpreter(elf: bytes) -> bool:
    """Whether a 64-bit little-endian ELF file has a PT_INTERP program header (is dynamic)."""
    if elf[:6] != b"\x7fELF\x02\x01":
        return True  # not what busybox-static installs
    phoff, phentsize, phnum = elf[0x20:0x28], elf[0x36:0x38], elf[0x38:0x3A]
    start, size = int.from_bytes(phoff, "little"), int.from_bytes(phentsize, "little")
    types = (
        elf[start + i * size : start + i * size + 4] for i in range(int.from_bytes(phnum, "little"))
    )
    return any(int.from_bytes(t, "little") == 3 for t in types)  # PT_INTERP


def _made_dirs(path: str) -> list[str]:
    """The directories from ``path`` up that do not exist yet (deepest first)."""
    made = []
    while not os.path.exists(path):
        made.append(path)
        path = os.path.dirname(path)
    return made


def _private_mounts(tmp: Path, targets: dict[str, Path]) -> str:
    """Shell commands (for a private mount namespace) putting each directory on its target."""
    lines = ["set -e"]
    for i, (target, source) in enumerate(targets.items()):
        parent = target
        while not os.path.isdir(parent):
            parent = os.path.dirname(parent)
        if parent != target:  # make the target in an overlay of its nearest existing parent
            upper, work = tmp / f"upper{i}", tmp / f"work{i}"
            upper.mkdir()
            work.mkdir()
            opts = f"lowerdir={parent},upperdir={upper},workdir={work}"
            lines.append(f"mount -t overlay overlay -o {shlex.quote(opts)} {shlex.quote(parent)}")
            lines.append(f"mkdir -p {shlex.quote(target)}")
        lines.append(f"mount --bind {shlex.quote(str(source))} {shlex.quote(target)}")
    return "\n".join(lines)


class Containerd:
    """A containerd of the test's own, on a private socket."""

    def __init__(self, binary: str, tmp: Path) -> None:
        self.dir = tmp
        self.address = str(tmp / "containerd.sock")
        config = tmp / "containerd.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{tmp / "root"}"\nstate = "{tmp / "state"}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{self.address}"\n'
            f'[ttrpc]\n  address = "{self.address}.ttrpc"\n'
        )
        self.log = (tmp / "containerd.log").open("wb")
        self.proc = subprocess.Popen([binary, "--config", str(config)], stdout=self.log,
                                     stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 10
        while not os.path.exists(self.address):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.skip(f"containerd cannot run here: {self.tail()}")
            time.sleep(0.02)

    def tail(self) -> str:
        self.log.flush()
        return (self.dir / "containerd.log").read_text(errors="replace")[-800:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def containerd(tmp_path: Path) -> Iterator[tuple[Containerd, dict[str, str]]]:
    tools = _tools()
    made = _made_dirs(f"{FIXED_STATE}/s")
    (tmp_path / "ctd").mkdir()
    c = Containerd(tools["containerd"], tmp_path / "ctd")
    try:
        yield c, tools
    finally:
        c.stop()
        if made:  # what containerd 1.6 made at its fixed paths: only directories left empty
            for path, _dirs, _files in os.walk(made[-1], topdown=False):
                with contextlib.suppress(OSError):
                    os.rmdir(path)


def test_ctr_run_cni_puts_the_container_on_the_parent(
    world: World,
    containerd: tuple[Containerd, dict[str, str]],
    tmp_path: Path,
    install_cni_plugin: Callable[[str], str],
) -> None:
    ctd, tools = containerd
    began = time.monotonic()
    world.add_nic("lan0", "peer0", f"{PEER}/24")
    daemon = LinuxDaemon(sim_socket="", workdir=tmp_path, host_netns=world.host)
    daemon.write_config('vimage_enable="NO"\nvimage_list=""\n')
    daemon.start()
    try:
        bin_dir, conf_dir, ipam_dir = tmp_path / "bin", tmp_path / "net.d", tmp_path / "ipam"
        bin_dir.mkdir()
        conf_dir.mkdir()
        install_cni_plugin(str(bin_dir))
        (bin_dir / "host-local").symlink_to(HOST_LOCAL)
        network = f"{world.tag}net"
        ipam = {"type": "host-local", "dataDir": str(ipam_dir),
                "ranges": [[{"subnet": "10.77.0.0/24", "rangeStart": "10.77.0.10",
                             "rangeEnd": "10.77.0.50", "gateway": PEER}]]}  # fmt: skip
        plugin = {"type": "vimaged-cni", "parent": "lan0", "socket": daemon.socket_path,
                  "ipam": ipam}  # fmt: skip
        (conf_dir / "10-vimaged.conflist").write_text(
            json.dumps({"cniVersion": "1.0.0", "name": network, "plugins": [plugin]})
        )
        rootfs = tmp_path / "rootfs"
        for sub in ("bin", "proc", "sys", "dev", "etc", "tmp"):
            (rootfs / sub).mkdir(parents=True)
        shutil.copy(BUSYBOX, rootfs / "bin/busybox")
        for applet in ("sh", "ip"):
            (rootfs / "bin" / applet).symlink_to("busybox")
        (tmp_path / "mnt").mkdir()
        mounts = _private_mounts(
            tmp_path / "mnt", dict(zip(CTR_CNI_DIRS, (conf_dir, bin_dir), strict=True))
        )
        ctr = [tools["ctr"], "--address", ctd.address, "--namespace", world.tag, "run", "--rm",
               "--cni", "--cgroup", "", "--fifo-dir", str(ctd.dir / "fifo"),
               "--runc-root", str(ctd.dir / "runc"), "--rootfs", str(rootfs), f"{world.tag}c1",
               "/bin/ip", "-o", "addr", "show", "eth0"]  # fmt: skip
        script = f"{mounts}\nexec {shlex.join(ctr)}"
        private = [tools["unshare"], "--mount", "--propagation", "private", "sh", "-c", script]
        done = subprocess.run(private, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, (done.stdout, done.stderr, ctd.tail())
        # The container saw eth0 with the address host-local gave it.
        assert " eth0 " in done.stdout, done.stdout
        assert "inet 10.77.0.10/24" in done.stdout, done.stdout
        # ctr ran DEL when the container exited (its netns already gone): nothing is left.
        assert daemon.ok("--json", "attachments").json() == []
        assert "macvlan" not in world.ip("-o", "-d", "link", "show", netns=world.host)
        assert not any(p.name.startswith("10.") for p in (ipam_dir / network).iterdir())
        facts = [e["event"] for e in daemon.events() if e["event"].startswith("attachment.")]
        assert facts == ["attachment.added", "attachment.removed"]
        containers = subprocess.run([tools["ctr"], "--address", ctd.address, "--namespace",
                                     world.tag, "containers", "ls", "-q"],
                                    capture_output=True, text=True, check=True)  # fmt: skip
        assert containers.stdout.split() == []
    finally:
        daemon.stop()
    assert time.monotonic() - began < 20
