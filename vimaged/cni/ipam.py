"""IPAM by delegation, as the reference plugins do (pkg/invoke's DelegateAdd and friends).

The plugin named by ``ipam.type`` is looked up in CNI_PATH and run with the same stdin and
environment (CNI_COMMAND included). A 1.1.0 configuration is retried as 1.0.0 when the IPAM
plugin answers "incompatible version": the 1.1 result format is the 1.0 one, and Debian's
host-local (1.1.x) knows only 1.0. The plugin is started with :func:`os.posix_spawn` and its
pipes polled here: :mod:`subprocess` imports :mod:`threading`, :mod:`selectors` and
:mod:`signal` (~12 ms of every exec) for what these few lines do.
"""

from __future__ import annotations

import errno
import os
import select
import time
from _signal import SIGKILL, SIGPIPE  # type: ignore[import-not-found]  # signal imports enum

from vimaged_cni import jsonc
from vimaged_cni.spec import (
    INCOMPATIBLE_VERSION,
    INVALID_CONFIG,
    IO_FAILURE,
    CniError,
)

TIMEOUT = 60.0


def find(kind: str, path: list[str]) -> str:
    for directory in path:
        candidate = os.path.join(directory, kind)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise CniError(INVALID_CONFIG, f"IPAM plugin {kind} not found in CNI_PATH", ":".join(path))


def run(kind: str, path: list[str], stdin: bytes, command: str) -> dict[str, object]:
    """Run the IPAM plugin for ``command``; its result (``{}`` for verbs without one)."""
    plugin = find(kind, path)
    try:
        return _exec(plugin, stdin, command)
    except CniError as exc:
        if exc.code != INCOMPATIBLE_VERSION:
            raise
        conf = jsonc.loads(stdin)
        if conf.get("cniVersion") != "1.1.0":
            raise
        conf["cniVersion"] = "1.0.0"
        return _exec(plugin, jsonc.dumps(conf).encode(), command)


def supports(kind: str, path: list[str], version: str) -> bool:
    """Whether the IPAM plugin knows CNI ``version`` (its VERSION answer): GC and STATUS go
    only to plugins of 1.1 or later, which an older one (host-local 1.1.x) would refuse."""
    info = _exec(find(kind, path), jsonc.dumps({"cniVersion": version}).encode(), "VERSION")
    versions = info.get("supportedVersions")
    return isinstance(versions, list) and version in versions


def _exec(plugin: str, stdin: bytes, command: str) -> dict[str, object]:
    env = dict(os.environ, CNI_COMMAND=command)
    returncode, stdout, stderr = _spawn(plugin, stdin, env)
    out: object = None
    if stdout.strip():
        try:
            out = jsonc.loads(stdout)
        except ValueError:
            out = None
    if returncode != 0:
        if isinstance(out, dict) and isinstance(out.get("code"), int):
            # The IPAM plugin's own error, passed through as the reference plugins do.
            raise CniError(out["code"], str(out.get("msg", "")), str(out.get("details", "")))
        text = stderr.decode(errors="replace").strip()[-500:]
        raise CniError(IO_FAILURE, f"IPAM plugin {plugin} exited {returncode}", text)
    return out if isinstance(out, dict) else {}


def _spawn(plugin: str, stdin: bytes, env: dict[str, str]) -> tuple[int, bytes, bytes]:
    """Run ``plugin`` with ``stdin``: (exit status, stdout, stderr), killed after TIMEOUT.

    The pipes are O_CLOEXEC (PEP 446), so the child gets only fds 0-2; SIGPIPE, which Python
    ignores, is default again in the child, as subprocess does."""
    pipes = [os.pipe(), os.pipe(), os.pipe()]  # stdin, stdout, stderr: (read end, write end)
    child_ends = [pipes[0][0], pipes[1][1], pipes[2][1]]
    ours = [pipes[0][1], pipes[1][0], pipes[2][0]]
    unclosed = set(ours)
    try:
        try:
            pid = os.posix_spawn(
                plugin, [plugin], env, setsigdef=(SIGPIPE,),
                file_actions=[(os.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(child_ends)],
            )  # fmt: skip
        except OSError as exc:
            why = f"{exc.strerror} ({errno.errorcode.get(exc.errno or 0, exc.errno)})"
            raise CniError(IO_FAILURE, f"IPAM plugin {plugin} did not run: {why}") from None
        finally:
            for fd in child_ends:
                os.close(fd)
        try:
            stdout, stderr = _communicate(ours, unclosed, stdin, time.monotonic() + TIMEOUT)
        except TimeoutError:
            os.kill(pid, SIGKILL)
            os.waitpid(pid, 0)
            raise CniError(
                IO_FAILURE, f"IPAM plugin {plugin} did not run: no answer in {TIMEOUT:g} s"
            ) from None
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), stdout, stderr
    finally:
        for fd in unclosed:
            os.close(fd)


def _communicate(
    fds: list[int], unclosed: set[int], stdin: bytes, deadline: float
) -> tuple[bytes, bytes]:
    """Write ``stdin`` to fds[0] while reading fds[1] and fds[2] to their ends; each fd is
    closed (and taken out of ``unclosed``) once done with."""
    to_child, out_fd, err_fd = fds
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    poller = select.poll()
    pending = memoryview(stdin)
    if pending:
        os.set_blocking(to_child, False)
        poller.register(to_child, select.POLLOUT)
    else:
        os.close(to_child)
        unclosed.discard(to_child)
    for fd in chunks:
        poller.register(fd, select.POLLIN)
    open_fds = len(chunks) + (1 if pending else 0)
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        for fd, _event in poller.poll(left * 1000):
            if fd == to_child:
                try:
                    pending = pending[os.write(fd, pending[:65536]) :]
                except BrokenPipeError:  # it stopped reading: what it wrote tells why
                    pending = pending[:0]
                if pending:
                    continue
            else:
                data = os.read(fd, 65536)
                if data:
                    chunks[fd].append(data)
                    continue
            poller.unregister(fd)
            os.close(fd)
            unclosed.discard(fd)
            open_fds -= 1
    return b"".join(chunks[out_fd]), b"".join(chunks[err_fd])
