"""Commands run on the host itself, for the freebsd and linux platforms (platform layer).

``vimage_NAME_exec_prestart`` and its kin run as jail(8)'s ``exec.prestart`` family does: in
the system environment, outside any jail, with ``/bin/sh -c``. The sim platform runs no real
command: its simulated host records them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import Mapping


async def run_host_command(
    command: str, *, env: Mapping[str, str], output: int | None = None
) -> int:
    """``/bin/sh -c command`` with the daemon's environment plus ``env``: its exit status
    (128 + N when signal N ended it). On cancellation its whole process group is killed."""
    done = await trio.run_process(
        ["/bin/sh", "-c", command],
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=output,
        env={**os.environ, **env},
        start_new_session=True,
        deliver_cancel=kill_process_group,
        check=False,
    )
    return exit_status(done.returncode)


def exit_status(returncode: int) -> int:
    """A subprocess's returncode as sh(1) reports it: 128 + N for signal N."""
    return returncode if returncode >= 0 else 128 - returncode


async def kill_process_group(process: trio.Process) -> None:
    """trio's ``deliver_cancel``: SIGKILL to the command and everything it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
