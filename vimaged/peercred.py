"""Peer credentials of a connected AF_UNIX socket (control layer, no ctypes).

Linux reports them with ``SO_PEERCRED`` (``struct ucred``) and ``SO_PEERGROUPS``; FreeBSD with
``LOCAL_PEERCRED`` (``struct xucred``, see unix(4)). Both are read through
``socket.getsockopt`` and decoded with :mod:`struct`. The kernel captures them at ``connect``, so
they describe the process that connected, with the groups it actually held then, not whatever
``/etc/group`` says today.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys
from dataclasses import dataclass
from typing import Protocol

UCRED = struct.Struct("@iII")
"""``struct ucred { pid_t pid; uid_t uid; gid_t gid; }`` from <sys/socket.h> (Linux)."""

SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
"""<asm-generic/socket.h>; CPython 3.11 does not export it. Linux 4.13 and later."""

SOL_LOCAL = 0
LOCAL_PEERCRED = 1
"""<sys/un.h> (FreeBSD): level 0, option 1."""
XU_NGROUPS = 16
XUCRED_VERSION = 0
XUCRED = struct.Struct(f"@IIh{XU_NGROUPS}I")
"""``struct xucred { u_int cr_version; uid_t cr_uid; short cr_ngroups; gid_t cr_groups[16];``
``union { void *_cr_unused1; pid_t cr_pid; }; }`` from <sys/ucred.h> (FreeBSD)."""
XUCRED_PID_OFFSET = struct.calcsize(f"@IIh{XU_NGROUPS}IP") - struct.calcsize("@P")
"""The union after ``cr_groups`` is pointer-aligned; ``cr_pid`` is at its start."""
XUCRED_SIZE = struct.calcsize(f"@IIh{XU_NGROUPS}IP")

GID_SIZE = struct.calcsize("@I")
PEERGROUPS_BUFLEN = 1024
"""CPython caps getsockopt's buffer at 1024 bytes: 256 groups."""


@dataclass(frozen=True, kw_only=True)
class Peer:
    """Who is at the other end of a control connection.

    Attributes:
        uid: effective user id at connect time.
        gid: effective group id at connect time.
        groups: supplementary groups at connect time (may include ``gid``).
        pid: process id, when the kernel reports it.
    """

    uid: int
    gid: int
    groups: frozenset[int]
    pid: int | None = None

    def in_group(self, gid: int) -> bool:
        """True if ``gid`` is the peer's effective group or one of its supplementary groups."""
        return gid == self.gid or gid in self.groups


def parse_ucred(buf: bytes) -> tuple[int, int, int]:
    """Decode a Linux ``struct ucred`` into ``(pid, uid, gid)``."""
    if len(buf) != UCRED.size:
        raise ValueError(f"struct ucred is {UCRED.size} bytes, got {len(buf)}")
    pid, uid, gid = UCRED.unpack(buf)
    return int(pid), int(uid), int(gid)


def parse_gid_list(buf: bytes) -> frozenset[int]:
    """Decode an array of ``gid_t`` (what ``SO_PEERGROUPS`` returns)."""
    if len(buf) % GID_SIZE:
        raise ValueError(f"gid_t array of {len(buf)} bytes is not a multiple of {GID_SIZE}")
    return frozenset(struct.unpack(f"@{len(buf) // GID_SIZE}I", buf))


def parse_xucred(buf: bytes) -> Peer:
    """Decode a FreeBSD ``struct xucred``; ``cr_groups[0]`` is the effective gid.

    True on 13, 14 and 15: before 15 the kernel's ``ucred.cr_groups[0]`` is the egid and
    ``cru2x`` copies the array; 15 keeps ``cr_gid`` apart in ``struct ucred`` but <sys/ucred.h>
    still puts it first in xucred (``cr_gid`` aliases ``cr_groups[0]``, ``cr_ngroups`` counts
    it) for the ABI. The kernel copies at most XU_NGROUPS (16) groups: a member of more may be
    seen without some; mutating access then needs the group among the first 15.
    """
    if len(buf) < XUCRED.size:
        raise ValueError(f"struct xucred is at least {XUCRED.size} bytes, got {len(buf)}")
    version, uid, ngroups, *groups = XUCRED.unpack_from(buf)
    if version != XUCRED_VERSION:
        raise ValueError(f"struct xucred version {version}, expected {XUCRED_VERSION}")
    if not 1 <= ngroups <= XU_NGROUPS:
        raise ValueError(f"struct xucred cr_ngroups {ngroups} outside 1..{XU_NGROUPS}")
    pid: int | None = None
    if len(buf) >= XUCRED_SIZE:
        (raw_pid,) = struct.unpack_from("@i", buf, XUCRED_PID_OFFSET)
        pid = int(raw_pid) or None  # kernels before 13 leave the union zeroed
    held = groups[:ngroups]
    return Peer(uid=int(uid), gid=int(held[0]), groups=frozenset(held), pid=pid)


def _linux_peer(sock: SupportsGetsockopt) -> Peer:
    pid, uid, gid = parse_ucred(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, UCRED.size))
    try:
        groups = parse_gid_list(
            sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, PEERGROUPS_BUFLEN)
        )
    except OSError as exc:
        # ENOPROTOOPT: kernel before 4.13; ERANGE: more groups than CPython's buffer holds.
        if exc.errno not in (errno.ENOPROTOOPT, errno.ERANGE):
            raise
        groups = _groups_from_passwd(uid, gid)
    return Peer(uid=uid, gid=gid, groups=groups, pid=pid)


def _groups_from_passwd(uid: int, gid: int) -> frozenset[int]:
    import pwd  # only on the fallback path

    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return frozenset()
    return frozenset(os.getgrouplist(name, gid))


class SupportsGetsockopt(Protocol):
    """What :func:`peer_credentials` needs of a socket: stdlib and trio sockets both fit."""

    def getsockopt(self, level: int, optname: int, buflen: int, /) -> bytes: ...


def peer_credentials(sock: SupportsGetsockopt) -> Peer:
    """Read the credentials of the process connected to ``sock``.

    Raises:
        OSError: the kernel refused (``ENOTCONN``...), or ``ENOTSUP`` on a platform other than
            Linux and FreeBSD.
    """
    if sys.platform.startswith("linux"):
        return _linux_peer(sock)
    if sys.platform.startswith("freebsd"):
        return parse_xucred(sock.getsockopt(SOL_LOCAL, LOCAL_PEERCRED, XUCRED_SIZE))
    raise OSError(errno.ENOTSUP, os.strerror(errno.ENOTSUP), f"peer credentials on {sys.platform}")
