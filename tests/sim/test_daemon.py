"""End to end: the real vimaged process on the sim host, driven by the real vimagectl."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import pytest
import trio

from tests.sim.conftest import SimHostHandle
from tests.sim.daemon_harness import Daemon, daemon_on
from vimaged.macs import jng_mac
from vimaged.netgraph.ngsocket import open_ng_socket
from vimaged.platforms.netgraph_bridges import bridge_name, eiface_name
from vimaged.platforms.sim import SimOptions, SimPlatform
from vimaged.platforms.sim_transport import open_sim_transport
from vimaged.simhost import rpc, wire

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


pytestmark = pytest.mark.sim

SEED = """
vimage_enable="NO"
vimage_list="router web"
vimage_router_vnets="em1 fxp0 igb0"
vimage_web_bridges="em0 em0"
"""

EX_CONFIG = 78


@pytest.fixture
def daemon(sim_host: SimHostHandle, tmp_path: Path) -> Iterator[Daemon]:
    with daemon_on(sim_host, tmp_path, nics=("em0", "em1", "fxp0", "igb0"), up=True) as d:
        yield d


def is_local_unicast(mac: str) -> bool:
    first = int(mac.split(":")[0], 16)
    return bool(first & 0x02) and not first & 0x01


def test_seed_examples_start_list_stop(daemon: Daemon, sim_host: SimHostHandle) -> None:
    daemon.write_config(SEED)
    daemon.start()
    started = daemon.ok("--json", "start", "--all")
    assert started.code == 0
    vimages = daemon.vimages()
    router, web = vimages["router"], vimages["web"]
    assert router["state"] == web["state"] == "running"
    for nic in ("em1", "fxp0", "igb0"):
        assert sim_host.vnet_of(nic) == router["jid"]
    assert [(i["name"], i["kind"], i["where"]) for i in router["interfaces"]] == [
        ("em1", "vnet", "vimage"),
        ("fxp0", "vnet", "vimage"),
        ("igb0", "vnet", "vimage"),
    ]
    bridged = {i["name"]: i for i in web["interfaces"]}
    assert set(bridged) == {"ng0_web", "ng1_web"}
    assert {i["parent"] for i in bridged.values()} == {"em0"}
    macs = {i["mac"] for i in bridged.values()}
    assert len(macs) == 2
    assert all(is_local_unicast(m) for m in macs)
    inside = {i.name: i.mac for i in sim_host.ifnets(web["jid"])}
    assert {n: inside[n] for n in bridged} == {n: i["mac"] for n, i in bridged.items()}
    assert sim_host.vnet_of("em0") == 0  # bridged, not moved

    daemon.ok("stop", "--all")
    vimages = daemon.vimages()
    assert {v["state"] for v in vimages.values()} == {"stopped"}
    for nic in ("em0", "em1", "fxp0", "igb0"):
        assert sim_host.vnet_of(nic) == 0
    assert sim_host.jails() == []
    assert {n.type for n in sim_host.ng_nodes()} <= {"ether", "socket"}


def test_macs_are_stable_across_restarts(daemon: Daemon) -> None:
    daemon.write_config(SEED)
    daemon.start()
    daemon.ok("start", "web")
    first = {i["name"]: i["mac"] for i in daemon.vimages()["web"]["interfaces"]}
    daemon.ok("stop", "web")
    daemon.stop()
    daemon.start()
    daemon.ok("start", "web")
    again = {i["name"]: i["mac"] for i in daemon.vimages()["web"]["interfaces"]}
    assert again == first


@pytest.mark.parametrize(
    ("config", "variable"),
    [
        ('vimage_list="a b"\nvimage_a_vnets="em1"\nvimage_b_vnets="em1"\n', "vimage_b_vnets"),
        ('vimage_list="a"\nvimage_a_vnets="em0"\nvimage_a_bridges="em0"\n', "vimage_a_bridges"),
        (
            'vimage_list="a"\nvimage_a_bridges="em0"\nvimage_a_ether_0="01:00:00:00:00:01"\n',
            "vimage_a_ether_0",
        ),
        ('vimage_list="a b"\nvimage_a_depend="b"\nvimage_b_depend="a"\n', "depend"),
        (
            'vimage_list="averyveryverylongname"\nvimage_averyveryverylongname_bridges="em0"\n',
            "vimage_averyveryverylongname_ifname",
        ),
        ('vimage_list="a"\nvimage_a_vnets="$(ifconfig -l)"\n', "rc.conf:2"),
    ],
)
def test_config_errors_refuse_to_start(
    daemon: Daemon, sim_host: SimHostHandle, config: str, variable: str
) -> None:
    daemon.write_config(config)
    result = daemon.run_to_exit()
    assert result.returncode == EX_CONFIG, result
    assert variable in result.stderr
    assert sim_host.jails() == []
    daemon.extra_args = ["--check-config"]  # `service vimaged configtest` says the same
    checked = daemon.run_to_exit()
    assert (checked.returncode, checked.stdout) == (EX_CONFIG, ""), checked
    assert variable in checked.stderr


def test_check_config_finds_nics_on_the_host_or_inside_running_vimages(
    daemon: Daemon, sim_host: SimHostHandle
) -> None:
    daemon.write_config(SEED)
    checker = Daemon(sim_socket=sim_host.socket_path, workdir=daemon.workdir)
    checker.extra_args = ["--check-config"]
    checked = checker.run_to_exit()
    assert checked.returncode == 0, checked
    assert checked.stdout.startswith("vimaged: configuration OK: 2 vimage(s) (router, web); ")
    assert "NICs present: em0 em1 fxp0 igb0" in checked.stdout
    assert sim_host.jails() == []  # checking starts nothing
    daemon.start()
    daemon.ok("start", "router")  # em1 fxp0 igb0 now inside router's jail
    assert checker.run_to_exit().returncode == 0


def test_failed_start_rolls_back_everything(daemon: Daemon, sim_host: SimHostHandle) -> None:
    daemon.write_config(
        SEED.replace(
            'vimage_web_bridges="em0 em0"', 'vimage_web_bridges="em0 em0"\nvimage_web_vnets="em1"'
        ).replace("em1 fxp0", "fxp0")
    )
    sim_host.script_exec("web", "/etc/rc", status=1)
    daemon.start()
    result = daemon.ctl("--json", "start", "web")
    assert result.code != 0
    web = daemon.vimages()["web"]
    assert web["state"] == "failed"
    assert web["jid"] is None
    assert sim_host.jails() == []
    assert sim_host.vnet_of("em1") == 0
    assert {n.type for n in sim_host.ng_nodes()} <= {"ether", "socket"}
    assert not any(i.name.startswith("ng") for i in sim_host.ifnets(0))


def test_nic_comes_home_through_a_dying_jail(daemon: Daemon, sim_host: SimHostHandle) -> None:
    daemon.write_config(
        'vimage_list="db other"\nvimage_db_vnets="em1"\nvimage_other_vnets="em1"\n'.replace(
            'vimage_other_vnets="em1"', 'vimage_other_bridges="em0"'
        )
    )
    daemon.start()
    daemon.ok("start", "db")
    jid = daemon.vimages()["db"]["jid"]
    sim_host.set_faults("dying=3, reclaim_fail=1000")
    daemon.ok("stop", "db")
    em1 = next(i for i in daemon.vimages()["db"]["interfaces"] if i["name"] == "em1")
    assert em1["where"] == "pending-return"
    assert em1["holder_jid"] == jid
    assert sim_host.vnet_of("em1") != 0
    daemon.wait_until(
        lambda: (
            sim_host.vnet_of("em1") == 0
            and next(i for i in daemon.vimages()["db"]["interfaces"] if i["name"] == "em1")["where"]
            == "host"
        ),
        timeout=30,
        what="em1 back on the host",
    )
    sim_host.set_faults("")
    daemon.ok("start", "db")
    assert sim_host.vnet_of("em1") == daemon.vimages()["db"]["jid"]


def test_sigkill_and_restart_adopts_running_vimages(
    daemon: Daemon, sim_host: SimHostHandle
) -> None:
    daemon.write_config(SEED)
    daemon.start()
    daemon.ok("start", "--all")
    before = daemon.vimages()
    daemon.kill(signal.SIGKILL)
    daemon.start()
    after = daemon.vimages()
    assert {n: (v["state"], v["jid"]) for n, v in after.items()} == {
        n: (v["state"], v["jid"]) for n, v in before.items()
    }
    assert any(e.get("event") == "vimage.adopted" for e in daemon.events())
    daemon.ok("stop", "--all")
    assert sim_host.jails() == []
    for nic in ("em0", "em1", "fxp0", "igb0"):
        assert sim_host.vnet_of(nic) == 0


def test_reload_adds_vimages_and_marks_changed_ones(daemon: Daemon) -> None:
    daemon.write_config(SEED)
    daemon.start()
    daemon.ok("start", "web")
    daemon.write_config(
        SEED.replace('"router web"', '"router web extra"').replace(
            'vimage_web_bridges="em0 em0"', 'vimage_web_bridges="em0"'
        )
        + 'vimage_extra_bridges="em0"\n'
    )
    reloaded = daemon.ok("--json", "reload").json()
    assert reloaded["added"] == ["extra"]
    assert "web" in reloaded["changed"]
    vimages = daemon.vimages()
    assert vimages["web"]["config_changed"] is True
    assert len(vimages["web"]["interfaces"]) == 2  # keeps its setup until restarted
    daemon.ok("restart", "web")
    assert len(daemon.vimages()["web"]["interfaces"]) == 1


def test_vanished_jail_is_restarted_by_policy(daemon: Daemon, sim_host: SimHostHandle) -> None:
    daemon.write_config(
        'vimage_list="web"\nvimage_web_bridges="em0"\nvimage_web_restart="on-failure"\n'
        'vimage_web_health_interval="0.2"\n'
    )
    daemon.start()
    daemon.ok("start", "web")
    first = daemon.vimages()["web"]["jid"]
    sim_host.kill_jail("web")
    daemon.wait_until(
        lambda: (
            daemon.vimages()["web"]["restarts"] == 1
            and daemon.vimages()["web"]["state"] == "running"
        ),
        what="web restarted",
    )
    web = daemon.vimages()["web"]
    assert web["jid"] != first
    assert sim_host.ifnets(web["jid"])  # its interface is inside the new jail


def test_health_is_a_nagios_plugin(daemon: Daemon, sim_host: SimHostHandle) -> None:
    daemon.write_config(
        'vimage_list="web"\nvimage_web_bridges="em0"\nvimage_web_health_cmd="check"\n'
        'vimage_web_health_interval="0.2"\nvimage_web_health_retries="1"\n'
    )
    daemon.start()
    daemon.ok("start", "web")
    daemon.wait_until(lambda: daemon.ctl("health", "web").code == 0, what="health ok")
    sim_host.script_exec("web", "check", status=1)
    daemon.wait_until(lambda: daemon.ctl("health", "web").code == 2, what="health critical")


def test_health_names_what_the_failing_check_said(daemon: Daemon, sim_host: SimHostHandle) -> None:
    daemon.write_config(
        'vimage_list="web"\nvimage_web_bridges="em0"\nvimage_web_health_cmd="check"\n'
        # retries high: it stays degraded (WARNING) instead of failing after three checks
        'vimage_web_health_interval="0.2"\nvimage_web_health_retries="1000"\n'
    )
    daemon.start()
    sim_host.script_exec("web", "check", status=0, output="nginx is running as pid 41.\n")
    daemon.ok("start", "web")
    daemon.wait_until(lambda: daemon.ctl("health", "web").code == 0, what="health ok")
    sim_host.script_exec("web", "check", status=1, output="nginx is not running.\n")
    daemon.wait_until(lambda: daemon.ctl("health", "web").code == 1, what="health warning")
    web = daemon.vimages()["web"]
    assert web["health_reason"] == "health_cmd exited 1: nginx is not running."
    line = daemon.ctl("health", "web").stdout
    assert line.startswith("VIMAGED WARNING - web: health_cmd exited 1: nginx is not running.")
    assert "health: health_cmd exited 1" in daemon.ok("status", "web").stdout
    log = daemon.log()
    assert "running as pid" not in log  # a check every 0.2 s, never into the log
    [changed] = [line for line in log.splitlines() if '"health.degraded"' in line]
    assert '"op"' not in changed  # the poll is not the start request that spawned it


def test_exec_output_goes_to_the_console_log_and_ends_a_failed_starts_error(
    daemon: Daemon, sim_host: SimHostHandle, tmp_path: Path
) -> None:
    console = tmp_path / "router.console"
    daemon.write_config(SEED + f'vimage_router_exec_consolelog="{console}"\n')
    daemon.start()
    sim_host.script_exec(
        "router", "/etc/rc", status=1, output="Starting pf.\npfctl: /etc/pf.conf: bad rule\n"
    )
    failed = daemon.ctl("start", "router")
    assert failed.code == 70
    assert "exited with status 1: pfctl: /etc/pf.conf: bad rule" in failed.stderr
    assert console.read_text() == "Starting pf.\npfctl: /etc/pf.conf: bad rule\n"
    assert console.stat().st_mode & 0o777 == 0o600
    sim_host.script_exec("router", "/etc/rc", status=0, output="Starting pf.\n")
    sim_host.script_exec("router", "rc.shutdown", status=0, output="Stopping pf.\n")
    daemon.ok("start", "router")
    daemon.ok("stop", "router")
    assert console.read_text().endswith("bad rule\nStarting pf.\nStopping pf.\n")


def test_host_hooks_run_around_the_vimage_with_its_environment(
    daemon: Daemon, sim_host: SimHostHandle
) -> None:
    daemon.write_config(
        SEED + 'vimage_router_exec_prestart="pf-load"\nvimage_router_exec_poststart="route-add"\n'
        'vimage_router_exec_prestop="route-del"\nvimage_router_exec_poststop="pf-flush"\n'
    )
    daemon.start()
    daemon.ok("start", "router")
    jid = daemon.vimages()["router"]["jid"]
    daemon.ok("stop", "router")
    ran = [(e.jail, e.command.split()[-1]) for e in sim_host.exec_log()]
    assert ran == [
        ("", "pf-load"),
        ("router", "/etc/rc"),
        ("", "route-add"),
        ("", "route-del"),
        ("router", "jail"),  # /bin/sh /etc/rc.shutdown jail
        ("", "pf-flush"),
    ]
    hooks = {e.command: e.env for e in sim_host.exec_log() if e.jid == 0}
    assert hooks["pf-load"] == {
        "VIMAGE_NAME": "router",
        "VIMAGE_JID": "",
        "VIMAGE_PATH": "/",
        "VIMAGE_INTERFACES": "em1 fxp0 igb0",
    }
    assert hooks["route-add"]["VIMAGE_JID"] == str(jid)
    assert hooks["pf-flush"]["VIMAGE_JID"] == str(jid)


def test_a_failing_poststart_rolls_back_and_runs_poststop(
    daemon: Daemon, sim_host: SimHostHandle, tmp_path: Path
) -> None:
    daemon.write_config(
        SEED + 'vimage_router_exec_prestart="pf-load"\nvimage_router_exec_poststart="route-add"\n'
        'vimage_router_exec_poststop="pf-flush"\nvimage_router_exec_prestop="route-del"\n'
        f'vimage_router_exec_consolelog="{tmp_path / "router.console"}"\n'
    )
    daemon.start()
    sim_host.script_exec("", "route-add", status=2, output="route: writing to routing socket\n")
    failed = daemon.ctl("start", "router")
    assert failed.code == 70
    assert "vimage_router_exec_poststart 'route-add' exited with status 2: route:" in failed.stderr
    for nic in ("em1", "fxp0", "igb0"):
        daemon.wait_until(lambda nic=nic: sim_host.vnet_of(nic) == 0, what=f"{nic} home")
    assert [e.command for e in sim_host.exec_log() if e.jid == 0] == [
        "pf-load",
        "route-add",
        "pf-flush",  # what exec_prestart set up is taken down; prestop never ran: no stop
    ]
    sim_host.script_exec("", "route-add", status=0)
    sim_host.script_exec("", "route-del", status=1)  # a failing stop-side hook: logged only
    daemon.ok("start", "router")
    daemon.ok("stop", "router")
    assert "vimage.hook_failed" in daemon.log()


def test_a_second_daemon_never_takes_a_live_socket(daemon: Daemon) -> None:
    daemon.write_config(SEED)
    daemon.start()
    second = daemon.run_to_exit()
    assert second.returncode == 69, second
    assert daemon.ok("--json", "list").json()  # the first one still answers


def test_failure_while_moving_nics_rolls_back(daemon: Daemon, sim_host: SimHostHandle) -> None:
    daemon.write_config('vimage_list="db"\nvimage_db_vnets="em1 fxp0"\nvimage_db_bridges="em0"\n')
    daemon.start()
    sim_host.set_faults("move_fail=3")  # the bridged interface moves, then em1's move fails
    failed = daemon.ctl("--json", "start", "db")
    assert failed.code != 0
    assert daemon.vimages()["db"]["state"] == "failed"
    assert sim_host.jails() == []
    assert sim_host.vnet_of("em1") == sim_host.vnet_of("fxp0") == 0
    assert {n.type for n in sim_host.ng_nodes()} <= {"ether", "socket"}
    sim_host.set_faults("")
    daemon.ok("start", "db")  # nothing was left behind to get in the way
    assert daemon.vimages()["db"]["state"] == "running"


def test_sighup_rereads_the_configuration(daemon: Daemon) -> None:
    daemon.write_config(SEED)
    daemon.start()
    daemon.write_config(
        SEED.replace('"router web"', '"router web extra"') + 'vimage_extra_bridges="em0"\n'
    )
    daemon.kill_signal(signal.SIGHUP)
    daemon.wait_until(lambda: "extra" in daemon.vimages(), what="extra after SIGHUP")
    daemon.write_config('vimage_list="$(hostname)"\n')  # broken: the old one stays
    daemon.kill_signal(signal.SIGHUP)
    daemon.wait_until(
        lambda: any(e.get("event") == "config.reload_failed" for e in daemon.events()),
        what="reload failure logged",
    )
    assert "extra" in daemon.vimages()
    assert daemon.ctl("reload").code == EX_CONFIG


def test_a_sighup_as_soon_as_the_socket_exists_is_a_reload(daemon: Daemon) -> None:
    """SIGHUP is caught before the socket exists: the default action (exit) used to win when
    it came between the socket's creation and the handler's."""
    daemon.write_config(SEED)
    for _ in range(5):
        log = daemon.log_path.open("ab")
        daemon.proc = subprocess.Popen(daemon.command(), stdout=log, stderr=log)
        log.close()
        while not os.path.exists(daemon.socket_path):  # sooner than the harness's start()
            assert daemon.proc.poll() is None, daemon.log()
            time.sleep(0.0002)
        daemon.kill_signal(signal.SIGHUP)
        daemon.wait_until(lambda: daemon.ctl("version").code == 0, what="daemon answering")
        assert daemon.proc.poll() is None, daemon.log()
        daemon.kill(signal.SIGTERM)


def test_unknown_names_and_refused_operations(daemon: Daemon) -> None:
    daemon.write_config(SEED)
    daemon.start()
    assert daemon.ctl("status", "nosuch").code == 68
    assert daemon.ctl("start", "nosuch").code == 68
    assert (
        daemon.ctl("start", "not-a-name").code == 76 or daemon.ctl("start", "not-a-name").code == 64
    )


def test_circuit_breaker_leaves_the_vimage_failed(daemon: Daemon, sim_host: SimHostHandle) -> None:
    daemon.write_config(
        'vimage_list="web"\nvimage_web_bridges="em0"\nvimage_web_restart="always"\n'
        'vimage_web_health_interval="0.1"\nvimage_web_restart_limit="2"\n'
        'vimage_web_restart_window="60"\n'
    )
    daemon.start()
    daemon.ok("start", "web")
    sim_host.kill_jail("web")
    daemon.wait_until(
        lambda: (
            daemon.vimages()["web"]["restarts"] == 1
            and daemon.vimages()["web"]["state"] == "running"
        ),
        what="first restart",
    )
    sim_host.kill_jail("web")
    daemon.wait_until(
        lambda: daemon.vimages()["web"]["state"] == "failed",
        what="circuit breaker open",
    )
    web = daemon.vimages()["web"]
    assert web["restarts"] == 1
    assert "circuit" in (web["error"] or "")
    assert sim_host.jails() == [] or all(j.dying for j in sim_host.jails())
    daemon.ok("start", "web")  # an operator acts
    assert daemon.vimages()["web"]["state"] == "running"


def test_events_stream_lifecycle_as_json_lines(daemon: Daemon) -> None:
    daemon.write_config(SEED)
    daemon.start()
    lines: queue.Queue[str] = queue.Queue()
    watcher = subprocess.Popen(
        [sys.executable, "-m", "vimagectl", "-s", daemon.socket_path, "--json", "events"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        stdout = watcher.stdout
        assert stdout is not None

        def pump() -> None:
            for line in stdout:
                lines.put(line)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        seen: list[dict[str, object]] = []
        # The subscription may land during a start: cycle until one start is seen whole.
        for _ in range(20):
            seen.clear()
            daemon.ok("start", "web")
            with contextlib.suppress(queue.Empty):
                while not any(e["event"] == "vimage.started" for e in seen):
                    seen.append(json.loads(lines.get(timeout=1.0)))
            if any(e["event"] == "vimage.starting" for e in seen):
                break
            daemon.ok("stop", "web")
            with contextlib.suppress(queue.Empty):
                while True:  # drain the stop's events
                    lines.get(timeout=0.3)
    finally:
        watcher.kill()
        watcher.wait()
        if watcher.stdout is not None:
            reader.join(timeout=10)  # EOF once the process is gone
            watcher.stdout.close()
    events = [(e["event"], e["name"]) for e in seen]
    assert ("vimage.starting", "web") in events
    assert events[-1] == ("vimage.started", "web")


def test_jng_mac_scheme_matches_jng(daemon: Daemon, sim_host: SimHostHandle) -> None:
    daemon.write_config(
        'vimage_mac_scheme="jng"\nvimage_list="xxx"\nvimage_xxx_bridges="em0 em0"\n'
    )
    daemon.start()
    daemon.ok("start", "xxx")
    parent = next(i.mac for i in sim_host.ifnets(0) if i.name == "em0")
    assert parent is not None
    got = {i["name"]: i["mac"] for i in daemon.vimages()["xxx"]["interfaces"]}
    assert got == {"ng0_xxx": jng_mac("xxx", parent, 0), "ng1_xxx": jng_mac("xxx", parent, 1)}
    # lineage.md §5.2: sum("xxx") = 0x00d2, so the middle octets are 00:d2, counter 0 then 1
    assert got["ng0_xxx"][3:] == got["ng1_xxx"][3:] == f"00:d2:{parent[9:]}"
    assert (got["ng0_xxx"][0], got["ng1_xxx"][0]) == ("0", "1")


def test_autostart_at_boot_and_operator_intent_after_a_restart(
    daemon: Daemon, sim_host: SimHostHandle
) -> None:
    daemon.write_config(SEED.replace('vimage_enable="NO"', 'vimage_enable="YES"'))
    daemon.start()  # the first daemon since boot starts vimage_list, once it serves
    daemon.wait_until(
        lambda: {v["state"] for v in daemon.vimages().values()} == {"running"},
        what="autostart done",
    )
    daemon.ok("stop", "web")
    daemon.kill(signal.SIGTERM)  # an upgrade: router keeps running
    daemon.start()
    vimages = daemon.vimages()
    assert (vimages["router"]["state"], vimages["web"]["state"]) == ("running", "stopped")
    assert [j.name for j in sim_host.jails()] == ["router"]


def test_a_removed_vimage_stays_visible_while_its_nic_is_pending(
    daemon: Daemon, sim_host: SimHostHandle
) -> None:
    daemon.write_config('vimage_list="db web"\nvimage_db_vnets="em1"\nvimage_web_bridges="em0"\n')
    daemon.start()
    daemon.ok("start", "db")
    sim_host.set_faults("dying=2, reclaim_fail=1000")
    daemon.ok("stop", "db")
    daemon.write_config('vimage_list="web"\nvimage_web_bridges="em0"\n')
    daemon.ok("reload")
    db = daemon.vimages()["db"]  # removed from the config, but em1 is not home yet
    assert db["config_changed"] is True
    assert [(i["name"], i["where"]) for i in db["interfaces"]] == [("em1", "pending-return")]
    daemon.wait_until(lambda: "db" not in daemon.vimages(), timeout=30, what="db gone")
    assert sim_host.vnet_of("em1") == 0


def test_a_nic_pending_return_stays_visible_across_a_daemon_restart(
    daemon: Daemon, sim_host: SimHostHandle
) -> None:
    """The daemon dies while db's NIC is stuck in a dying jail, and comes back with a
    configuration that no longer has db: the NIC is still listed until it is home."""
    daemon.write_config('vimage_list="db web"\nvimage_db_vnets="em1"\nvimage_web_bridges="em0"\n')
    daemon.start()
    daemon.ok("start", "db")
    sim_host.set_faults("dying=6, reclaim_fail=1000")
    daemon.ok("stop", "db")
    daemon.kill(signal.SIGKILL)
    daemon.write_config('vimage_list="web"\nvimage_web_bridges="em0"\n')
    daemon.start()
    db = daemon.vimages()["db"]
    assert (db["state"], db["config_changed"]) == ("stopped", True)
    [em1] = db["interfaces"]
    assert (em1["name"], em1["where"]) == ("em1", "pending-return")
    assert daemon.ctl("start", "db").code == 68  # EX_NOHOST: not configured any more
    daemon.wait_until(lambda: "db" not in daemon.vimages(), timeout=30, what="db gone")
    assert sim_host.vnet_of("em1") == 0


def test_health_sees_a_bridged_interface_cut_from_its_bridge(
    daemon: Daemon, sim_host: SimHostHandle
) -> None:
    daemon.write_config(
        'vimage_list="web"\nvimage_web_bridges="em0"\nvimage_web_health_interval="0.2"\n'
    )
    daemon.start()
    daemon.ok("start", "web")
    daemon.wait_until(lambda: daemon.vimages()["web"]["health"] == "ok", what="health ok")

    async def cut() -> None:  # what an admin's stray `ngctl rmhook` would do
        async with (
            open_sim_transport(sim_host.socket_path) as transport,
            open_ng_socket(transport) as sock,
        ):
            await sock.rmhook(eiface_name("ng0_web") + ":", "ether")

    trio.run(cut)
    daemon.wait_until(
        lambda: daemon.vimages()["web"]["health"] == "degraded", what="health degraded"
    )
    assert daemon.ctl("health", "web").code == 1  # Nagios WARNING
    # getstats of the cut link answers ENOTCONN: netgraph's word, not a lost sim host
    assert '"platform.connection_lost"' not in daemon.log()


def test_reconciliation_removes_an_eiface_a_killed_daemon_left_unnamed(
    daemon: Daemon, sim_host: SimHostHandle
) -> None:
    daemon.write_config('vimage_list="web"\nvimage_web_bridges="em0"\n')
    daemon.start()
    daemon.ok("start", "web")

    async def half_create() -> None:  # a kill between mkpeer and name_node leaves this
        async with (
            open_sim_transport(sim_host.socket_path) as transport,
            open_ng_socket(transport) as sock,
        ):
            await sock.mkpeer(bridge_name("em0") + ":", "eiface", "link7", "ether")

    trio.run(half_create)
    daemon.kill(signal.SIGKILL)
    daemon.start()
    eifaces = [n.name for n in sim_host.ng_nodes() if n.type == "eiface"]
    assert eifaces == [eiface_name("ng0_web")]  # the stray is gone, web's own is adopted
    assert "reconcile.stray_removed" in daemon.log()
    assert daemon.vimages()["web"]["state"] == "running"
    daemon.ok("stop", "web")
    assert not [n for n in sim_host.ng_nodes() if n.type == "bridge"]  # nothing holds it


def test_stop_all_after_a_reload_removed_a_running_vimage(
    daemon: Daemon, sim_host: SimHostHandle
) -> None:
    daemon.write_config(SEED)
    daemon.start()
    daemon.ok("start", "--all")
    daemon.write_config('vimage_list="web"\nvimage_web_bridges="em0 em0"\n')
    assert daemon.ok("--json", "reload").json()["removed"] == ["router"]
    assert daemon.vimages()["router"]["state"] == "running"  # kept until stopped
    daemon.ok("stop", "--all")
    assert "router" not in daemon.vimages()
    assert sim_host.jails() == []
    for nic in ("em1", "fxp0", "igb0"):
        assert sim_host.vnet_of(nic) == 0


def test_a_start_past_its_exec_timeout_fails_and_rolls_back(
    daemon: Daemon, sim_host: SimHostHandle
) -> None:
    daemon.write_config(SEED + 'vimage_router_exec_timeout="1"\n')
    daemon.start()
    sim_host.script_exec("router", "/etc/rc", duration=300.0)  # an rc that never finishes
    started = time.monotonic()
    failed = daemon.ctl("start", "router")
    assert failed.code == 70, failed  # EX_SOFTWARE: the start failed
    assert time.monotonic() - started < 30
    assert "still running after 1 s (vimage_router_exec_timeout)" in failed.stderr
    router = daemon.vimages()["router"]
    assert router["state"] in ("stopped", "failed")
    assert "vimage_router_exec_timeout" in (router["error"] or "")
    for nic in ("em1", "fxp0", "igb0"):
        daemon.wait_until(lambda nic=nic: sim_host.vnet_of(nic) == 0, what=f"{nic} home")
    assert all(jail.dying for jail in sim_host.jails())


def test_stop_interrupts_a_hanging_start(daemon: Daemon, sim_host: SimHostHandle) -> None:
    daemon.write_config(SEED)
    daemon.start()
    sim_host.script_exec("router", "/etc/rc", duration=300.0)  # an rc that never finishes
    starting = subprocess.Popen(
        [sys.executable, "-m", "vimagectl", "-s", daemon.socket_path, "start", "router"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        daemon.wait_until(
            lambda: any(e.outcome == "running" for e in sim_host.exec_log()),
            what="exec_start running",
        )
        daemon.ok("stop", "router")
        assert starting.wait(timeout=30) != 0  # the start reports it was interrupted
    finally:
        starting.kill()
        starting.wait()
    assert daemon.vimages()["router"]["state"] == "stopped"
    assert sim_host.jails() == [] or all(j.dying for j in sim_host.jails())
    for nic in ("em1", "fxp0", "igb0"):
        daemon.wait_until(lambda nic=nic: sim_host.vnet_of(nic) == 0, what=f"{nic} home")


def test_list_shows_a_health_verdict_as_soon_as_a_start_returns(
    daemon: Daemon, sim_host: SimHostHandle
) -> None:
    # An hour between polls: only the check at the end of the start can give the verdict.
    daemon.write_config(
        'vimage_list="web router"\nvimage_web_bridges="em0"\nvimage_router_vnets="em1"\n'
        'vimage_web_health_interval="3600"\nvimage_router_health_interval="3600"\n'
    )
    daemon.start()
    daemon.ok("start", "web", "router")
    vimages = daemon.vimages()
    assert (vimages["web"]["health"], vimages["router"]["health"]) == ("ok", "ok")
    assert daemon.ctl("health", "web").code == 0


def test_a_down_parent_makes_health_degraded_with_that_reason(
    daemon: Daemon, sim_host: SimHostHandle
) -> None:
    daemon.write_config(
        'vimage_list="web"\nvimage_web_bridges="em0"\nvimage_web_health_interval="0.2"\n'
    )
    daemon.start()
    daemon.ok("start", "web")
    assert daemon.vimages()["web"]["health"] == "ok"
    sim_host.call(rpc.SetIfnetUp(name="em0", up=False))  # `ifconfig em0 down` by an admin
    daemon.wait_until(
        lambda: daemon.vimages()["web"]["health"] == "degraded", what="health degraded"
    )
    assert daemon.vimages()["web"]["health_reason"] == "parent em0 is down"
    assert daemon.ctl("health", "web").code == 1  # Nagios WARNING
    assert "parent em0 is down" in daemon.ok("status", "web").stdout


def test_a_nic_renamed_inside_comes_home_under_its_own_name(
    daemon: Daemon, sim_host: SimHostHandle
) -> None:
    # if_vmove_reclaim looks the name up in the jail's vnet (ifunit: ENXIO for "em1") and
    # neither it nor vnet_if_return renames (sys/net/if.c): the daemon must find it by MAC.
    daemon.write_config(SEED)
    daemon.start()
    daemon.ok("start", "router")
    jid = daemon.vimages()["router"]["jid"]
    mac = next(i.mac for i in sim_host.ifnets(jid) if i.name == "em1")
    sim_host.call(rpc.RenameIfnet(name="em1", newname="lan0", jid=jid))  # jexec router ifconfig
    daemon.ok("stop", "router")
    home = {i.name: i.mac for i in sim_host.ifnets(0)}
    assert home.get("em1") == mac
    assert "lan0" not in home
    assert sim_host.jails() == []
    assert daemon.vimages()["router"]["interfaces"][0]["where"] == "host"
    assert '"ifnet.renamed_back"' in daemon.log()


def test_a_nic_renamed_inside_a_jail_that_vanished_is_renamed_back_home(
    daemon: Daemon, sim_host: SimHostHandle
) -> None:
    daemon.write_config(SEED + 'vimage_router_health_interval="0.2"\n')
    daemon.start()
    daemon.ok("start", "router")
    jid = daemon.vimages()["router"]["jid"]
    sim_host.call(rpc.RenameIfnet(name="fxp0", newname="wan0", jid=jid))
    daemon.wait_until(
        lambda: daemon.vimages()["router"]["health_reason"] == "fxp0 renamed to wan0 inside",
        what="health names the rename",
    )
    sim_host.kill_jail("router")  # vnet_if_return: wan0 comes home as wan0
    daemon.wait_until(lambda: sim_host.vnet_of("fxp0") == 0, what="fxp0 home")
    assert sim_host.vnet_of("wan0") is None
    daemon.wait_until(lambda: daemon.vimages()["router"]["state"] == "failed", what="router failed")


def test_status_shows_each_bridged_links_counters(daemon: Daemon, sim_host: SimHostHandle) -> None:
    daemon.write_config(SEED)
    daemon.start()
    daemon.ok("start", "web", "router")
    [web, router] = daemon.ok("--json", "status", "web", "router").json()
    links = {i["name"]: i["link"] for i in web["interfaces"]}
    assert set(links) == {"ng0_web", "ng1_web"}
    for link in links.values():
        assert set(link) == {
            "recv_packets", "xmit_packets", "memory_failures", "loop_drops", "loop_detects"
        }  # fmt: skip
        assert link["memory_failures"] == link["loop_detects"] == 0
    assert [i["link"] for i in router["interfaces"]] == [None, None, None]  # moved NICs
    assert {i["bridge_mode"] for i in web["interfaces"]} == {"classic"}  # the default
    assert daemon.ok("status", "web").stdout.count("    classic bridge link: recv ") == 2
    daemon.ok("stop", "web")
    assert [i["link"] for i in daemon.vimages()["web"]["interfaces"]] == [None, None]


def test_failed_learning_on_a_link_makes_health_degraded(
    daemon: Daemon, sim_host: SimHostHandle
) -> None:
    # issue 15: ng_bridge_rcvdata counts a failed NGM_BRIDGE_MOVE_HOST in memoryFailures
    daemon.write_config(
        'vimage_list="a b"\nvimage_a_bridges="em0"\nvimage_b_bridges="em0"\n'
        'vimage_a_health_interval="0.2"\nvimage_b_health_interval="0.2"\n'
    )
    daemon.start()
    daemon.ok("start", "a", "b")
    a = daemon.vimages()["a"]
    mac = a["interfaces"][0]["mac"]
    sim_host.set_faults("learn_fail=1")
    broadcast = "ff" * 6 + mac.replace(":", "") + "0806" + "00" * 46  # an ARP request
    sim_host.call(rpc.SendFrame(name="ng0_a", frame=broadcast, jid=a["jid"]))
    reason = "ng0_a: bridge failed to learn 1 times (memoryFailures)"
    daemon.wait_until(lambda: reason in daemon.log(), what="health names the failed learning")
    [link] = [i["link"] for i in daemon.vimages()["a"]["interfaces"]]
    assert link["memory_failures"] == 1
    assert link["recv_packets"] >= 1
    assert daemon.vimages()["b"]["health"] == "ok"


def _start_own_sim_host(path: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "vimaged.simhost", "--socket", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
            probe.connect(str(path))
            return process
        time.sleep(0.02)
    process.kill()
    raise AssertionError(f"sim host did not come up: {log.read_text()}")


async def _leave_a_stray(socket_path: str, state_dir: str) -> None:
    """``ng0_db`` bridged to em0, as a vimaged on that host would have made it."""
    platform = SimPlatform(SimOptions(sim_host=socket_path, state_dir=state_dir))
    try:
        await platform.create_bridged_ifnet("em0", "ng0_db", "02:00:00:00:00:db")
    finally:
        await platform.aclose()


def test_a_killed_sim_host_is_a_platform_error_and_is_reconnected(tmp_path: Path) -> None:
    host_socket = tmp_path / "own-sim.sock"
    host = _start_own_sim_host(host_socket, tmp_path / "simhost.log")
    d = Daemon(sim_socket=str(host_socket), workdir=tmp_path)
    try:
        d.write_config(
            'vimage_list="web"\nvimage_web_bridges="em0"\nvimage_web_restart="on-failure"\n'
            'vimage_web_health_interval="0.2"\n'
        )
        d.start()
        d.ok("start", "web")
        d.wait_until(lambda: d.vimages()["web"]["health"] == "ok", what="web ok")
        host.kill()  # SIGKILL: the host and every jail on it are gone, as on a reboot
        host.wait()
        d.wait_until(lambda: d.vimages()["web"]["health"] == "unknown", what="web unknown")
        time.sleep(0.5)  # several polls against the dead host
        assert d.proc is not None
        assert d.proc.poll() is None, d.log()
        assert d.vimages()["web"]["state"] == "running"  # nothing acted on a guess
        # The new host has a stray with vimaged's naming that no journal row owns: the
        # daemon reconciles with it after the reconnect, not only re-checks health.
        new_socket = tmp_path / "new-sim.sock"
        host = _start_own_sim_host(new_socket, tmp_path / "simhost.log")
        trio.run(_leave_a_stray, str(new_socket), str(tmp_path / "stray-state"))
        # the daemon finds the new host only now: its netgraph socket first, then its RPC one
        os.rename(f"{new_socket}{wire.NG_SOCKET_SUFFIX}", f"{host_socket}{wire.NG_SOCKET_SUFFIX}")
        os.rename(new_socket, host_socket)
        d.wait_until(
            lambda: (
                d.vimages()["web"]["state"] == "running"
                and d.vimages()["web"]["restarts"] == 1
                and d.vimages()["web"]["health"] == "ok"
            ),
            what="web restarted on the new host",
        )
        events = [e["event"] for e in d.events()]
        assert "platform.connection_lost" in events
        assert "platform.reconnected" in events
        levels = {e["event"]: e["level"] for e in d.events()}
        assert levels["platform.connection_lost"] == "warning"
        assert levels["health.unknown"] == "warning"
        assert levels["health.failed"] == "error"  # the jail went with the old host
        client = SimHostHandle(str(host_socket))
        try:
            [jail] = client.jails()
            assert jail.name == "web"
            assert d.vimages()["web"]["jid"] == jail.jid
            assert {i.name for i in client.ifnets(jail.jid)} >= {"ng0_web"}
            d.wait_until(
                lambda: "ng0_db" not in {i.name for i in client.ifnets()}, what="stray removed"
            )
        finally:
            client.close()
        assert "platform.reconciled" in events
        assert "reconcile.orphan_removed" in d.log()
    finally:
        d.stop()
        host.kill()
        host.wait()
