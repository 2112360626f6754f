"""Netgraph binding, kernel layer: the real PF_NETGRAPH transport (FreeBSD only).

CPython creates an ``AF_NETGRAPH`` socket but cannot build its addresses, so a
``socket.socket`` owns each fd and only ``bind``/``connect``/``sendto``/``recvfrom`` go through
libc with raw ``sockaddr_ng`` bytes. The fds are nonblocking: a call that would block raises
``BlockingIOError`` and the task waits in ``trio.lowlevel.wait_readable``/``wait_writable``.
libc is loaded on first use (no syscalls at import), and :data:`LIBC_FUNCTIONS` is the one
table of the C functions used, so tests can stand a recording table in for it on Linux.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno as errno_codes
import functools
import os
import socket
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from vimaged.netgraph import abi
from vimaged.netgraph.libc import Signature, check_minus_one, load

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

RECV_SOCKADDR_SIZE = 514
"""``NG_PATHSIZ + 2``: room for any source address (the kernel attaches 16 or 34 bytes)."""
MAX_DATAGRAM = 1 << 20

_SOCKLEN = ctypes.c_uint32
LIBC_FUNCTIONS: dict[str, tuple[list[Any], Any]] = {
    # name: (argtypes, restype); errcheck raises OSError(errno) on -1.
    "bind": ([ctypes.c_int, ctypes.c_char_p, _SOCKLEN], ctypes.c_int),
    "connect": ([ctypes.c_int, ctypes.c_char_p, _SOCKLEN], ctypes.c_int),
    "sendto": (
        [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_char_p, _SOCKLEN],
        ctypes.c_ssize_t,
    ),
    "recvfrom": (
        [
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.POINTER(_SOCKLEN),
        ],
        ctypes.c_ssize_t,
    ),
    "kldload": ([ctypes.c_char_p], ctypes.c_int),
}


@functools.cache
def libc() -> Any:
    """The C library with :data:`LIBC_FUNCTIONS` typed and checked; loaded on first call."""
    return load({name: Signature(a, r, check_minus_one) for name, (a, r) in LIBC_FUNCTIONS.items()})


def _new_socket(proto: int, lib: Callable[[], Any]) -> socket.socket:
    """``socket(PF_NETGRAPH, SOCK_DGRAM, proto)``, loading ng_socket.ko once if needed."""
    try:
        return socket.socket(abi.AF_NETGRAPH, socket.SOCK_DGRAM, proto)
    except OSError as exc:
        # Current libnetgraph tests EAFNOSUPPORT, older EPROTONOSUPPORT: accept both.
        if exc.errno not in (errno_codes.EAFNOSUPPORT, errno_codes.EPROTONOSUPPORT):
            raise
        try:
            lib().kldload(b"ng_socket.ko")
        except OSError as load_exc:
            if load_exc.errno != errno_codes.EEXIST:
                raise exc from load_exc
        return socket.socket(abi.AF_NETGRAPH, socket.SOCK_DGRAM, proto)


class KernelTransport:
    """An ``NgTransport`` on PF_NETGRAPH fds: a control socket and, once connected, data."""

    def __init__(self, control: socket.socket, lib: Callable[[], Any] = libc) -> None:
        control.setblocking(False)
        self._control: socket.socket | None = control
        self._data: socket.socket | None = None
        self._lib = lib
        # One receive buffer per socket: reused, since a 1 MiB zeroed allocation per call costs.
        self._buffers = {
            "control": ctypes.create_string_buffer(MAX_DATAGRAM),
            "data": ctypes.create_string_buffer(MAX_DATAGRAM),
        }

    def _fd(self, sock: socket.socket | None) -> int:
        if sock is None:
            raise trio.ClosedResourceError("netgraph socket is closed")
        return sock.fileno()

    async def bind(self, sockaddr: bytes) -> None:
        self._lib().bind(self._fd(self._control), sockaddr, len(sockaddr))

    async def sendto(self, message: bytes, sockaddr: bytes) -> None:
        await self._sendto(self._control, message, sockaddr)

    async def _sendto(self, sock: socket.socket | None, message: bytes, sockaddr: bytes) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            fd = self._fd(sock)
            try:
                self._lib().sendto(fd, message, len(message), 0, sockaddr, len(sockaddr))
                break
            except BlockingIOError:
                await trio.lowlevel.wait_writable(fd)
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def recvfrom(self) -> tuple[bytes, bytes]:
        return await self._recvfrom(self._control, "control")

    async def _recvfrom(self, sock: socket.socket | None, which: str) -> tuple[bytes, bytes]:
        await trio.lowlevel.checkpoint_if_cancelled()
        buf = self._buffers[which]
        addr = ctypes.create_string_buffer(RECV_SOCKADDR_SIZE)
        while True:
            fd = self._fd(sock)
            addrlen = _SOCKLEN(RECV_SOCKADDR_SIZE)
            try:
                n = self._lib().recvfrom(fd, buf, MAX_DATAGRAM, 0, addr, ctypes.byref(addrlen))
                break
            except BlockingIOError:
                await trio.lowlevel.wait_readable(fd)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return ctypes.string_at(buf, n), addr.raw[: min(addrlen.value, RECV_SOCKADDR_SIZE)]

    async def set_rcvbuf(self, size: int) -> None:
        sock = self._control
        if sock is None:
            raise trio.ClosedResourceError("netgraph socket is closed")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        if self._data is not None:
            self._data.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)

    async def connect_data(self, sockaddr: bytes) -> None:
        """Open the data socket and ``connect`` it to this node (``"<name>:"``/``"[id]:"``)."""
        if self._data is not None:
            raise OSError(errno_codes.EISCONN, os.strerror(errno_codes.EISCONN), "connect")
        data = _new_socket(abi.NG_DATA, self._lib)
        data.setblocking(False)
        try:
            self._lib().connect(data.fileno(), sockaddr, len(sockaddr))
        except BaseException:
            data.close()
            raise
        self._data = data

    async def send_data(self, frame: bytes, hook_sockaddr: bytes) -> None:
        await self._sendto(self._data, frame, hook_sockaddr)

    async def recv_data(self) -> tuple[bytes, bytes]:
        return await self._recvfrom(self._data, "data")

    async def aclose(self) -> None:
        for sock in (self._data, self._control):
            if sock is not None and sock.fileno() >= 0:
                trio.lowlevel.notify_closing(sock.fileno())
                sock.close()
        self._data = self._control = None
        await trio.lowlevel.checkpoint()


@asynccontextmanager
async def open_kernel_transport() -> AsyncIterator[KernelTransport]:
    """A new netgraph socket node in the kernel (``socket(32, SOCK_DGRAM, NG_CONTROL)``)."""
    transport = KernelTransport(_new_socket(abi.NG_CONTROL, libc))
    try:
        yield transport
    finally:
        with trio.move_on_after(5, shield=True):
            await transport.aclose()
