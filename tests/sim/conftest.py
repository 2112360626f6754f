"""Sim tier fixtures: one simulated FreeBSD host process per session, clean for every test.

``sim_host`` (function scope) returns a :class:`SimHostHandle` whose sync API is meant for every
engineer's sim tests:

- ``socket_path``: give it to ``platforms.load("sim", sim_host=..., state_dir=...)``;
- ``reset(nics=..., faults=..., kernel=...)``: a fresh host (done before each test);
- ``set_faults(spec)``: replace the fault spec at runtime (docs/sim.md);
- ``script_exec(jail, match, status=0, duration=0.0)``: commands in ``jail`` (``*``: any)
  containing ``match`` end with ``status`` after ``duration`` seconds;
- ``exec_log()``: every command run in a jail, with outcome (exited/killed/running);
- ``jails()``: all jails, dying ones included; ``create_jail(name)``; ``kill_jail(name)``:
  removed from outside as by ``jail -r``;
- ``vnet_of(ifname)``: 0 on the host, the jid holding it, None if absent;
  ``ifnets(jid=0)``: interfaces of one vnet;
- ``ng_nodes()``: netgraph nodes (id, name, type, hooks newest first, type state);
- ``host_uuid()`` / ``set_host_uuid(uuid)``;
- ``plug_nic(name, plugged=True)``: a NIC hot-plugged (or pulled out with ``plugged=False``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest

from vimaged.simhost import rpc
from vimaged.simhost.client import SimHostClient

if TYPE_CHECKING:
    from collections.abc import Iterator


class SimHostHandle:
    """Sync control of the session's sim host process."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._client = SimHostClient(socket_path)

    def close(self) -> None:
        self._client.close()

    def call(self, request: rpc.Request) -> rpc.Reply:
        return self._client.call(request)

    def reset(
        self, *, nics: list[str] | None = None, faults: str = "", kernel: int | None = None
    ) -> None:
        self._client.expect(rpc.Reset(nics=nics, faults=faults, kernel=kernel), rpc.Ok)

    def set_faults(self, spec: str) -> None:
        self._client.expect(rpc.SetFaults(spec=spec), rpc.Ok)

    def script_exec(
        self,
        jail: str,
        match: str = "",
        status: int = 0,
        duration: float = 0.0,
        output: str = "",
    ) -> None:
        request = rpc.ScriptExec(
            jail=jail, match=match, status=status, duration=duration, output=output
        )
        self._client.expect(request, rpc.Ok)

    def exec_log(self) -> list[rpc.ExecEntry]:
        return self._client.expect(rpc.GetExecLog(), rpc.ExecLog).entries

    def jails(self) -> list[rpc.JailRecord]:
        return self._client.expect(rpc.ListJails(), rpc.Jails).jails

    def create_jail(self, name: str, *, vnet: bool = True) -> int:
        return self._client.expect(rpc.CreateJail(name=name, vnet=vnet), rpc.Jid).jid

    def kill_jail(self, name: str) -> int:
        return self._client.expect(rpc.KillJail(name=name), rpc.Jid).jid

    def vnet_of(self, ifname: str) -> int | None:
        return self._client.expect(rpc.LocateIfnet(name=ifname), rpc.Location).jid

    def ifnets(self, jid: int = 0) -> list[rpc.IfnetRecord]:
        return self._client.expect(rpc.ListIfnets(jid=jid), rpc.Ifnets).ifnets

    def routes(self, jid: int = 0) -> list[rpc.RouteRecord]:
        return self._client.expect(rpc.ListRoutes(jid=jid), rpc.Routes).routes

    def del_route(self, dst: str, gateway: str | None = None, jid: int = 0) -> None:
        """``route delete DST [GW]`` in ``jid`` (the jail's own root, say)."""
        self._client.expect(rpc.DelRoute(dst=dst, gateway=gateway, jid=jid), rpc.Ok)

    def ng_nodes(self) -> list[rpc.NgNodeRecord]:
        return self._client.expect(rpc.ListNgNodes(), rpc.NgNodes).nodes

    def host_uuid(self) -> str:
        return self._client.expect(rpc.GetHostUuid(), rpc.HostUuid).uuid

    def set_host_uuid(self, value: str) -> None:
        self._client.expect(rpc.SetHostUuid(uuid=value), rpc.Ok)

    def plug_nic(self, name: str, *, plugged: bool = True) -> None:
        """NIC ``name`` attaches on the host (if_attach), or goes (if_detach) if not
        ``plugged``; both send devctl's IFNET notices (simhost/ifnet_log.py)."""
        self._client.expect(rpc.PlugNic(name=name, plugged=plugged), rpc.Ok)


def _wait_until_serving(path: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sim host exited with {process.returncode}")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            time.sleep(0.02)
        else:
            return
        finally:
            probe.close()
    raise RuntimeError(f"sim host did not listen on {path} within {timeout}s")


@pytest.fixture(scope="session")
def sim_host_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's sim host process; yields its socket path."""
    directory = tmp_path_factory.mktemp("simhost")
    path = str(directory / "sim.sock")
    with (directory / "simhost.log").open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "vimaged.simhost", "--socket", path],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
    try:
        _wait_until_serving(path, process, timeout=20.0)
        yield path
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def sim_host(sim_host_process: str) -> Iterator[SimHostHandle]:
    """A clean simulated host: default NICs (em0 em1), kernel 14, no faults, no scripts."""
    handle = SimHostHandle(sim_host_process)
    try:
        handle.reset()
        yield handle
    finally:
        handle.close()
