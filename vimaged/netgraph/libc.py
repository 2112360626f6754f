"""The one loader of libc: ``CDLL(find_library("c"), use_errno=True)``, typed from a table.

It lives in the netgraph binding, the lowest layer that calls libc, because the binding may
import nothing above it (vimaged/platforms/ is above): the platforms load libc through here too
(vimaged/platforms/_libc.py for FreeBSD, vimaged/platforms/linux_kernel.py for Linux). Importing
it makes no syscall and loads nothing.

:func:`load` gives each signature table its own handle on the one library, so two tables never
retype each other's functions (``kldload`` is in two); each caller caches its handle.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Mapping

ErrCheck = Any  # ctypes' errcheck callable: (result, func, args) -> result


def check_minus_one(result: int, func: Any, args: tuple[Any, ...]) -> int:
    """Most syscalls: -1 and errno on failure."""
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), func.__name__)
    return result


def check_nonzero(result: int, func: Any, args: tuple[Any, ...]) -> int:
    """Calls that return 0 on success and -1 (or an error number) otherwise."""
    if result != 0:
        err = ctypes.get_errno() or (result if result > 0 else 0)
        raise OSError(err, os.strerror(err), func.__name__)
    return result


class Signature(NamedTuple):
    argtypes: list[Any]
    restype: Any
    errcheck: ErrCheck | None


@functools.cache
def _path() -> str | None:
    return ctypes.util.find_library("c")


def load(signatures: Mapping[str, Signature]) -> Any:
    """A new handle on the C library with ``signatures`` applied.

    Functions the running libc lacks (``jail_get``, ``kldload`` on Linux) are skipped and fail
    with ``AttributeError`` when called, which only happens off their OS.
    """
    lib = ctypes.CDLL(_path(), use_errno=True)
    for name, (argtypes, restype, errcheck) in signatures.items():
        func = getattr(lib, name, None)
        if func is None:
            continue
        func.argtypes = argtypes
        func.restype = restype
        if errcheck is not None:
            func.errcheck = errcheck
    return lib
