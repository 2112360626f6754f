"""Unit tests of the PF_NETGRAPH transport's byte-level work, on Linux.

A UNIX datagram socketpair stands in for the netgraph fd and a recording object for libc,
so what reaches ``bind``/``sendto``/``recvfrom`` is checked without a FreeBSD kernel.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import subprocess
import sys
from typing import Any

import pytest
import trio

from vimaged.netgraph import abi, kernel_transport
from vimaged.netgraph.kernel_transport import KernelTransport
from vimaged.netgraph.libc import check_minus_one

pytestmark = pytest.mark.unit

SOURCE16 = bytes.fromhex("10205b335d3a00000000000000000000")


class RecordingLibc:
    """libc's netgraph calls, recorded; recvfrom reads the stand-in fd like the kernel would."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.send_errors: list[int] = []

    def bind(self, fd: int, addr: bytes, addrlen: int) -> int:
        self.calls.append(("bind", fd, bytes(addr), addrlen))
        return 0

    def connect(self, fd: int, addr: bytes, addrlen: int) -> int:
        self.calls.append(("connect", fd, bytes(addr), addrlen))
        return 0

    def sendto(self, fd: int, msg: bytes, n: int, flags: int, addr: bytes, addrlen: int) -> int:
        self.calls.append(("sendto", fd, bytes(msg), n, flags, bytes(addr), addrlen))
        if self.send_errors:
            code = self.send_errors.pop(0)
            raise OSError(code, os.strerror(code), "sendto")
        return n

    def recvfrom(self, fd: int, buf: Any, n: int, flags: int, addr: Any, addrlen: Any) -> int:
        data = os.read(fd, n)  # BlockingIOError when empty, as the nonblocking fd gives
        ctypes.memmove(buf, data, len(data))
        ctypes.memmove(addr, SOURCE16, len(SOURCE16))
        addrlen._obj.value = len(SOURCE16)
        self.calls.append(("recvfrom", fd, n, flags))
        return len(data)

    def kldload(self, name: bytes) -> int:
        self.calls.append(("kldload", name))
        return 0


@pytest.fixture
def pair() -> Any:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    yield ours, theirs
    ours.close()
    theirs.close()


async def test_bind_and_sendto_get_exact_sockaddr_bytes(pair: Any) -> None:
    ours, _ = pair
    lib = RecordingLibc()
    transport = KernelTransport(ours, lambda: lib)
    message = abi.pack_message(abi.NGM_GENERIC_COOKIE, abi.NGM_NODEINFO, b"", token=12)
    await transport.bind(abi.pack_sockaddr("mydaemon"))
    await transport.sendto(message, abi.pack_sockaddr("em0:"))
    fd = ours.fileno()
    assert lib.calls == [
        ("bind", fd, bytes.fromhex("0b206d796461656d6f6e00"), 11),
        ("sendto", fd, message, 56, 0, bytes.fromhex("0720656d303a00"), 7),
    ]
    assert not ours.getblocking()


async def test_sendto_errno_reaches_caller_as_pep3151_class(pair: Any) -> None:
    lib = RecordingLibc()
    lib.send_errors = [errno.EEXIST]
    transport = KernelTransport(pair[0], lambda: lib)
    with pytest.raises(FileExistsError):
        await transport.sendto(b"x", abi.pack_sockaddr("b:"))


async def test_sendto_waits_writable_on_eagain(pair: Any) -> None:
    lib = RecordingLibc()
    lib.send_errors = [errno.EAGAIN]
    transport = KernelTransport(pair[0], lambda: lib)
    await transport.sendto(b"msg", abi.pack_sockaddr("."))
    assert [c[0] for c in lib.calls] == ["sendto", "sendto"]


async def test_recvfrom_waits_readable_and_returns_message_and_source(pair: Any) -> None:
    ours, theirs = pair
    lib = RecordingLibc()
    transport = KernelTransport(ours, lambda: lib)
    reply = abi.pack_message(abi.NGM_GENERIC_COOKIE, abi.NGM_NODEINFO, bytes(72), token=1, flags=1)
    async with trio.open_nursery() as nursery:

        async def answer_later() -> None:
            await trio.sleep(0.05)
            theirs.send(reply)

        nursery.start_soon(answer_later)
        message, source = await transport.recvfrom()
    assert message == reply
    assert abi.unpack_sockaddr(source) == "[3]:"
    assert len(source) == 16


def test_errcheck_turns_minus_one_into_errno_oserror() -> None:
    ctypes.set_errno(errno.ENOENT)

    def sendto() -> None: ...

    with pytest.raises(FileNotFoundError) as caught:
        check_minus_one(-1, sendto, ())
    assert caught.value.errno == errno.ENOENT
    assert check_minus_one(7, sendto, ()) == 7


async def test_connect_data_and_close(pair: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ours, _ = pair
    data_pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    monkeypatch.setattr(kernel_transport, "_new_socket", lambda proto, lib: data_pair[0])
    lib = RecordingLibc()
    transport = KernelTransport(ours, lambda: lib)
    await transport.connect_data(abi.pack_sockaddr("mydaemon:"))
    assert lib.calls == [
        ("connect", data_pair[0].fileno(), bytes.fromhex("0c206d796461656d6f6e3a00"), 12)
    ]
    with pytest.raises(OSError) as caught:  # noqa: PT011 -- errno asserted below
        await transport.connect_data(abi.pack_sockaddr("mydaemon:"))
    assert caught.value.errno == errno.EISCONN
    await transport.aclose()
    await transport.aclose()  # idempotent
    assert ours.fileno() == -1
    assert data_pair[0].fileno() == -1
    data_pair[1].close()
    with pytest.raises(trio.ClosedResourceError):
        await transport.sendto(b"x", abi.pack_sockaddr("."))


def test_kldload_on_missing_family(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[tuple[int, int, int]] = []
    stand_in = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def fake_socket(family: int, kind: int, proto: int) -> socket.socket:
        attempts.append((family, kind, proto))
        if len(attempts) == 1:
            raise OSError(errno.EAFNOSUPPORT, "no netgraph")
        return stand_in

    monkeypatch.setattr(socket, "socket", fake_socket)
    lib = RecordingLibc()
    assert kernel_transport._new_socket(abi.NG_CONTROL, lambda: lib) is stand_in
    assert attempts == [(32, socket.SOCK_DGRAM, 2)] * 2
    assert lib.calls == [("kldload", b"ng_socket.ko")]
    stand_in.close()


def test_other_socket_errors_do_not_kldload(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_socket(family: int, kind: int, proto: int) -> socket.socket:
        raise OSError(errno.EPERM, "not root")

    monkeypatch.setattr(socket, "socket", fake_socket)
    lib = RecordingLibc()
    with pytest.raises(PermissionError):
        kernel_transport._new_socket(abi.NG_CONTROL, lambda: lib)
    assert lib.calls == []


def test_import_makes_no_syscalls_and_loads_no_libc() -> None:
    code = (
        "import vimaged.netgraph.kernel_transport as k, vimaged.platforms.netgraph_bridges, "
        "vimaged.ngtool as m; assert k.libc.cache_info().currsize == 0"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.getcwd())


async def test_real_libc_calls_on_a_unix_socketpair(pair: Any) -> None:
    """The real libc table (argtypes, buffers, errcheck) on Linux, with a UNIX fd standing in."""
    ours, theirs = pair
    transport = KernelTransport(ours)  # kernel_transport.libc, loaded now
    theirs.send(b"datagram")
    message, source = await transport.recvfrom()
    assert message == b"datagram"
    # The source is exactly the addrlen the kernel reports, never the buffer's size. For an
    # unnamed AF_UNIX socketpair peer that is nothing on Linux (addrlen 0) and FreeBSD's
    # sun_noname, a 16-byte struct sockaddr (sys/kern/uipc_usrreq.c). On PF_NETGRAPH the
    # same pass-through
    # gives ngs_rcvmsg's sockaddr_ng: sg_len = sizeof (16 on 13/14, 34 on 15) for a control
    # reply, strlen(hook) + 3 on the data socket; unpack_sockaddr reads up to the first NUL.
    assert len(source) == (16 if sys.platform.startswith("freebsd") else 0)
    with pytest.raises(OSError) as caught:  # noqa: PT011 -- errno asserted below
        # An AF_UNIX socket refuses a netgraph address: the errno comes from libc.
        await transport.sendto(b"x", abi.pack_sockaddr("em0:"))
    assert caught.value.errno == errno.EINVAL
    assert caught.value.filename == "sendto"
    await transport.aclose()
