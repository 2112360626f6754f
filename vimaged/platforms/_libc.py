"""Kernel boundary: the one place that loads libc and declares its C signatures.

``libc()`` loads ``CDLL(find_library("c"), use_errno=True)`` on first use and caches it;
importing this module makes no syscall, so it imports on Linux. Each function named in
:data:`SIGNATURES` gets its ``argtypes``, ``restype`` and an ``errcheck`` that turns the C
error convention into ``OSError(errno, strerror, name)`` (EAGAIN arrives as
``BlockingIOError``, ENOENT as ``FileNotFoundError``, ...).

Tests replace :func:`libc` (``monkeypatch.setattr(_libc, "libc", ...)``) with a recorder, so
what the platform asks of the kernel can be checked byte for byte on any OS.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from typing import Any, NamedTuple

ErrCheck = Any  # ctypes' errcheck callable: (result, func, args) -> result


def _check_minus_one(result: int, func: Any, args: tuple[Any, ...]) -> int:
    """Most syscalls: -1 and errno on failure."""
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), func.__name__)
    return result


def _check_nonzero(result: int, func: Any, args: tuple[Any, ...]) -> int:
    """Calls that return 0 on success and -1 (or an error number) otherwise."""
    if result != 0:
        err = ctypes.get_errno() or (result if result > 0 else 0)
        raise OSError(err, os.strerror(err), func.__name__)
    return result


class Signature(NamedTuple):
    argtypes: list[Any]
    restype: Any
    errcheck: ErrCheck | None


_INT = ctypes.c_int
_PTR = ctypes.c_void_p
_STR = ctypes.c_char_p
_SIZE = ctypes.c_size_t

SIGNATURES: dict[str, Signature] = {
    # int ioctl(int fd, unsigned long request, ...);  sys/sys/ioccom.h
    "ioctl": Signature([_INT, ctypes.c_ulong, _PTR], _INT, _check_minus_one),
    # int jail_get(struct iovec *iov, u_int niov, int flags);  sys/sys/jail.h
    "jail_get": Signature([_PTR, ctypes.c_uint, _INT], _INT, _check_minus_one),
    # int jail_attach(int jid);
    "jail_attach": Signature([_INT], _INT, _check_minus_one),
    # int sysctlbyname(const char *name, void *oldp, size_t *oldlenp, const void *newp,
    #                  size_t newlen);  sys/sys/sysctl.h
    "sysctlbyname": Signature(
        [_STR, _PTR, ctypes.POINTER(_SIZE), _PTR, _SIZE], _INT, _check_minus_one
    ),
    # int modfind(const char *modname);  int kldload(const char *file);  sys/sys/linker.h
    "modfind": Signature([_STR], _INT, _check_minus_one),
    "kldload": Signature([_STR], _INT, _check_minus_one),
    # int getifaddrs(struct ifaddrs **ifap); void freeifaddrs(struct ifaddrs *ifp);
    "getifaddrs": Signature([ctypes.POINTER(_PTR)], _INT, _check_nonzero),
    "freeifaddrs": Signature([_PTR], None, None),
}


@functools.cache
def libc() -> Any:
    """The C library with :data:`SIGNATURES` applied; loaded once, on first use.

    Functions the running libc lacks (``jail_get`` on Linux) are skipped here and fail with
    ``AttributeError`` when called, which only happens off FreeBSD.
    """
    path = ctypes.util.find_library("c")
    lib = ctypes.CDLL(path, use_errno=True)
    for name, (argtypes, restype, errcheck) in SIGNATURES.items():
        try:
            func = getattr(lib, name)
        except AttributeError:
            continue
        func.argtypes = argtypes
        func.restype = restype
        if errcheck is not None:
            func.errcheck = errcheck
    return lib
