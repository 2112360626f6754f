"""Kernel boundary: the FreeBSD platform's libc and the C signatures it declares.

``libc()`` loads libc through the one loader, vimaged/netgraph/libc.py (which the binding
below the platforms uses too), on first use and caches it;
importing this module makes no syscall, so it imports on Linux. Each function named in
:data:`SIGNATURES` gets its ``argtypes``, ``restype`` and an ``errcheck`` that turns the C
error convention into ``OSError(errno, strerror, name)`` (EAGAIN arrives as
``BlockingIOError``, ENOENT as ``FileNotFoundError``, ...).

Tests replace :func:`libc` (``monkeypatch.setattr(_libc, "libc", ...)``) with a recorder, so
what the platform asks of the kernel can be checked byte for byte on any OS.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

from vimaged.netgraph.libc import Signature, check_minus_one, check_nonzero, load

_INT = ctypes.c_int
_PTR = ctypes.c_void_p
_STR = ctypes.c_char_p
_SIZE = ctypes.c_size_t

SIGNATURES: dict[str, Signature] = {
    # int ioctl(int fd, unsigned long request, ...);  sys/sys/ioccom.h
    "ioctl": Signature([_INT, ctypes.c_ulong, _PTR], _INT, check_minus_one),
    # int jail_get(struct iovec *iov, u_int niov, int flags);  sys/sys/jail.h
    "jail_get": Signature([_PTR, ctypes.c_uint, _INT], _INT, check_minus_one),
    # int jail_attach(int jid);
    "jail_attach": Signature([_INT], _INT, check_minus_one),
    # int sysctlbyname(const char *name, void *oldp, size_t *oldlenp, const void *newp,
    #                  size_t newlen);  sys/sys/sysctl.h
    "sysctlbyname": Signature(
        [_STR, _PTR, ctypes.POINTER(_SIZE), _PTR, _SIZE], _INT, check_minus_one
    ),
    # int sysctl(const int *name, u_int namelen, void *oldp, size_t *oldlenp,
    #            const void *newp, size_t newlen);  sys/sys/sysctl.h
    "sysctl": Signature(
        [_PTR, ctypes.c_uint, _PTR, ctypes.POINTER(_SIZE), _PTR, _SIZE], _INT, check_minus_one
    ),
    # int modfind(const char *modname);  int kldload(const char *file);  sys/sys/linker.h
    "modfind": Signature([_STR], _INT, check_minus_one),
    "kldload": Signature([_STR], _INT, check_minus_one),
    # int getifaddrs(struct ifaddrs **ifap); void freeifaddrs(struct ifaddrs *ifp);
    "getifaddrs": Signature([ctypes.POINTER(_PTR)], _INT, check_nonzero),
    "freeifaddrs": Signature([_PTR], None, None),
}


@functools.cache
def libc() -> Any:
    """The C library with :data:`SIGNATURES` applied; loaded once, on first use, through the
    one loader (vimaged/netgraph/libc.py).

    Functions the running libc lacks (``jail_get`` on Linux) are skipped there and fail with
    ``AttributeError`` when called, which only happens off FreeBSD.
    """
    return load(SIGNATURES)
