"""Sim tier: vimaged-cni with IPAM into a VNET jail: MTU, addresses and routes inside it.

A tiny IPAM plugin (a shell script printing a host-local-like CNI result) is run by the plugin
from CNI_PATH, as containerd would have it; the sim host models the SIOCSIFMTU, SIOCAIFADDR(_IN6)
and RTM_ADD calls the freebsd platform makes from inside the jail (vimaged.simhost.inet).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from tests.sim.daemon_harness import Daemon, daemon_on

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.sim.conftest import SimHostHandle

pytestmark = pytest.mark.sim

NETWORK = "simnet"
RESULT = {
    "cniVersion": "1.0.0",
    "ips": [
        {"address": "192.0.2.10/24", "gateway": "192.0.2.1"},
        {"address": "2001:db8::10/64", "gateway": "2001:db8::1"},
    ],
    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}, {"dst": "198.51.100.0/24"}],
}


@pytest.fixture
def daemon(sim_host: SimHostHandle, tmp_path: Path) -> Iterator[Daemon]:
    with daemon_on(sim_host, tmp_path, config='vimage_enable="NO"\nvimage_list=""\n') as d:
        yield d


def fake_ipam(tmp_path: Path, result: dict[str, Any]) -> Path:
    """``fake-ipam`` in ``tmp_path/bin``: logs each verb, prints ``result`` for ADD."""
    plugin = tmp_path / "bin" / "fake-ipam"
    plugin.parent.mkdir(exist_ok=True)
    plugin.write_text(
        "#!/bin/sh\n"
        f'echo "$CNI_COMMAND" >> {tmp_path / "ipam.log"}\n'
        f"[ \"$CNI_COMMAND\" = ADD ] && echo '{json.dumps(result)}'\n"
        "exit 0\n"
    )
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    return plugin.parent


def ipam_calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "ipam.log"
    return log.read_text().split() if log.exists() else []


def plugin(daemon: Daemon, command: str, sandbox: str, bindir: Path, **conf: Any) -> dict[str, Any]:
    stdin = {"cniVersion": "1.0.0", "name": NETWORK, "type": "vimaged-cni", "parent": "em0",
             "socket": daemon.socket_path, "ipam": {"type": "fake-ipam"}, **conf}  # fmt: skip
    env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID="c1", CNI_NETNS=sandbox,
               CNI_IFNAME="eth0", CNI_PATH=str(bindir))  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", "from vimaged_cni.cli import main; main()"],
        input=json.dumps(stdin), env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    out: dict[str, Any] = json.loads(done.stdout) if done.stdout.strip() else {}
    out["exit"] = done.returncode
    return out


def nothing_left(sim_host: SimHostHandle, jid: int) -> None:
    assert not [n.name for n in sim_host.ng_nodes() if n.type == "eiface"]
    assert "eth0" not in {i.name for i in sim_host.ifnets(jid)}
    assert not any(i.name.startswith("cni") for i in sim_host.ifnets(0))
    assert sim_host.routes(jid) == []
    assert {n.type for n in sim_host.ng_nodes()} <= {"ether", "socket"}  # bridge released


def test_add_sets_mtu_addresses_and_routes_check_passes_del_removes(
    daemon: Daemon, sim_host: SimHostHandle, tmp_path: Path
) -> None:
    jid = sim_host.create_jail("ctr1")
    bindir = fake_ipam(tmp_path, RESULT)
    added = plugin(daemon, "ADD", "ctr1", bindir, mtu=1400)
    assert added["exit"] == 0, added
    eth0 = {i.name: i for i in sim_host.ifnets(jid)}["eth0"]
    assert (eth0.up, eth0.mtu) == (True, 1400)
    assert eth0.addresses == ["192.0.2.10/24", "2001:db8::10/64"]
    routes = {(r.dst, r.gateway, r.ifname) for r in sim_host.routes(jid)}
    assert routes == {
        ("0.0.0.0/0", "192.0.2.1", "eth0"),
        ("::/0", "2001:db8::1", "eth0"),
        ("198.51.100.0/24", "192.0.2.1", "eth0"),
    }
    # vimagectl's view: the attachment's addresses as the sandbox has them.
    [att] = daemon.ok("--json", "attachments").json()
    assert att["addresses"] == ["192.0.2.10/24", "2001:db8::10/64"]

    prev = {k: v for k, v in added.items() if k != "exit"}
    assert plugin(daemon, "CHECK", "ctr1", bindir, mtu=1400, prevResult=prev)["exit"] == 0
    claimed = {**prev, "ips": [*added["ips"], {"address": "192.0.2.99/24", "interface": 0}]}
    wrong = plugin(daemon, "CHECK", "ctr1", bindir, mtu=1400, prevResult=claimed)
    assert (wrong["exit"], wrong["code"], wrong["details"]) == (1, 100, "failed")
    other_mtu = plugin(daemon, "CHECK", "ctr1", bindir, mtu=1500, prevResult=prev)
    assert (other_mtu["exit"], other_mtu["code"], other_mtu["details"]) == (1, 100, "failed")

    assert plugin(daemon, "DEL", "ctr1", bindir, mtu=1400)["exit"] == 0
    nothing_left(sim_host, jid)
    assert ipam_calls(tmp_path) == ["ADD", "CHECK", "DEL"]


def test_check_fails_once_a_route_is_gone_from_the_jail(
    daemon: Daemon, sim_host: SimHostHandle, tmp_path: Path
) -> None:
    """The spec's CHECK: prevResult's routes must be there (read back by sysctl NET_RT_DUMP
    in the jail); one deleted from inside the jail fails it, the interface still fine."""
    jid = sim_host.create_jail("ctr1")
    bindir = fake_ipam(tmp_path, RESULT)
    added = plugin(daemon, "ADD", "ctr1", bindir)
    assert added["exit"] == 0, added
    prev = {k: v for k, v in added.items() if k != "exit"}
    assert plugin(daemon, "CHECK", "ctr1", bindir, prevResult=prev)["exit"] == 0
    sim_host.del_route("198.51.100.0/24", jid=jid)
    gone = plugin(daemon, "CHECK", "ctr1", bindir, prevResult=prev)
    assert (gone["exit"], gone["code"], gone["details"]) == (1, 100, "failed")
    sim_host.del_route("::/0", jid=jid)  # a default route, the other family's
    prev4 = {**prev, "routes": [{"dst": "0.0.0.0/0"}]}
    assert plugin(daemon, "CHECK", "ctr1", bindir, prevResult=prev4)["exit"] == 0
    prev6 = {**prev, "routes": [{"dst": "::/0"}]}
    gone6 = plugin(daemon, "CHECK", "ctr1", bindir, prevResult=prev6)
    assert (gone6["exit"], gone6["code"]) == (1, 100)
    assert plugin(daemon, "DEL", "ctr1", bindir)["exit"] == 0
    nothing_left(sim_host, jid)


def test_a_route_failing_mid_apply_rolls_everything_back(
    daemon: Daemon, sim_host: SimHostHandle, tmp_path: Path
) -> None:
    """MTU and addresses are in, then RTM_ADD of a route via an off-link gateway fails with
    ENETUNREACH: the interface goes (with what was set on it) and IPAM's lease is released."""
    jid = sim_host.create_jail("ctr1")
    offlink = {**RESULT, "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.0.0.0/8", "gw": "10.1.1.1"}]}
    failed = plugin(daemon, "ADD", "ctr1", fake_ipam(tmp_path, offlink), mtu=1400)
    assert (failed["exit"], failed["code"], failed["details"]) == (
        1,
        100,
        "os_error (ENETUNREACH)",
    )
    nothing_left(sim_host, jid)
    assert ipam_calls(tmp_path) == ["ADD", "DEL"]
    assert daemon.ok("--json", "attachments").json() == []


def test_an_mtu_the_eiface_cannot_take_is_refused_before_anything_exists(
    daemon: Daemon, sim_host: SimHostHandle, tmp_path: Path
) -> None:
    jid = sim_host.create_jail("ctr1")
    failed = plugin(daemon, "ADD", "ctr1", fake_ipam(tmp_path, RESULT), mtu=70)  # < 72
    assert (failed["exit"], failed["code"], failed["details"]) == (
        1,
        100,
        "os_error (EINVAL)",
    )
    nothing_left(sim_host, jid)
    assert ipam_calls(tmp_path) == ["ADD", "DEL"]
