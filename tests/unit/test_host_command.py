"""Host commands of the freebsd and linux platforms: environment, status, cancellation
(tests, unit tier; /bin/sh on this machine, nothing outside a temporary directory)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import trio

from vimaged.platforms.host_command import exit_status, run_host_command

pytestmark = pytest.mark.unit


async def test_the_command_sees_the_daemons_environment_and_the_added_one() -> None:
    with tempfile.TemporaryFile() as out:
        status = await run_host_command(
            'echo "$VIMAGE_NAME $VIMAGE_JID ${PATH:+path}"; exit 3',
            env={"VIMAGE_NAME": "web", "VIMAGE_JID": "7"},
            output=out.fileno(),
        )
        out.seek(0)
        assert (status, out.read()) == (3, b"web 7 path\n")


async def test_a_signal_reads_as_sh_reports_it() -> None:
    assert await run_host_command("kill -9 $$", env={}) == 128 + 9
    assert exit_status(-15) == 143


async def test_cancellation_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child"
    with trio.move_on_after(1):
        # a grandchild in the background, as a careless hook would leave behind
        await run_host_command(f"sleep 60 & echo $! > {pidfile}; wait", env={})
    child = int(pidfile.read_text())
    await trio.sleep(0.2)
    assert not alive(child)


def alive(pid: int) -> bool:
    """Running, or sleeping: not gone and not a zombie its new parent has yet to reap."""
    if not sys.platform.startswith("linux"):
        # FreeBSD mounts no /proc by default (procfs(5)): ask ps(1) for the state.
        done = subprocess.run(
            ["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True, check=False
        )
        return done.returncode == 0 and not done.stdout.strip().startswith("Z")
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status
