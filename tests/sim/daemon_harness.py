"""Runs the real vimaged process against the sim host and drives it with the real vimagectl."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from vimaged.protocol import AnyReply
from vimaged.simhost import rpc

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from tests.sim.conftest import SimHostHandle
    from vimagectl.client import Client
    from vimaged.protocol import Reply, Request

READY_TIMEOUT = 20.0


def exchange(client: Client, request: Request) -> Reply:
    """``request`` through vimagectl's own client, its reply as protocol.py's type.

    The client checks the reply against the JSON Schema and hands back a dict; converting that
    dict with msgspec doubles as a check that vimagectl and the wire types agree.
    """
    reply = client.request(json.loads(msgspec.json.encode(request)))  # as JSON has it: lists
    typed: Reply = msgspec.convert(reply, AnyReply)
    return typed


@dataclass
class CtlResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Daemon:
    """One vimaged process at a time, on the sim host at ``sim_socket``."""

    sim_socket: str
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    extra_args: list[str] = field(default_factory=list)
    log_level: str = "debug"

    @property
    def socket_path(self) -> str:
        return str(self.workdir / "vimaged.sock")

    @property
    def config_path(self) -> Path:
        return self.workdir / "rc.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "vimaged.log"

    def write_config(self, text: str) -> None:
        self.config_path.write_text(text)

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "vimaged",
            "--platform",
            "sim",
            "--sim-host",
            self.sim_socket,
            "--config",
            str(self.config_path),
            "--socket",
            self.socket_path,
            "--state-dir",
            str(self.workdir / "state"),
            "--log-format",
            "json",
            "--log-level",
            self.log_level,
            *self.extra_args,
        ]

    def run_to_exit(self, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run vimaged expecting it to exit by itself (a refused configuration)."""
        return subprocess.run(
            self.command(), capture_output=True, text=True, timeout=timeout, check=False
        )

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "daemon already running"
        self.starts += 1
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.command(), stderr=log, stdout=log)
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"vimaged exited with {self.proc.returncode}:\n{self.log_path.read_text()}"
                )
            if self._connectable():
                return
            time.sleep(0.05)
        raise AssertionError(f"vimaged did not come up:\n{self.log_path.read_text()}")

    def _connectable(self) -> bool:
        if not os.path.exists(self.socket_path):
            return False
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(self.socket_path)
            except OSError:
                return False
        return True

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def kill_signal(self, sig: int) -> None:
        """Send ``sig`` and leave the daemon running (SIGHUP)."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill(signal.SIGTERM)

    def ctl(self, *args: str, timeout: float = 60.0) -> CtlResult:
        proc = subprocess.run(
            [sys.executable, "-m", "vimagectl", "-s", self.socket_path, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return CtlResult(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str) -> CtlResult:
        result = self.ctl(*args)
        assert result.code == 0, f"vimagectl {' '.join(args)} -> {result}\n{self.log()}"
        return result

    def vimages(self) -> dict[str, dict[str, Any]]:
        return {v["name"]: v for v in self.ok("--json", "list").json()}

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def events(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
        return lines

    def wait_until(self, predicate: Any, timeout: float = 20.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}\n{self.log()}")


@contextmanager
def daemon_on(
    sim_host: SimHostHandle,
    tmp_path: Path,
    *,
    nics: Sequence[str] = ("em0", "em1"),
    up: bool = False,
    config: str | None = None,
    **options: Any,
) -> Iterator[Daemon]:
    """A :class:`Daemon` on a freshly reset sim host with ``nics`` (raised when ``up``, as
    ``ifconfig_<nic>="up"`` in rc.conf leaves them), started on ``config`` if one is given;
    stopped afterwards. The sim tests' ``daemon`` fixtures are this with their settings."""
    sim_host.reset(nics=list(nics))
    for nic in nics if up else ():
        sim_host.call(rpc.SetIfnetUp(name=nic))
    d = Daemon(sim_socket=sim_host.socket_path, workdir=tmp_path, **options)
    if config is not None:
        d.write_config(config)
        d.start()
    try:
        yield d
    finally:
        d.stop()
