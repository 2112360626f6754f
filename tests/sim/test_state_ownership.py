"""Ownership end to end: a reboot's reused jids, one daemon per state dir and socket, autostart
once per boot, journal problems as one line (issue 10 items 2, 3, 11; issue 13 items 1, 4)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
from typing import TYPE_CHECKING

import pytest

from tests.sim.daemon_harness import Daemon, daemon_on
from vimaged.simhost import rpc

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.sim.conftest import SimHostHandle

pytestmark = pytest.mark.sim

EX_CONFIG = 78
EX_CANTCREAT = 73
EX_IOERR = 74
EX_UNAVAILABLE = 69

CONFIG = 'vimage_enable="{enable}"\nvimage_list="db"\nvimage_db_vnets="em1"\n'


@pytest.fixture
def daemon(sim_host: SimHostHandle, tmp_path: Path) -> Iterator[Daemon]:
    with daemon_on(sim_host, tmp_path) as d:
        yield d


def reboot(sim_host: SimHostHandle) -> None:
    """The host reboots: jails and vnets are gone, jids start again at 1, a new boot id."""
    sim_host.reset(nics=["em0", "em1"])


def test_after_a_reboot_a_reused_jid_is_left_alone(daemon: Daemon, sim_host: SimHostHandle) -> None:
    daemon.write_config(CONFIG.format(enable="NO"))
    daemon.start()
    daemon.ok("start", "db")
    old_jid = daemon.vimages()["db"]["jid"]
    daemon.kill(signal.SIGKILL)
    reboot(sim_host)
    # Started at boot before vimaged, it gets db's old jid and em1.
    other = sim_host.create_jail("other")
    assert other == old_jid
    sim_host.call(rpc.MoveIfnet(name="em1", jid=other))
    daemon.start()
    assert [(j.jid, j.name, j.dying) for j in sim_host.jails()] == [(other, "other", False)]
    assert sim_host.vnet_of("em1") == other
    assert daemon.vimages()["db"]["state"] == "stopped"
    left = [e["object"] for e in daemon.events() if e.get("event") == "reconcile.left_alone"]
    assert set(left) == {"vnet em1", f"jail {other}"}


def test_a_jail_of_another_name_with_the_journaled_jid_is_left_alone(
    daemon: Daemon, sim_host: SimHostHandle
) -> None:
    """Same boot: db's jail went away under a killed daemon and its jid was taken by a jail
    created as ``jail -c name=1`` (kern_jail.c kern_jail_set: a numeric name is the jid)."""
    daemon.write_config(CONFIG.format(enable="NO"))
    daemon.start()
    daemon.ok("start", "db")
    jid = daemon.vimages()["db"]["jid"]
    daemon.kill(signal.SIGKILL)
    sim_host.kill_jail("db")  # em1 goes home with it
    assert sim_host.create_jail(str(jid)) == jid
    sim_host.call(rpc.MoveIfnet(name="em1", jid=jid))
    daemon.start()
    assert [(j.jid, j.name, j.dying) for j in sim_host.jails()] == [(jid, str(jid), False)]
    assert sim_host.vnet_of("em1") == jid
    left = [e["object"] for e in daemon.events() if e.get("event") == "reconcile.left_alone"]
    assert sorted(set(left)) == [f"jail {jid}", "vnet em1"]


def test_autostart_runs_once_per_boot_without_a_marker(
    daemon: Daemon, sim_host: SimHostHandle
) -> None:
    daemon.write_config(CONFIG.format(enable="YES"))
    daemon.start()
    assert daemon.vimages()["db"]["state"] == "running"
    daemon.ok("stop", "db")
    daemon.kill(signal.SIGTERM)
    daemon.start()  # same boot: the operator's stop holds
    assert daemon.vimages()["db"]["state"] == "stopped"
    assert not (daemon.workdir / "vimaged.autostarted").exists()
    daemon.kill(signal.SIGTERM)
    reboot(sim_host)
    daemon.start()  # a new boot: vimage_enable starts db again
    assert daemon.vimages()["db"]["state"] == "running"
    reasons = [e["event"] for e in daemon.events() if e.get("event", "").startswith("autostart.")]
    assert reasons == ["autostart.running", "autostart.skipped", "autostart.running"]
    assert all(
        e["level"] == "warning" for e in daemon.events() if e.get("event") == "autostart.running"
    )


def test_a_second_daemon_on_the_same_state_dir_or_socket_refuses(
    daemon: Daemon, sim_host: SimHostHandle, tmp_path: Path
) -> None:
    daemon.write_config(CONFIG.format(enable="NO"))
    daemon.start()
    daemon.ok("start", "db")
    assert daemon.proc is not None
    pid = daemon.proc.pid
    other_dir = tmp_path / "second"
    other_dir.mkdir()
    for socket_path, state in (
        (str(other_dir / "other.sock"), str(tmp_path / "state")),  # same state dir
        (daemon.socket_path, str(other_dir / "state")),  # same socket
    ):
        second = Daemon(sim_socket=sim_host.socket_path, workdir=tmp_path)
        argv = second.command()
        argv[argv.index("--socket") + 1] = socket_path
        argv[argv.index("--state-dir") + 1] = state
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == EX_UNAVAILABLE, done.stderr
        assert f"pid {pid}" in done.stderr
        assert "Traceback" not in done.stderr
    assert not (other_dir / "state" / "vimaged.db").exists()  # refused before the journal
    assert daemon.vimages()["db"]["state"] == "running"
    assert [j.name for j in sim_host.jails()] == ["db"]


@pytest.mark.parametrize("damage", ["garbage", "newer", "renamed_column", "truncated"])
def test_a_journal_it_cannot_use_is_one_line_and_exit_78(
    daemon: Daemon, sim_host: SimHostHandle, damage: str
) -> None:
    daemon.write_config(CONFIG.format(enable="NO"))
    daemon.start()
    daemon.ok("start", "db")
    daemon.kill(signal.SIGTERM)
    db_path = daemon.workdir / "state" / "vimaged.db"
    if damage == "garbage":
        db_path.write_bytes(b"not a database at all " * 200)
        for suffix in ("-wal", "-shm"):
            (daemon.workdir / "state" / f"vimaged.db{suffix}").unlink(missing_ok=True)
    elif damage == "truncated":
        with sqlite3.connect(db_path) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = db_path.stat().st_size
        os.truncate(db_path, size // 2 + 7)
    else:
        with sqlite3.connect(db_path) as db:
            if damage == "newer":
                db.execute("PRAGMA user_version = 99")
            else:
                db.execute("ALTER TABLE vimage RENAME COLUMN desired TO wanted")
    done = daemon.run_to_exit()
    assert done.returncode == EX_CONFIG, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("vimaged:")]
    assert len(lines) == 1
    assert str(db_path) in lines[0]
    assert "Traceback" not in done.stderr
    if damage == "newer":
        assert "99" in lines[0]
    assert sim_host.vnet_of("em1") != 0  # nothing was touched: db is still running


def test_a_state_dir_prepared_by_another_user_is_refused(
    daemon: Daemon, sim_host: SimHostHandle
) -> None:
    state = daemon.workdir / "state"
    state.mkdir(mode=0o777)
    os.chmod(state, 0o777)
    os.chown(state, 65534, 65534)
    daemon.write_config(CONFIG.format(enable="NO"))
    done = daemon.run_to_exit()
    assert done.returncode == EX_CONFIG, done.stderr
    assert str(state) in done.stderr
    assert "uid 65534" in done.stderr
    assert not (state / "vimaged.db").exists()


def mount_tmpfs(path: Path, options: str) -> None:
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"{options},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")


@pytest.fixture
def tiny_state_dir(daemon: Daemon) -> Iterator[Path]:
    """The state dir on a 1 MiB tmpfs (root only)."""
    state = daemon.workdir / "state"
    state.mkdir(mode=0o700)
    mount_tmpfs(state, "size=1m")
    try:
        yield state
    finally:
        daemon.stop()
        subprocess.run(["umount", "-l", str(state)], check=False)


def test_a_read_only_state_dir_is_ex_cantcreat(daemon: Daemon, tiny_state_dir: Path) -> None:
    daemon.write_config(CONFIG.format(enable="NO"))
    daemon.start()
    daemon.kill(signal.SIGTERM)
    remount = subprocess.run(
        ["mount", "-o", "remount,ro", str(tiny_state_dir)], capture_output=True, check=False
    )
    assert remount.returncode == 0, remount.stderr
    done = daemon.run_to_exit()
    assert done.returncode == EX_CANTCREAT, done.stderr
    assert str(tiny_state_dir) in done.stderr
    assert "Traceback" not in done.stderr


def test_a_state_dir_too_small_for_the_journal_is_ex_ioerr(daemon: Daemon) -> None:
    state = daemon.workdir / "state"
    state.mkdir(mode=0o700)
    mount_tmpfs(state, "size=8k")
    try:
        daemon.write_config(CONFIG.format(enable="NO"))
        done = daemon.run_to_exit()
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)
    assert done.returncode == EX_IOERR, done.stderr
    assert "state dir full" in done.stderr
    assert "Traceback" not in done.stderr


def fill_up(directory: Path) -> Path:
    filler = directory / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_a_full_state_disk_still_brings_the_nic_home_and_says_so(
    daemon: Daemon, sim_host: SimHostHandle, tiny_state_dir: Path
) -> None:
    daemon.write_config(CONFIG.format(enable="NO"))
    daemon.start()
    daemon.ok("start", "db")
    filler = fill_up(tiny_state_dir)
    stopped = daemon.ctl("stop", "db")
    assert stopped.code != 0
    assert "state dir full" in stopped.stderr + stopped.stdout
    assert str(tiny_state_dir) in stopped.stderr + stopped.stdout
    assert sim_host.vnet_of("em1") == 0  # home all the same
    assert [j.name for j in sim_host.jails() if not j.dying] == []
    assert daemon.vimages()["db"]["state"] == "stopped"
    refused = daemon.ctl("start", "db")  # an intent it cannot write: nothing is done
    assert refused.code != 0
    assert sim_host.vnet_of("em1") == 0
    assert daemon.vimages()["db"]["state"] != "running"
    filler.unlink()
    daemon.ok("start", "db")  # this write also records the stop
    daemon.kill(signal.SIGKILL)
    daemon.start()
    db = daemon.vimages()["db"]
    assert db["state"] == "running"
    assert sim_host.vnet_of("em1") == db["jid"]
