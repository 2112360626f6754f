"""Kernel boundary of the linux platform: setns(2), unshare(2), mount(2) through libc.

Python 3.11 has no ``os.setns``/``os.unshare``, so they come from libc here. A network
namespace is a per-thread attribute on Linux, so every namespace switch happens in a fresh
thread that dies afterwards: no pooled trio worker thread is ever left in a vimage's namespace.
All functions here block; callers run them under ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import threading
import uuid
from typing import TYPE_CHECKING, Any, TypeVar

from vimaged.netgraph.libc import Signature, load

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MNT_DETACH = 2

NETNS_RUN_DIR = "/run/netns"
"""Where ``ip netns`` keeps its names; a name is a bind mount of an nsfs file."""


_SIGNATURES = {
    # No errcheck: _check names the call in the message, and ensure_netns_run_dir reads EINVAL.
    "setns": Signature([ctypes.c_int, ctypes.c_int], ctypes.c_int, None),
    "unshare": Signature([ctypes.c_int], ctypes.c_int, None),
    "mount": Signature(
        [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p],
        ctypes.c_int,
        None,
    ),
    "umount2": Signature([ctypes.c_char_p, ctypes.c_int], ctypes.c_int, None),
}


@functools.cache
def _libc() -> Any:
    """libc through the one loader (vimaged/netgraph/libc.py), on first use."""
    return load(_SIGNATURES)


def _check(result: int, call: str, subject: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{call}: {os.strerror(err)}", subject)


def setns(fd: int, subject: str) -> None:
    """Move the calling thread into the network namespace open as ``fd``."""
    _check(_libc().setns(fd, CLONE_NEWNET), "setns", subject)


def unshare_net(subject: str) -> None:
    """Move the calling thread into a new, empty network namespace."""
    _check(_libc().unshare(CLONE_NEWNET), "unshare", subject)


def mount_bind(source: str, target: str) -> None:
    _check(_libc().mount(source.encode(), target.encode(), b"none", MS_BIND, None), "mount", target)


def umount(target: str) -> None:
    """Detach the mount at ``target`` (lazily, as ``ip netns delete`` does)."""
    _check(_libc().umount2(target.encode(), MNT_DETACH), "umount2", target)


def ensure_netns_run_dir() -> None:
    """Make ``/run/netns`` a shared mount point, as ``ip netns add`` does.

    A shared mount propagates the names into mount namespaces created later, so
    ``ip netns exec`` from anywhere sees them.
    """
    os.makedirs(NETNS_RUN_DIR, mode=0o755, exist_ok=True)
    libc = _libc()
    target = NETNS_RUN_DIR.encode()
    if libc.mount(b"", target, b"none", MS_SHARED | MS_REC, None) == 0:
        return
    if ctypes.get_errno() != errno.EINVAL:
        _check(-1, "mount", NETNS_RUN_DIR)
    # EINVAL: not a mount point yet; bind it onto itself first, as iproute2 does.
    _check(libc.mount(target, target, b"none", MS_BIND | MS_REC, None), "mount", NETNS_RUN_DIR)
    _check(libc.mount(b"", target, b"none", MS_SHARED | MS_REC, None), "mount", NETNS_RUN_DIR)


def in_fresh_thread(enter: Callable[[], None], fn: Callable[[], T]) -> T:
    """Run ``enter()`` then ``fn()`` in a new thread that exits afterwards; return ``fn()``.

    ``enter`` switches the thread's namespace; because the thread dies, the switch never leaks.
    Exceptions from either are re-raised in the caller.
    """
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            enter()
            outcome.append(fn())
        except BaseException as exc:  # handed to the caller below
            failure.append(exc)

    thread = threading.Thread(target=target, name="vimaged-netns", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def in_netns(fd: int, subject: str, fn: Callable[[], T]) -> T:
    """Run ``fn()`` inside the network namespace open as ``fd`` (see :func:`in_fresh_thread`)."""
    return in_fresh_thread(lambda: setns(fd, subject), fn)


def in_new_netns(subject: str, fn: Callable[[], T]) -> T:
    """Run ``fn()`` in a thread that has just entered a brand-new network namespace."""
    return in_fresh_thread(lambda: unshare_net(subject), fn)


BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
"""A random UUID the kernel makes at each boot (random(4), ``boot_id``)."""


def read_host_uuid() -> str:
    """The host's identity: systemd's machine-id, else the DMI product UUID."""
    for path in ("/etc/machine-id", "/sys/class/dmi/id/product_uuid"):
        try:
            with open(path, encoding="ascii") as f:
                return str(uuid.UUID(f.read().strip()))
        except (OSError, ValueError):
            continue
    raise OSError(errno.ENOENT, "no /etc/machine-id or product_uuid", "/etc/machine-id")


def read_boot_id() -> str:
    with open(BOOT_ID_PATH, encoding="ascii") as f:
        return f.read().strip()
