"""The control socket's path: bind it without taking it from a live daemon (control layer, trio).

:func:`open_control_listener` gives vimaged/server.py a listening AF_UNIX socket. The path sits
in a directory other users may be able to write, so nothing found there is trusted: a socket
not owned by root (or our uid) is an impostor and replaced unprobed, a link is never followed,
and the new socket is prepared in a private directory before it is renamed into place.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import socket
import stat
import tempfile
from functools import partial

import structlog
import trio

from vimaged.errors import ConfigError
from vimaged.errors import DaemonRunningError as DaemonRunningError  # re-exported (server)
from vimaged.sockets import GONE, REFUSED, probe_socket

log = structlog.get_logger()

SOCKET_MODE = 0o660
PROBE_TIMEOUT = 1.0
"""How long a connect to an existing socket may take before we call its owner alive."""
PROBE_REFUSED_TRIES = 5
PROBE_REFUSED_DELAY = 0.2
"""FreeBSD refuses a connect (ECONNREFUSED) when the listen queue is full, so one refusal does
not prove the socket stale: it must be refused this many times, this far apart (issue 11)."""
BACKLOG = 512
"""listen(2) backlog: twice the default connection cap, so a burst is queued rather than
refused. The kernel clamps it silently (FreeBSD: kern.ipc.soacceptqueue, 128 by default;
Linux: net.core.somaxconn); past that, FreeBSD refuses connects and vimagectl retries."""
SUN_PATH_MAX = 104
"""sizeof(sockaddr_un.sun_path) minus the NUL on FreeBSD (104); Linux allows 108."""


class ControlListener(trio.abc.Listener[trio.SocketStream]):
    """The listening control socket and the group allowed to mutate through it.

    trio.SocketListener is final, so this wraps one. Closing it closes the socket and leaves
    the file: a stale socket is replaced by the next :func:`open_control_listener`.
    """

    def __init__(self, listener: trio.SocketListener, *, path: str, admin_gid: int) -> None:
        self.listener = listener
        self.path = path
        self.admin_gid = admin_gid

    async def accept(self) -> trio.SocketStream:
        return await self.listener.accept()

    async def aclose(self) -> None:
        await self.listener.aclose()


def admin_gid(group: str | None) -> int:
    """The gid whose members may send mutating requests: ``group`` (``vimaged_group``), or 0.

    Raises:
        ConfigError: no such group.
    """
    if group is None:
        return 0
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(f"vimaged_group: no group named {group!r}") from None


async def open_control_listener(path: str, *, group: str | None = None) -> ControlListener:
    """Listen on the control socket at ``path``, mode 0660, owned by root and ``group``.

    ``group`` is ``vimaged_group``; ``None`` means gid 0. Its members, who can connect through
    the mode, may also send mutating requests (:func:`may_mutate`).

    If ``path`` is a socket owned by us (root or our uid) that accepts a connection, a daemon is
    live and ``path`` is left alone. A socket owned by anyone else is an impostor: it is never
    probed, only replaced. The new socket is bound in a fresh mode 0700 directory beside
    ``path`` (nobody else can swap or link anything there), given its mode (and owner, when
    running as root) through that directory, and renamed over ``path``, so clients never see a
    socket with the wrong mode, a stale one is replaced atomically and no link is followed.

    Raises:
        DaemonRunningError: a daemon already listens on ``path``.
        FileExistsError: ``path`` exists and is not a socket.
        ConfigError: ``group`` does not exist.
        OSError: binding, chmod, chown or rename failed.

    Cancellation:
        While probing an existing socket or binding; nothing is left behind.
    """
    gid = admin_gid(group)
    if len(os.fsencode(path)) >= SUN_PATH_MAX:
        raise OSError(errno.ENAMETOOLONG, "control socket path too long for sockaddr_un", path)
    await _refuse_live_daemon(path)
    directory = os.path.dirname(path)
    staging = tempfile.mkdtemp(prefix=".vs", dir=directory or ".")  # short: sun_path
    try:
        if len(os.fsencode(os.path.join(staging, "s"))) >= SUN_PATH_MAX:
            raise OSError(errno.ENAMETOOLONG, "control socket path too long for sockaddr_un", path)
        sock = await _bind_in(staging, gid, path)
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(staging)
    log.info("control.listening", path=path, gid=gid, backlog=BACKLOG)
    return ControlListener(trio.SocketListener(sock), path=path, admin_gid=gid)


async def _bind_in(staging: str, gid: int, path: str) -> trio.socket.SocketType:
    """Bind in ``staging`` (ours, 0700), set mode and owner there, rename over ``path``, listen."""
    dir_fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        st = os.fstat(dir_fd)
        if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
            raise PermissionError(errno.EPERM, "staging directory was swapped", staging)
        await sock.bind(os.path.join(staging, "s"))
        # Through dir_fd: if staging was renamed away since it was opened, "s" is not in the
        # directory we hold and these fail instead of touching someone else's file.
        if not stat.S_ISSOCK(os.stat("s", dir_fd=dir_fd, follow_symlinks=False).st_mode):
            raise PermissionError(errno.EPERM, "staging socket is not ours", staging)
        os.chmod("s", SOCKET_MODE, dir_fd=dir_fd)
        if os.geteuid() == 0:
            os.chown("s", 0, gid, dir_fd=dir_fd, follow_symlinks=False)
        os.rename("s", path, src_dir_fd=dir_fd)
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink("s", dir_fd=dir_fd)  # gone already if the rename happened
        raise
    finally:
        os.close(dir_fd)
    return sock


def trusted_uids() -> frozenset[int]:
    """Owners a control socket of ours may have: root, and the uid this daemon runs as."""
    return frozenset({0, os.geteuid()})


async def _refuse_live_daemon(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(errno.EEXIST, "exists and is not a socket", path)
    if st.st_uid not in trusted_uids():
        # Planted by another user: whatever answers there is not a vimaged of ours.
        log.warning("control.impostor_socket_replaced", path=path, owner=st.st_uid)
        return
    for attempt in range(1, PROBE_REFUSED_TRIES + 1):
        probed = await trio.to_thread.run_sync(
            partial(probe_socket, path, socket.SOCK_STREAM, timeout=PROBE_TIMEOUT)
        )
        if probed == GONE:
            log.info("control.stale_socket_found", path=path)
            return
        if probed == REFUSED:
            # Nobody listens, or (FreeBSD) a live daemon's listen queue is full.
            if attempt == PROBE_REFUSED_TRIES:
                log.info("control.stale_socket_found", path=path, refused=attempt)
                return
            await trio.sleep(PROBE_REFUSED_DELAY)
            continue
        # Connected, or connect stalls on a full backlog (Linux): either way someone listens.
        raise DaemonRunningError(f"{path}: a vimaged is already listening on this socket")
