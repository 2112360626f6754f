"""Linux tier: vimaged-cni driven through the real libcni, as containerd drives plugins.

A Go driver (tests/cni/driver) built against Debian's golang-github-appc-cni-dev calls the
plugin through ``libcni.CNIConfig``; IPAM is Debian's host-local. The daemon manages the test's
private host namespace; the sandboxes are namespaces the test makes (``ip netns add``), and the
parent NIC is a veth whose far end, in the lan namespace, is a peer beyond the parent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio

from tests.linux.test_linux_daemon import LinuxDaemon
from tests.sim.daemon_harness import exchange
from vimagectl.client import Client
from vimaged import protocol
from vimaged.attachments import AttachmentJournal, host_ifname
from vimaged.platforms import SandboxIfnet

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.linux.conftest import World

pytestmark = pytest.mark.linux

ROOT = Path(__file__).resolve().parents[2]
GOPATH = "/usr/share/gocode"
LIBCNI = f"{GOPATH}/src/github.com/containernetworking/cni/libcni"
HOST_LOCAL = "/usr/lib/cni/host-local"
PEER = "10.77.0.1"


@pytest.fixture(scope="session")
def driver(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The libcni driver, built once per session, offline (GOPATH mode)."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is absent: apt-get install golang-go (scripts/setup.sh does)")
    if not os.path.isdir(LIBCNI) or not os.access(HOST_LOCAL, os.X_OK):
        pytest.skip("apt-get install golang-github-appc-cni-dev containernetworking-plugins")
    out = tmp_path_factory.mktemp("cni-driver") / "driver"
    env = dict(os.environ, GO111MODULE="off", GOPATH=GOPATH, GOFLAGS="", CGO_ENABLED="0")
    if "HOME" not in env:  # go's default cache is under $HOME
        env.setdefault("GOCACHE", str(out.parent / "cache"))
    subprocess.run([go, "build", "-o", str(out), str(ROOT / "tests/cni/driver/main.go")],
                   check=True, env=env, capture_output=True)  # fmt: skip
    return str(out)


class Cni:
    """One test's CNI world: plugin dir, conflist, host-local's data, libcni's cache."""

    def __init__(
        self,
        world: World,
        daemon: LinuxDaemon,
        driver: str,
        tmp: Path,
        install: Callable[[str], str],
    ) -> None:
        self.world = world
        self.daemon = daemon
        self.driver = driver
        self.bin = tmp / "cni-bin"
        self.bin.mkdir()
        install(str(self.bin))  # a vimaged-cni client (conftest.CNI_CLIENTS)
        (self.bin / "host-local").symlink_to(HOST_LOCAL)
        self.ipam_dir = tmp / "ipam"
        self.cache = tmp / "cache"
        self.network = f"{world.tag}net"

    def conflist(self, path: Path, *, parent: str = "lan0", version: str = "1.0.0") -> Path:
        ipam = {
            "type": "host-local",
            "ranges": [[{"subnet": "10.77.0.0/24", "rangeStart": "10.77.0.10",
                         "rangeEnd": "10.77.0.50", "gateway": PEER}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": str(self.ipam_dir),
        }  # fmt: skip
        plugin = {"type": "vimaged-cni", "parent": parent, "socket": self.daemon.socket_path,
                  "ipam": ipam}  # fmt: skip
        path.write_text(json.dumps({"cniVersion": version, "name": self.network,
                                    "plugins": [plugin]}))  # fmt: skip
        return path

    def sandbox(self, name: str) -> str:
        netns = f"{self.world.tag}{name}"
        self.world.ip("netns", "add", netns)
        self.world.ip("link", "set", "lo", "up", netns=netns)
        return f"/run/netns/{netns}"

    def run(self, cmd: str, conf: Path, *, sandbox: str = "", cid: str = "",
            ifname: str = "eth0", valid: str = "") -> dict[str, Any]:  # fmt: skip
        argv = [self.driver, "-cmd", cmd, "-conf", str(conf), "-path", str(self.bin),
                "-netns", sandbox, "-id", cid, "-ifname", ifname, "-valid", valid,
                "-cache", str(self.cache)]  # fmt: skip
        done = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60)
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def ok(self, cmd: str, conf: Path, **kw: str) -> dict[str, Any]:
        result = self.run(cmd, conf, **kw)
        assert result["ok"], result
        return result

    def in_sandbox(self, sandbox: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["nsenter", f"--net={sandbox}", *argv], capture_output=True,
                              text=True, check=False, timeout=10)  # fmt: skip

    def attachments(self) -> list[protocol.Attachment]:
        with Client(self.daemon.socket_path, 10) as client:
            reply = exchange(client, protocol.CniList())
        assert isinstance(reply, protocol.AttachmentList)
        return list(reply.attachments)


@pytest.fixture
def cni(
    world: World, driver: str, tmp_path: Path, install_cni_plugin: Callable[[str], str]
) -> Iterator[Cni]:
    world.add_nic("lan0", "peer0", f"{PEER}/24")
    d = LinuxDaemon(sim_socket="", workdir=tmp_path, host_netns=world.host)
    d.write_config('vimage_enable="NO"\nvimage_list=""\n')
    d.start()
    try:
        yield Cni(world, d, driver, tmp_path, install_cni_plugin)
    finally:
        d.stop()


def test_add_two_sandboxes_ping_check_and_del_twice(cni: Cni, tmp_path: Path) -> None:
    conf = cni.conflist(tmp_path / "net.conflist")
    s1, s2 = cni.sandbox("s1"), cni.sandbox("s2")
    r1 = cni.ok("add", conf, sandbox=s1, cid="c1")["result"]
    r2 = cni.ok("add", conf, sandbox=s2, cid="c2")["result"]
    assert r1["interfaces"][0]["sandbox"] == s1
    ip1, ip2 = (r["ips"][0]["address"].split("/")[0] for r in (r1, r2))
    assert ip1 != ip2
    link = cni.in_sandbox(s1, "ip", "-o", "link", "show", "eth0").stdout
    assert r1["interfaces"][0]["mac"] in link
    assert cni.in_sandbox(s1, "ping", "-c1", "-W2", ip2).returncode == 0
    table = cni.daemon.ok("attachments").stdout.splitlines()
    assert table[0].split()[:4] == ["NETWORK", "CONTAINER", "IFNAME", "STATE"]
    assert [line.split()[1] for line in table[1:]] == ["c1", "c2"]
    listed = cni.daemon.ok("--json", "attachments").json()
    assert [(a["container_id"], a["sandbox"]) for a in listed] == [("c1", s1), ("c2", s2)]
    assert cni.in_sandbox(s2, "ping", "-c1", "-W2", PEER).returncode == 0  # beyond the parent
    assert "default via 10.77.0.1" in cni.in_sandbox(s1, "ip", "route").stdout
    cni.ok("check", conf, sandbox=s1, cid="c1")

    cni.ok("del", conf, sandbox=s1, cid="c1")
    cni.ok("del", conf, sandbox=s1, cid="c1")  # the spec: DEL of what is gone succeeds
    assert cni.in_sandbox(s1, "ip", "link", "show", "eth0").returncode != 0
    assert [a.container_id for a in cni.attachments()] == ["c2"]
    assert "cni" not in cni.world.ip("-o", "link", "show", netns=cni.world.host)
    cni.ok("del", conf, sandbox=s2, cid="c2")
    assert cni.attachments() == []
    facts = [(e["event"], e.get("container_id")) for e in cni.daemon.events()]
    assert [f for f in facts if f[0].startswith("attachment.")] == [
        ("attachment.added", "c1"), ("attachment.added", "c2"),
        ("attachment.removed", "c1"), ("attachment.removed", "c2"),
    ]  # fmt: skip
    assert not any(p.name.startswith("10.") for p in (cni.ipam_dir / cni.network).iterdir())


def test_check_finds_a_missing_interface(cni: Cni, tmp_path: Path) -> None:
    conf = cni.conflist(tmp_path / "net.conflist")
    s1 = cni.sandbox("s1")
    cni.ok("add", conf, sandbox=s1, cid="c1")
    cni.in_sandbox(s1, "ip", "link", "del", "eth0")
    result = cni.run("check", conf, sandbox=s1, cid="c1")
    assert (result["ok"], result["code"], result["details"]) == (False, 100, "not_found")
    cni.ok("del", conf, sandbox=s1, cid="c1")


def test_check_finds_a_deleted_route(cni: Cni, tmp_path: Path) -> None:
    """The spec's CHECK compares prevResult's routes: host-local's default via the gateway,
    deleted inside the netns (by its own root, say), fails CHECK with the daemon's code."""
    conf = cni.conflist(tmp_path / "net.conflist")
    s1 = cni.sandbox("s1")
    cni.ok("add", conf, sandbox=s1, cid="c1")
    cni.ok("check", conf, sandbox=s1, cid="c1")
    cni.world.ip("route", "del", "default", "via", PEER, netns=os.path.basename(s1))
    result = cni.run("check", conf, sandbox=s1, cid="c1")
    assert (result["ok"], result["code"], result["details"]) == (False, 100, "failed")
    cni.world.ip("route", "add", "default", "via", PEER, netns=os.path.basename(s1))
    cni.ok("check", conf, sandbox=s1, cid="c1")  # back through eth0: CHECK passes again
    cni.ok("del", conf, sandbox=s1, cid="c1")


def test_a_failed_add_leaves_nothing_behind(cni: Cni, tmp_path: Path) -> None:
    conf = cni.conflist(tmp_path / "net.conflist")
    s1 = cni.sandbox("s1")
    taken = cni.in_sandbox(s1, "ip", "link", "add", "eth0", "type", "veth", "peer", "eth0p")
    assert taken.returncode == 0, taken.stderr
    result = cni.run("add", conf, sandbox=s1, cid="c1")
    assert (result["ok"], result["code"]) == (False, 100)
    assert "EEXIST" in result["details"] or "17" in result["details"]
    assert "cni" not in cni.world.ip("-o", "link", "show", netns=cni.world.host)
    assert cni.attachments() == []
    assert not any(p.name.startswith("10.") for p in (cni.ipam_dir / cni.network).iterdir())
    not_a_netns = tmp_path / "plain-file"
    not_a_netns.write_text("")
    result = cni.run("add", conf, sandbox=str(not_a_netns), cid="c2")
    assert (result["ok"], result["code"], result["details"]) == (False, 100, "os_error (EINVAL)")
    assert cni.attachments() == []


def test_gc_removes_what_the_valid_list_drops(cni: Cni, tmp_path: Path) -> None:
    conf = cni.conflist(tmp_path / "net.conflist", version="1.0.0")
    s1, s2 = cni.sandbox("s1"), cni.sandbox("s2")
    cni.ok("add", conf, sandbox=s1, cid="c1")
    cni.ok("add", conf, sandbox=s2, cid="c2")
    gc_conf = cni.conflist(tmp_path / "gc.conflist", version="1.1.0")
    cni.ok("gc", gc_conf, valid="c1/eth0")
    assert [a.container_id for a in cni.attachments()] == ["c1"]
    assert cni.in_sandbox(s2, "ip", "link", "show", "eth0").returncode != 0
    assert cni.in_sandbox(s1, "ip", "link", "show", "eth0").returncode == 0
    cni.ok("gc", gc_conf)
    assert cni.attachments() == []


def test_status_with_the_daemon_up_and_down(cni: Cni, tmp_path: Path) -> None:
    conf = cni.conflist(tmp_path / "net.conflist", version="1.1.0")
    cni.ok("status", conf)
    no_parent = cni.conflist(tmp_path / "gone.conflist", parent="gone0", version="1.1.0")
    assert cni.run("status", no_parent)["code"] == 51
    cni.daemon.stop()
    assert cni.run("status", conf)["code"] == 50


def test_version_through_libcni(cni: Cni) -> None:
    result = cni.ok("version", Path("/dev/null"))
    assert result["result"]["supportedVersions"] == ["1.0.0", "1.1.0"]


def test_a_killed_add_converges_at_restart(cni: Cni, tmp_path: Path) -> None:
    """The journal holds the intent of an ADD cut short once the interface was in the sandbox
    (and of one cut short with it still on the host): the restarted daemon removes both."""
    s1 = cni.sandbox("s1")
    cni.daemon.kill(signal.SIGKILL)
    moved = host_ifname(cni.network, "c1", "eth0")
    stuck = host_ifname(cni.network, "c2", "eth0")
    mac1, mac2 = "02:00:00:00:00:c1", "02:00:00:00:00:c2"

    async def half_done() -> None:
        plat = cni.world.platform()
        journal = await AttachmentJournal.open(str(cni.daemon.workdir / "state"))
        try:
            for cid, host, mac in (("c1", moved, mac1), ("c2", stuck, mac2)):
                await journal.save(protocol.Attachment(
                    network=cni.network, container_id=cid, ifname="eth0", sandbox=s1,
                    parent="lan0", mac=mac, host_ifname=host, state="attaching",
                ))  # fmt: skip
            await plat.create_in_sandbox(SandboxIfnet(
                parent="lan0", ifname=moved, mac=mac1, sandbox=s1, newname="eth0",
            ))  # fmt: skip
            await plat.create_bridged_ifnet("lan0", stuck, mac2)  # a netgraph ADD's first step
        finally:
            await journal.aclose()
            await plat.aclose()

    trio.run(half_done)
    assert cni.in_sandbox(s1, "ip", "link", "show", "eth0").returncode == 0
    cni.daemon.start()
    assert cni.in_sandbox(s1, "ip", "link", "show", "eth0").returncode != 0
    assert stuck not in cni.world.ip("-o", "link", "show", netns=cni.world.host)
    assert cni.attachments() == []


def test_a_linux_bridge_parent_gets_a_veth_pair(cni: Cni, tmp_path: Path) -> None:
    w = cni.world
    w.ip("link", "add", "br0", "type", "bridge", netns=w.host)
    w.ip("link", "set", "br0", "up", netns=w.host)
    w.ip("addr", "add", "10.77.0.1/24", "dev", "br0", netns=w.host)  # the gateway, on the host
    conf = cni.conflist(tmp_path / "br.conflist", parent="br0")
    s1 = cni.sandbox("s1")
    cni.ok("add", conf, sandbox=s1, cid="c1")
    assert cni.in_sandbox(s1, "ping", "-c1", "-W2", "10.77.0.1").returncode == 0
    assert "master br0" in w.ip("-o", "link", "show", netns=w.host)  # the host end
    cni.ok("check", conf, sandbox=s1, cid="c1")
    cni.ok("del", conf, sandbox=s1, cid="c1")
    assert cni.in_sandbox(s1, "ip", "link", "show", "eth0").returncode != 0
    assert "master br0" not in w.ip("-o", "link", "show", netns=w.host)
