"""IPAM by delegation, as the reference plugins do (pkg/invoke's DelegateAdd and friends).

The plugin named by ``ipam.type`` is looked up in the caller's CNI_PATH and run with the
caller's environment (CNI_COMMAND set per call) and the raw configuration on stdin. A 1.1.0
configuration is retried as 1.0.0 when the IPAM plugin answers "incompatible version": the 1.1
result format is the 1.0 one, and Debian's host-local (1.1.x) knows only 1.0.

The daemon runs it for the plugin (``cni_exec``), so it runs *as the caller*: the connection's
peer uid, gid and supplementary groups, unless the peer is root (or the daemon's own user,
which can do nothing more through us). Run as root, it would let a member of vimaged_group
run any program of its choosing as root. Its cwd is ``/``, its output capped, its run timed.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
from typing import TYPE_CHECKING, Any

import trio

from vimaged.cni.spec import (
    INCOMPATIBLE_VERSION,
    INVALID_CONFIG,
    IO_FAILURE,
    TRY_AGAIN_LATER,
    CniError,
    loads,
)

if TYPE_CHECKING:
    from vimaged.peercred import Peer

TIMEOUT = 30.0
"""Seconds one IPAM call may take; an ADD is two at worst (ADD, then DEL to undo), well inside
the 120 s the client waits for the daemon."""
MAX_STDOUT = 1 << 20
"""Bytes of an IPAM plugin's result; more is an error (a result is a few hundred bytes)."""
MAX_STDERR = 1 << 16
"""Bytes of its stderr kept (the end of it, for the error's details); the rest is drained."""
CHUNK = 1 << 16


class Caller:
    """Who runs the IPAM plugin, with which environment and search path (the caller's)."""

    def __init__(self, peer: Peer, environ: dict[str, str], path: list[str]) -> None:
        self.peer = peer
        self.environ = environ
        self.path = path

    def credentials(self) -> dict[str, Any]:
        """``subprocess`` arguments that run a child as the peer; none for root (or for the
        daemon's own user), so the fast vfork path of :mod:`subprocess` stays."""
        peer = self.peer
        if peer.uid == 0 or peer.uid == os.geteuid():
            return {}
        # The egid first: FreeBSD before 15 takes setgroups(2)'s first element as the egid
        # (cr_groups[0]), which the setgid after it overwrites; Linux ignores the repeat.
        groups = [peer.gid, *sorted(peer.groups - {peer.gid})]
        return {"user": peer.uid, "group": peer.gid, "extra_groups": groups}

    def find(self, kind: str) -> str:
        """The first executable regular file ``kind`` in CNI_PATH (code 7 if none)."""
        if "/" in kind or kind in ("", ".", ".."):
            raise CniError(INVALID_CONFIG, f"ipam.type {kind!r} is no plugin name")
        for directory in self.path:
            candidate = os.path.join(directory, kind)
            try:
                st = os.stat(candidate)
            except (OSError, ValueError):  # ValueError: a NUL in CNI_PATH
                continue
            if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
                return candidate
        raise CniError(
            INVALID_CONFIG, f"IPAM plugin {kind} not found in CNI_PATH", ":".join(self.path)
        )


async def run(caller: Caller, kind: str, stdin: bytes, command: str) -> dict[str, object]:
    """Run the IPAM plugin for ``command``; its result (``{}`` for verbs without one).

    Cancellation: the plugin is killed and reaped before this returns.
    """
    plugin = caller.find(kind)
    try:
        return await _exec(caller, plugin, stdin, command)
    except CniError as exc:
        if exc.code != INCOMPATIBLE_VERSION:
            raise
        conf = json.loads(stdin.decode())  # it decoded once already (spec.NetConf)
        if conf.get("cniVersion") != "1.1.0":
            raise
        conf["cniVersion"] = "1.0.0"
        return await _exec(caller, plugin, json.dumps(conf).encode(), command)


async def supports(caller: Caller, kind: str, version: str) -> bool:
    """Whether the IPAM plugin knows CNI ``version`` (its VERSION answer): GC and STATUS go
    only to plugins of 1.1 or later, which an older one (host-local 1.1.x) would refuse."""
    stdin = json.dumps({"cniVersion": version}).encode()
    info = await _exec(caller, caller.find(kind), stdin, "VERSION")
    versions = info.get("supportedVersions")
    return isinstance(versions, list) and version in versions


async def _exec(caller: Caller, plugin: str, stdin: bytes, command: str) -> dict[str, object]:
    returncode, stdout, stderr = await spawn(caller, plugin, stdin, command)
    out: object = None
    if stdout.strip():
        try:
            out = loads(stdout, f"IPAM plugin {plugin}'s result")
        except CniError:
            out = None
    if returncode != 0:
        if isinstance(out, dict) and type(out.get("code")) is int:
            # The IPAM plugin's own error, passed through as the reference plugins do.
            raise CniError(out["code"], str(out.get("msg", "")), str(out.get("details", "")))
        text = stderr.decode(errors="replace").strip()[-500:]
        raise CniError(IO_FAILURE, f"IPAM plugin {plugin} exited {returncode}", text)
    return out if isinstance(out, dict) else {}


async def spawn(
    caller: Caller, plugin: str, stdin: bytes, command: str
) -> tuple[int, bytes, bytes]:
    """Run ``plugin`` as the caller with ``stdin``: (exit status, stdout, stderr).

    Code 5 if it cannot be started or writes more than MAX_STDOUT, code 11 if it runs past
    TIMEOUT (it is killed). Cancellation: the plugin is killed and reaped first.
    """
    env = dict(caller.environ, CNI_COMMAND=command)
    try:
        process = await trio.lowlevel.open_process(
            [plugin], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd="/", **caller.credentials(),
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:  # ENOEXEC, EACCES as the caller
        raise CniError(IO_FAILURE, f"IPAM plugin {plugin} did not run: {exc}") from None
    stdout, stderr = bytearray(), bytearray()
    too_much = False

    async def feed() -> None:
        assert process.stdin is not None
        async with process.stdin:
            # a plugin that does not read its stdin is its business
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await process.stdin.send_all(stdin)

    async def collect() -> None:
        nonlocal too_much
        assert process.stdout is not None
        async with process.stdout:
            while chunk := await process.stdout.receive_some(CHUNK):
                stdout.extend(chunk)
                if len(stdout) > MAX_STDOUT:
                    too_much = True
                    process.kill()
                    return

    async def drain() -> None:
        assert process.stderr is not None
        async with process.stderr:
            while chunk := await process.stderr.receive_some(CHUNK):
                stderr.extend(chunk)
                del stderr[:-MAX_STDERR]

    try:
        with trio.move_on_after(TIMEOUT) as timer:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(feed)
                nursery.start_soon(collect)
                nursery.start_soon(drain)
            await process.wait()
    finally:
        if process.returncode is None:  # timed out, or cancelled from outside
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
    if timer.cancelled_caught:
        raise CniError(
            TRY_AGAIN_LATER, f"IPAM plugin {plugin} did not finish within {TIMEOUT:g} s (killed)"
        )
    if too_much:
        raise CniError(IO_FAILURE, f"IPAM plugin {plugin} wrote over {MAX_STDOUT} bytes")
    code = process.returncode
    assert code is not None  # reaped above
    return code, bytes(stdout), bytes(stderr)
