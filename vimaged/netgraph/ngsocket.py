"""Netgraph binding, socket layer: :class:`NgSocket`, typed requests over an ``NgTransport``.

One ``NgSocket`` is one netgraph socket node (``NgMkSockNode``). Requests are framed by
``abi.pack_message``; ``sendto``'s errno is the command's result (the kernel never sends an
error reply), and a reply is the next datagram with ``NGF_RESP`` and the request's token.

Errors: every failure of a command is an :class:`NetgraphError`, which is an ``OSError``
carrying the errno, and is *also* an instance of the PEP 3151 class for that errno
(``FileNotFoundError`` for ENOENT, ``FileExistsError`` for EEXIST, ...), so callers write
``except FileExistsError:`` or test ``exc.errno``. ``filename`` holds the path, ``filename2``
the command's name.

Concurrency: one ``trio.Lock`` covers send and receive of each request, so any number of tasks
may share a socket; replies are matched by token, and anything else read meanwhile (unsolicited
flow messages) is set aside in :attr:`NgSocket.unsolicited` while stale replies are dropped.
"""

from __future__ import annotations

import collections
import errno as errno_codes
import functools
import os
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from vimaged.netgraph import abi, codec
from vimaged.netgraph.transport import NgDataTransport

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from vimaged.netgraph.transport import NgTransport

DEFAULT_REPLY_TIMEOUT = 10.0
"""Seconds a request waits for its reply after ``sendto`` succeeded (a dropped reply)."""
DEFAULT_RCVBUF = 1 << 20
"""SO_RCVBUF: LISTNODES needs 4 + 72 bytes per node; the default 20480 holds ~280."""
UNSOLICITED_KEPT = 256
HOOKS_SLACK = 64
"""Hooks a node may gain between the NODEINFO that sizes a LISTHOOKS and the LISTHOOKS."""


class NetgraphError(OSError):
    """A netgraph command failed: ``errno`` as ``sendto`` returned it."""


@functools.cache
def _error_class(code: int) -> type[NetgraphError]:
    builtin = type(OSError(code, ""))
    if builtin is OSError:
        return NetgraphError
    return type(f"Netgraph{builtin.__name__}", (NetgraphError, builtin), {})


def netgraph_error(code: int, path: str, what: str) -> NetgraphError:
    """A :class:`NetgraphError` for ``code`` that also is its PEP 3151 class."""
    return _error_class(code)(code, os.strerror(code), path, None, what)


def check_address(path: str, what: str) -> None:
    """ENAMETOOLONG, before any I/O, for a path FreeBSD 15 would refuse.

    ``ngc_send``/``ngd_send`` (sys/netgraph/ng_socket.c, main) return EINVAL for
    ``sg_len > NG_NODESIZ + offsetof(struct sockaddr_ng, sg_data)``: 31 characters and the
    NUL. 13/14 take longer paths, but one limit everywhere keeps a graph that works on 14
    from breaking on 15; nodes are addressed by ID (``[1a2b]:link12``) to stay within it.
    """
    if len(path) > abi.MAX_ADDRESS:
        raise netgraph_error(errno_codes.ENAMETOOLONG, path, what)


class NgSocket:
    """A netgraph socket node over a transport. Use :func:`open_ng_socket` to get one."""

    def __init__(self, transport: NgTransport, *, reply_timeout: float = DEFAULT_REPLY_TIMEOUT):
        self.transport = transport
        self.reply_timeout = reply_timeout
        self.unsolicited: collections.deque[tuple[str, abi.NgMessage]] = collections.deque(
            maxlen=UNSOLICITED_KEPT
        )
        self._token = 0
        self._lock = trio.Lock()
        self.name: str | None = None
        self.rcvbuf = DEFAULT_RCVBUF
        """SO_RCVBUF as last set (:meth:`setup`, :meth:`fit_reply`)."""

    def _next_token(self) -> int:
        """Older libnetgraph's ``++gMsgId``: 1, 2, ... wrapping back to 1 after INT_MAX."""
        self._token = self._token % 0x7FFFFFFF + 1
        return self._token

    async def setup(
        self, name: str | None = None, *, rcvbuf: int = DEFAULT_RCVBUF, data: bool = False
    ) -> None:
        """``NgMkSockNode``'s steps on an opened transport: bind ``name``, raise SO_RCVBUF,
        and with ``data`` connect the data socket to ``"<name>:"`` (``"[id]:"`` if unnamed).
        """
        if name:
            codec.name_field(name, "socket node name")
            try:
                await self.transport.bind(abi.pack_sockaddr(name))
            except OSError as exc:
                raise netgraph_error(exc.errno or errno_codes.EIO, name, "bind") from None
            self.name = name
        await self.transport.set_rcvbuf(rcvbuf)
        self.rcvbuf = rcvbuf
        if data:
            if not isinstance(self.transport, NgDataTransport):
                raise TypeError(f"{type(self.transport).__name__} has no data socket")
            address = f"{name}:" if name else (await self.nodeinfo(".")).address
            check_address(address, "connect")
            try:
                await self.transport.connect_data(abi.pack_sockaddr(address))
            except OSError as exc:
                raise netgraph_error(exc.errno or errno_codes.EIO, address, "connect") from None

    async def send(self, path: str, cookie: int, cmd: int, args: bytes = b"") -> int:
        """Send one message and return its token; the errno of ``sendto`` is raised."""
        async with self._lock:
            return await self._send(path, cookie, cmd, args)

    async def _send(self, path: str, cookie: int, cmd: int, args: bytes) -> int:
        check_address(path, abi.command_name(cookie, cmd))
        token = self._next_token()
        message = abi.pack_message(cookie, cmd, args, token=token)
        try:
            await self.transport.sendto(message, abi.pack_sockaddr(path))
        except OSError as exc:
            code = exc.errno if exc.errno is not None else errno_codes.EIO
            raise netgraph_error(code, path, abi.command_name(cookie, cmd)) from None
        return token

    async def request(self, path: str, cookie: int, cmd: int, args: bytes = b"") -> bytes:
        """Send a message that has a reply and return the reply's data.

        Raises:
            NetgraphError: the command failed (``sendto``'s errno).
            trio.TooSlowError: no reply within :attr:`reply_timeout` seconds.

        Cancellation: safe; a reply arriving later is dropped as stale.
        """
        async with self._lock:
            token = await self._send(path, cookie, cmd, args)
            with trio.fail_after(self.reply_timeout):
                while True:
                    raw, source = await self.transport.recvfrom()
                    try:
                        reply = abi.unpack_message(raw)
                    except ValueError:
                        continue  # not a message we can read: nothing waits for it
                    if reply.flags & abi.NGF_RESP:
                        if reply.token == token:
                            return reply.data
                        continue  # stale: its request timed out or was cancelled
                    try:
                        sender = abi.unpack_sockaddr(source)
                    except ValueError:
                        sender = ""
                    self.unsolicited.append((sender, reply))

    async def aclose(self) -> None:
        await self.transport.aclose()

    # Generic messages.

    async def shutdown(self, path: str) -> None:
        await self.send(path, abi.NGM_GENERIC_COOKIE, abi.NGM_SHUTDOWN)

    async def mkpeer(self, path: str, type_: str, ourhook: str, peerhook: str) -> None:
        args = codec.encode_mkpeer(type_, ourhook, peerhook)
        await self.send(path, abi.NGM_GENERIC_COOKIE, abi.NGM_MKPEER, args)

    async def connect(self, path: str, peer: str, ourhook: str, peerhook: str) -> None:
        args = codec.encode_connect(peer, ourhook, peerhook)
        await self.send(path, abi.NGM_GENERIC_COOKIE, abi.NGM_CONNECT, args)

    async def name_node(self, path: str, name: str) -> None:
        args = codec.encode_name(name)
        await self.send(path, abi.NGM_GENERIC_COOKIE, abi.NGM_NAME, args)

    async def rmhook(self, path: str, ourhook: str) -> None:
        args = codec.encode_rmhook(ourhook)
        await self.send(path, abi.NGM_GENERIC_COOKIE, abi.NGM_RMHOOK, args)

    async def nodeinfo(self, path: str) -> codec.NodeInfo:
        data = await self.request(path, abi.NGM_GENERIC_COOKIE, abi.NGM_NODEINFO)
        return codec.decode_nodeinfo(data)

    async def listhooks(self, path: str, *, hooks: int | None = None) -> codec.HookList:
        """LISTHOOKS, the receive buffer first raised to fit the reply: 136 bytes a hook, so
        a bridge of 10,000 links answers ~1.36 MB, which a smaller buffer would drop
        (ngs_rcvmsg: sbappendaddr fails, sys/netgraph/ng_socket.c). ``hooks``: the node's
        hook count if the caller knows it (a LISTNODES just said); else a NODEINFO asks."""
        if hooks is None:
            hooks = (await self.nodeinfo(path)).hooks
        await self.fit_reply(codec.hooklist_size(hooks + HOOKS_SLACK))
        data = await self.request(path, abi.NGM_GENERIC_COOKIE, abi.NGM_LISTHOOKS)
        return codec.decode_hooklist(data)

    async def fit_reply(self, size: int) -> None:
        """Raise SO_RCVBUF so that a reply of ``size`` bytes of data fits (it never lowers
        it). OSError (ENOBUFS) beyond kern.ipc.maxsockbuf's limit."""
        need = abi.HEADER_SIZE + size + max(abi.SOCKADDR_NG_SIZES)
        if need <= self.rcvbuf:
            return
        async with self._lock:  # a call on the transport, as request's: one at a time
            if need <= self.rcvbuf:
                return
            grown = need + need // 8
            try:
                await self.transport.set_rcvbuf(grown)
            except OSError as exc:
                if exc.errno != errno_codes.ENOBUFS:
                    raise
                grown = need  # no room for slack under the limit: the need alone, or ENOBUFS
                await self.transport.set_rcvbuf(grown)
            self.rcvbuf = grown

    async def listnodes(self) -> list[codec.NodeInfo]:
        data = await self.request(".", abi.NGM_GENERIC_COOKIE, abi.NGM_LISTNODES)
        return codec.decode_namelist(data)

    async def listnames(self) -> list[codec.NodeInfo]:
        data = await self.request(".", abi.NGM_GENERIC_COOKIE, abi.NGM_LISTNAMES)
        return codec.decode_namelist(data)

    async def listtypes(self) -> list[codec.TypeInfo]:
        data = await self.request(".", abi.NGM_GENERIC_COOKIE, abi.NGM_LISTTYPES)
        return codec.decode_typelist(data)

    async def ascii2binary(self, path: str, cmdname: str, args: str = "") -> abi.NgMessage:
        """The node's binary form of ``"cmdname args"``: its cookie, cmd and argument bytes."""
        inner = codec.encode_ascii_request(cmdname, args)
        data = await self.request(path, abi.NGM_GENERIC_COOKIE, abi.NGM_ASCII2BINARY, inner)
        return abi.unpack_message(data)

    async def binary2ascii(self, path: str, message: bytes) -> str:
        """The node's text form of the ``ng_mesg`` ``message`` (its arguments)."""
        data = await self.request(path, abi.NGM_GENERIC_COOKIE, abi.NGM_BINARY2ASCII, message)
        return abi.unpack_message(data).data.split(b"\0", 1)[0].decode("ascii", "replace")

    async def nolinger(self) -> None:
        """``NGM_SOCK_CMD_NOLINGER``: the socket node dies with its last hook."""
        await self.send(".", abi.NGM_SOCKET_COOKIE, abi.NGM_SOCK_CMD_NOLINGER)

    # ng_ether.

    async def ether_getifname(self, path: str) -> str:
        data = await self.request(path, abi.NGM_ETHER_COOKIE, abi.NGM_ETHER_GET_IFNAME)
        return codec.decode_ifname(data)

    async def ether_getenaddr(self, path: str) -> str:
        data = await self.request(path, abi.NGM_ETHER_COOKIE, abi.NGM_ETHER_GET_ENADDR)
        return codec.decode_mac(data)

    async def ether_getpromisc(self, path: str) -> int:
        data = await self.request(path, abi.NGM_ETHER_COOKIE, abi.NGM_ETHER_GET_PROMISC)
        return codec.decode_u32(data)

    async def ether_setpromisc(self, path: str, on: bool) -> None:
        args = codec.encode_u32(int(on))
        await self.send(path, abi.NGM_ETHER_COOKIE, abi.NGM_ETHER_SET_PROMISC, args)

    async def ether_getautosrc(self, path: str) -> int:
        data = await self.request(path, abi.NGM_ETHER_COOKIE, abi.NGM_ETHER_GET_AUTOSRC)
        return codec.decode_u32(data)

    async def ether_setautosrc(self, path: str, on: bool) -> None:
        args = codec.encode_u32(int(on))
        await self.send(path, abi.NGM_ETHER_COOKIE, abi.NGM_ETHER_SET_AUTOSRC, args)

    # ng_eiface.

    async def eiface_getifname(self, path: str) -> str:
        data = await self.request(path, abi.NGM_EIFACE_COOKIE, abi.NGM_EIFACE_GET_IFNAME)
        return codec.decode_ifname(data)

    async def eiface_set(self, path: str, mac: str) -> None:
        args = codec.encode_mac(mac)
        await self.send(path, abi.NGM_EIFACE_COOKIE, abi.NGM_EIFACE_SET, args)

    # ng_bridge: ``cookie`` is NGM_BRIDGE_COOKIE or, on FreeBSD <= 12.1, NGM_BRIDGE_COOKIE_OLD.

    async def bridge_getconfig(
        self, path: str, cookie: int = abi.NGM_BRIDGE_COOKIE
    ) -> codec.BridgeConfig:
        data = await self.request(path, cookie, abi.NGM_BRIDGE_GET_CONFIG)
        return codec.decode_bridge_config(data, old_abi=cookie == abi.NGM_BRIDGE_COOKIE_OLD)

    async def bridge_setconfig(
        self, path: str, config: codec.BridgeConfig, cookie: int = abi.NGM_BRIDGE_COOKIE
    ) -> None:
        args = codec.encode_bridge_config(config, old_abi=cookie == abi.NGM_BRIDGE_COOKIE_OLD)
        await self.send(path, cookie, abi.NGM_BRIDGE_SET_CONFIG, args)

    async def bridge_getstats(
        self, path: str, hook: str, cookie: int = abi.NGM_BRIDGE_COOKIE
    ) -> codec.LinkStats:
        args = codec.encode_i32(codec.bridge_link_number(hook))
        data = await self.request(path, cookie, abi.NGM_BRIDGE_GET_STATS, args)
        return codec.decode_link_stats(data)

    async def bridge_setpersistent(self, path: str, cookie: int = abi.NGM_BRIDGE_COOKIE) -> None:
        await self.send(path, cookie, abi.NGM_BRIDGE_SET_PERSISTENT)

    async def bridge_gettable(
        self, path: str, cookie: int = abi.NGM_BRIDGE_COOKIE
    ) -> list[codec.HostEntry]:
        data = await self.request(path, cookie, abi.NGM_BRIDGE_GET_TABLE)
        return codec.decode_host_table(data, old_abi=cookie == abi.NGM_BRIDGE_COOKIE_OLD)


@asynccontextmanager
async def open_ng_socket(
    transport: NgTransport,
    name: str | None = None,
    *,
    rcvbuf: int = DEFAULT_RCVBUF,
    reply_timeout: float = DEFAULT_REPLY_TIMEOUT,
    data: bool = False,
) -> AsyncIterator[NgSocket]:
    """An :class:`NgSocket` on ``transport`` (bound to ``name`` if given, with its data
    socket if ``data``); closes the transport on exit."""
    sock = NgSocket(transport, reply_timeout=reply_timeout)
    try:
        await sock.setup(name, rcvbuf=rcvbuf, data=data)
        yield sock
    finally:
        with trio.move_on_after(5, shield=True):
            await sock.aclose()
