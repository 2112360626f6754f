"""Sim tier: vimaged-cni attaches a VNET jail the test created (a container's, not a vimage).

The plugin runs as the engine would run it (its own process, CNI_* environment, config on
stdin), without IPAM: only the L2 part (ng_eiface on em0's ng_bridge, renamed and moved into
the jail) is checked here; test_cni_inet_sim.py has addresses, routes and MTU.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any

import pytest
import trio

from tests.sim.daemon_harness import Daemon, daemon_on
from vimagectl.client import Client, ClientError
from vimagectl.exits import EX_USAGE, exit_status
from vimaged import protocol
from vimaged.attachments import AttachmentJournal, host_ifname
from vimaged.platforms import SandboxIfnet, sim
from vimaged.platforms.netgraph_bridges import eiface_name

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.sim.conftest import SimHostHandle
    from vimagectl.replies import Attachment
    from vimagectl.replies import Status as StatusRequest

pytestmark = pytest.mark.sim

NETWORK = "simnet"


@pytest.fixture
def daemon(sim_host: SimHostHandle, tmp_path: Path) -> Iterator[Daemon]:
    with daemon_on(sim_host, tmp_path, config='vimage_enable="NO"\nvimage_list=""\n') as d:
        yield d


def plugin(daemon: Daemon, command: str, sandbox: str = "", cid: str = "c1") -> dict[str, Any]:
    conf = {"cniVersion": "1.0.0", "name": NETWORK, "type": "vimaged-cni", "parent": "em0",
            "socket": daemon.socket_path}  # fmt: skip
    env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=cid, CNI_NETNS=sandbox,
               CNI_IFNAME="eth0", CNI_PATH="/nonexistent")  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", "from vimaged_cni.cli import main; main()"],
        input=json.dumps(conf), env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    out: dict[str, Any] = json.loads(done.stdout) if done.stdout.strip() else {}
    out["exit"] = done.returncode
    return out


def eifaces(sim_host: SimHostHandle) -> list[str]:
    return sorted(n.name for n in sim_host.ng_nodes() if n.type == "eiface")


def test_add_check_del_into_a_jail_by_name_and_by_jid(
    daemon: Daemon, sim_host: SimHostHandle
) -> None:
    jid = sim_host.create_jail("ctr1")
    added = plugin(daemon, "ADD", "ctr1")
    assert added["exit"] == 0, added
    [iface] = added["interfaces"]
    assert iface["sandbox"] == "ctr1"
    inside = {i.name: i for i in sim_host.ifnets(jid)}
    assert inside["eth0"].mac == iface["mac"]
    assert inside["eth0"].up
    assert eifaces(sim_host) == [eiface_name(host_ifname(NETWORK, "c1", "eth0"))]
    assert plugin(daemon, "CHECK", "ctr1")["exit"] == 0

    # A second container, named by jid.
    jid2 = sim_host.create_jail("ctr2")
    assert plugin(daemon, "ADD", str(jid2), cid="c2")["exit"] == 0
    assert "eth0" in {i.name for i in sim_host.ifnets(jid2)}

    for cid in ("c1", "c1", "c2"):  # DEL twice: the second succeeds
        assert plugin(daemon, "DEL", cid=cid)["exit"] == 0
    assert "eth0" not in {i.name for i in sim_host.ifnets(jid)}
    assert eifaces(sim_host) == []
    assert {n.type for n in sim_host.ng_nodes()} <= {"ether", "socket"}  # bridge released


def test_attachments_survive_a_daemon_restart(daemon: Daemon, sim_host: SimHostHandle) -> None:
    """The supervisor's orphan sweep must not take an attachment for a leftover bridge."""
    jid = sim_host.create_jail("ctr1")
    assert plugin(daemon, "ADD", "ctr1")["exit"] == 0
    assert daemon.kill(signal.SIGKILL) == -signal.SIGKILL
    daemon.start()
    assert "eth0" in {i.name for i in sim_host.ifnets(jid)}
    assert plugin(daemon, "CHECK", "ctr1")["exit"] == 0
    assert plugin(daemon, "DEL")["exit"] == 0
    assert eifaces(sim_host) == []


def test_a_failed_move_leaves_nothing_behind(daemon: Daemon, sim_host: SimHostHandle) -> None:
    jid = sim_host.create_jail("ctr1")
    sim_host.set_faults("move_fail=1")
    failed = plugin(daemon, "ADD", "ctr1")
    assert (failed["exit"], failed["code"], failed["details"]) == (1, 100, "os_error (EBUSY)")
    assert eifaces(sim_host) == []
    assert not any(i.name.startswith(("cni", "eth")) for i in sim_host.ifnets(0))
    assert "eth0" not in {i.name for i in sim_host.ifnets(jid)}
    assert plugin(daemon, "ADD", "ctr1")["exit"] == 0  # and the next one works


@pytest.mark.parametrize("sandbox", ["nosuchjail", "999"])
def test_an_absent_jail_is_refused(daemon: Daemon, sim_host: SimHostHandle, sandbox: str) -> None:
    failed = plugin(daemon, "ADD", sandbox)
    assert (failed["exit"], failed["code"], failed["details"]) == (1, 100, "os_error (ENOENT)")
    assert eifaces(sim_host) == []


def test_the_daemon_gives_no_vimage_as_a_sandbox(daemon: Daemon, sim_host: SimHostHandle) -> None:
    daemon.write_config('vimage_enable="NO"\nvimage_list="web"\nvimage_web_bridges="em1"\n')
    daemon.ok("reload")
    daemon.ok("start", "web")
    failed = plugin(daemon, "ADD", "web")
    assert (failed["exit"], failed["code"], failed["details"]) == (1, 100, "invalid_request")
    daemon.ok("stop", "web")


def test_a_killed_add_converges_at_restart(daemon: Daemon, sim_host: SimHostHandle) -> None:
    """The journal holds the intent of an ADD cut short with the eiface already in the jail, and
    of one cut short with it still on the host: the restarted daemon destroys both nodes."""
    jid = sim_host.create_jail("ctr1")
    assert daemon.kill(signal.SIGKILL) == -signal.SIGKILL
    moved, stuck = host_ifname(NETWORK, "c1", "eth0"), host_ifname(NETWORK, "c2", "eth0")

    async def half_done() -> None:
        plat = sim.create(sim_host=sim_host.socket_path, state_dir=str(daemon.workdir / "p"))
        journal = await AttachmentJournal.open(str(daemon.workdir / "state"))
        try:
            for cid, host, mac in (("c1", moved, "02:00:00:00:00:c1"),
                                   ("c2", stuck, "02:00:00:00:00:c2")):  # fmt: skip
                await journal.save(protocol.Attachment(
                    network=NETWORK, container_id=cid, ifname="eth0", sandbox="ctr1",
                    parent="em0", mac=mac, host_ifname=host, state="attaching",
                ))  # fmt: skip
            await plat.create_in_sandbox(SandboxIfnet(
                parent="em0", ifname=moved, mac="02:00:00:00:00:c1", sandbox="ctr1",
                newname="eth0",
            ))  # fmt: skip
            await plat.create_bridged_ifnet("em0", stuck, "02:00:00:00:00:c2")
        finally:
            await journal.aclose()
            await plat.aclose()

    trio.run(half_done)
    assert "eth0" in {i.name for i in sim_host.ifnets(jid)}
    assert len(eifaces(sim_host)) == 2
    daemon.start()
    assert "eth0" not in {i.name for i in sim_host.ifnets(jid)}
    assert eifaces(sim_host) == []
    assert {n.type for n in sim_host.ng_nodes()} <= {"ether", "socket"}


LONG_ID = "3f2a9c0d5e7b41a8b6c2d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4"
"""A containerd-style ID: 64 hex digits, no vimage name (too long, may start with a digit)."""


def test_list_and_status_show_attachments(daemon: Daemon, sim_host: SimHostHandle) -> None:
    daemon.write_config('vimage_enable="NO"\nvimage_list="web"\nvimage_web_bridges="em1"\n')
    daemon.ok("reload")
    sim_host.create_jail("ctr1")
    sim_host.create_jail("ctr2")
    assert plugin(daemon, "ADD", "ctr1", cid=LONG_ID)["exit"] == 0
    assert plugin(daemon, "ADD", "ctr2", cid="c2")["exit"] == 0
    long_host, c2_host = host_ifname(NETWORK, LONG_ID, "eth0"), host_ifname(NETWORK, "c2", "eth0")

    # list: the vimages' table, a blank line, the attachments' table.
    vimages, attachments = daemon.ok("list").stdout.split("\n\n")
    assert vimages.splitlines()[1].split()[:2] == ["web", "stopped"]
    header, *rows = (line.split() for line in attachments.splitlines())
    assert header == ["NETWORK", "CONTAINER", "IFNAME", "STATE", "PARENT", "INTERFACE", "MAC",
                      "SANDBOX", "ADDRESSES"]  # fmt: skip
    assert sorted((r[1], r[2], r[4], r[5], r[7]) for r in rows) == sorted([
        (LONG_ID, "eth0", "em0", long_host, "ctr1"), ("c2", "eth0", "em0", c2_host, "ctr2"),
    ])  # fmt: skip
    assert all(r[0] == NETWORK for r in rows)
    assert [v["name"] for v in daemon.ok("--json", "list").json()] == ["web"]  # shape unchanged

    # status: by container ID, by a prefix of one, by a name that is no vimage, and mixed.
    [by_id] = daemon.ok("--json", "status", LONG_ID).json()
    assert (by_id["container_id"], by_id["network"], by_id["ifname"], by_id["parent"],
            by_id["sandbox"], by_id["host_ifname"]) == (
        LONG_ID, NETWORK, "eth0", "em0", "ctr1", long_host,
    )  # fmt: skip
    assert daemon.ok("--json", "status", LONG_ID[:12]).json() == [by_id]
    web, c2 = daemon.ok("--json", "status", "web", "c2").json()
    assert (web["name"], c2["container_id"], c2["sandbox"]) == ("web", "c2", "ctr2")
    text = daemon.ok("status", LONG_ID[:12]).stdout.splitlines()
    assert text[0].startswith(f"{LONG_ID} eth0 on {NETWORK}: attached, sandbox ctr1")
    assert text[1].split()[:4] == [long_host, "attachment", "parent", "em0"]

    # On the wire: one vimages frame carries them, a stream its vimages_end.
    with Client(daemon.socket_path, 10.0) as client:
        assert client.hello is not None
        assert "stream" in client.hello["features"]
        whole = client.request({"op": "list"})
        assert whole["reply"] == "vimages"
        assert {a["container_id"] for a in whole["attachments"]} == {LONG_ID, "c2"}
        streamed: list[Attachment] = []
        status: StatusRequest = {"op": "status", "names": ["web"], "containers": ["c2"]}
        assert [v["name"] for v in client.listing(status, streamed)] == ["web"]
        assert [a["host_ifname"] for a in streamed] == [c2_host]
        with pytest.raises(ClientError) as caught:
            list(client.listing({"op": "status", "names": [], "containers": ["0badc0ffee"]}))
        assert caught.value.code == "not_found"

    # Nothing of that name, or a prefix of two IDs: the usual exit codes.
    assert daemon.ctl("status", "0badc0ffee").code == exit_status("not_found")
    assert daemon.ctl("status", "nosuchthing").code == exit_status("not_found")
    sim_host.create_jail("ctr3")
    assert plugin(daemon, "ADD", "ctr3", cid="c3")["exit"] == 0
    assert daemon.ctl("status", "c").code == exit_status("invalid_request")
    assert daemon.ctl("status", "bad/id").code == EX_USAGE
    for cid in (LONG_ID, "c2", "c3"):
        assert plugin(daemon, "DEL", cid=cid)["exit"] == 0
    assert daemon.ok("list").stdout.count("\n\n") == 0  # no attachments: no section


def test_events_report_attachments(daemon: Daemon, sim_host: SimHostHandle) -> None:
    sim_host.create_jail("ctr1")
    lines: queue.Queue[str] = queue.Queue()
    watcher = subprocess.Popen(
        [sys.executable, "-m", "vimagectl", "-s", daemon.socket_path, "--json", "events"],
        stdout=subprocess.PIPE,
        text=True,
    )
    stdout = watcher.stdout
    assert stdout is not None

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    reader = threading.Thread(target=pump)
    reader.start()
    try:
        seen: dict[str, dict[str, Any]] = {}
        for _ in range(20):  # the subscription may land after the first ADD: cycle
            seen.clear()
            assert plugin(daemon, "ADD", "ctr1")["exit"] == 0
            assert plugin(daemon, "DEL")["exit"] == 0
            with contextlib.suppress(queue.Empty):
                while "attachment.removed" not in seen:
                    event = json.loads(lines.get(timeout=1.0))
                    seen[event["event"]] = event["data"]
            if "attachment.added" in seen and "attachment.removed" in seen:
                break
    finally:
        watcher.kill()
        watcher.wait()
        reader.join(5)  # it ends at the killed watcher's EOF
        stdout.close()
    expected = {"network": NETWORK, "container_id": "c1", "ifname": "eth0", "sandbox": "ctr1",
                "parent": "em0", "host_ifname": host_ifname(NETWORK, "c1", "eth0")}  # fmt: skip
    for event in ("attachment.added", "attachment.removed"):
        assert {k: seen[event].get(k) for k in expected} == expected, event
