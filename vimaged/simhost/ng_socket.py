"""Simulated host layer: ng_socket(4) of the simulated kernel (ng_socket.c).

The socket node type and the socket calls into the kernel: ``ng_attach_cntl``, ``ng_bind``,
``ng_connect_data``, ``ng_socket_free_priv``, ``ngd_send``, ``ngc_send`` and ``ngs_rcvmsg``.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from vimaged.simhost.ng_base import NgBase, Node
from vimaged.simhost.ng_message import (
    AF_NETGRAPH,
    NG_HOOKSIZ,
    NG_VERSION,
    NGF_RESP,
    NGM_SOCK_CMD_LINGER,
    NGM_SOCK_CMD_NOLINGER,
    NGM_SOCKET_COOKIE,
    SOCKADDR_NG_MAX,
    NgMesg,
    cstr,
    fail,
    make_sockaddr,
    sockaddr_path,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from vimaged.simhost.ng_base import Hook


class SocketNode(Node):
    """ng_socket(4): one per control socket; dies when its sockets close (ng_socket.c)."""

    type_name = "socket"
    cookie = NGM_SOCKET_COOKIE

    kernel: NgSocket

    def __init__(self, kernel: NgSocket, node_id: int) -> None:
        super().__init__(kernel, node_id)
        self.refs = 0  # open control + data sockets (ng_socket_free_priv)
        self.has_data = False
        self.nolinger = False
        self.rcvbuf = DEFAULT_RECVSPACE
        self.deliver: Callable[[bytes, bytes], None] | None = None
        self.deliver_data: Callable[[bytes, bytes], None] | None = None
        """The data socket's receive queue: ``(sockaddr, frame)`` (ngs_rcvdata)."""

    def disconnected(self, hook: Hook) -> None:
        # ngs_disconnect: with NOLINGER the node goes when its last hook does.
        if self.nolinger and not self.hooks and self.valid:
            self.kernel.destroy(self)

    def rcvmsg(self, msg: NgMesg) -> bytes | None:
        # ngs_rcvmsg consumes NGM_SOCKET_COOKIE messages: LINGER/NOLINGER, else EINVAL.
        if msg.typecookie != NGM_SOCKET_COOKIE or msg.flags & NGF_RESP:
            # Anything else is queued to the control socket, from its sender (NGI_RETADDR).
            self.kernel.enqueue(self, msg, self.kernel.sender)
            return None
        if msg.cmd == NGM_SOCK_CMD_NOLINGER:
            self.nolinger = True
            if not self.hooks:
                self.kernel.destroy(self)
        elif msg.cmd == NGM_SOCK_CMD_LINGER:
            self.nolinger = False
        else:
            fail(errno.EINVAL, f"socket command {msg.cmd}")
        return None

    def rcvdata(self, hook: Hook, frame: bytes) -> None:
        # ngs_rcvdata: to the data socket from ``sg_len = strlen(hook) + 3``; no data
        # socket, the frame is black-holed.
        if self.deliver_data is not None:
            raw = hook.name.encode("latin-1")
            self.deliver_data(bytes([len(raw) + 3, AF_NETGRAPH]) + raw + b"\0", frame)

    def describe(self) -> dict[str, object]:
        return {"nolinger": self.nolinger}


DEFAULT_RECVSPACE = 20480
"""``net.graph.recvspace``: a netgraph control socket's default SO_RCVBUF (ng_socket.c)."""
SB_MAX_ADJ = (2 * 1024 * 1024) * 2048 // (256 + 2048)
"""The largest SO_RCVBUF: ``sb_max * MCLBYTES / (MSIZE + MCLBYTES)`` with the default
kern.ipc.maxsockbuf (SB_MAX, sys/sys/sockbuf.h); above it sbreserve_locked refuses and
setsockopt fails with ENOBUFS (sys/kern/uipc_sockbuf.c)."""


def sockaddr_limited(release: int) -> bool:
    """Whether ngc_send/ngd_send refuse ``sg_len > NG_NODESIZ + offsetof(sg_data)``.

    In main (FreeBSD 15) with the 34-byte ``struct sockaddr_ng`` ([M] ng_socket.c@2d614aa2);
    the 13-era ngc_send has no such check ([S13]); 14.x is taken to be without it (its
    sockaddr_ng is still 16 bytes, shared/reference/netgraph-abi.md §2.4).
    """
    return release >= 15


class NgSocket(NgBase):
    """The kernel as the socket calls see it."""

    def open_control(self) -> SocketNode:
        """socket(PF_NETGRAPH, SOCK_DGRAM, NG_CONTROL): ng_attach_cntl makes the node."""
        node = SocketNode(self, self._new_id())
        node.refs = 1
        self.nodes[node.id] = node
        return node

    def bind(self, node: SocketNode, sockaddr: bytes) -> None:
        """ng_bind: EINVAL unless 4 <= sg_len <= 34 and NUL-terminated; then ng_name_node."""
        sg_len = len(sockaddr)
        if not node.valid:
            fail(errno.ENOTCONN, "socket node is gone")
        if sg_len < 4 or sg_len > SOCKADDR_NG_MAX or sockaddr[2] == 0 or sockaddr[sg_len - 1]:
            fail(errno.EINVAL, "bad netgraph sockaddr")
        self.name_node(node, cstr(sockaddr[2:]))

    def connect_data(self, sockaddr: bytes) -> SocketNode:
        """ng_connect_data: the path's node must be a socket node without a data socket."""
        node, _ = self.resolve(None, sockaddr_path(sockaddr))
        if not isinstance(node, SocketNode):
            fail(errno.EINVAL, f"{node.address} is not a socket node")
        if node.has_data:
            fail(errno.EADDRINUSE, f"{node.address} has a data socket")
        node.has_data = True
        node.refs += 1
        return node

    def close_socket(self, node: SocketNode, *, data: bool) -> None:
        """ng_socket_free_priv: the node goes when its last socket closes."""
        if data:
            node.has_data = False
            node.deliver_data = None
        node.refs -= 1
        if node.refs <= 0:
            node.deliver = None
            self.destroy(node)

    def data_send(self, node: SocketNode, sockaddr: bytes, frame: bytes = b"") -> None:
        """ngd_send: the frame goes out of the hook the address names.

        The kernel's getsockaddr sets ``sg_len`` to the socklen, so ``len(sockaddr)`` is it.
        FreeBSD 15 first refuses ``sg_len > NG_NODESIZ + 2`` (ng_socket.c@2d614aa2 [M];
        absent from 13/14); then every release takes ``len = sg_len - 2`` bytes, NUL
        included, and refuses ``len >= NG_HOOKSIZ``: a 31-character hook is EINVAL here.
        """
        if not node.valid:
            fail(errno.ENOTCONN, "socket node is gone")
        if sockaddr_limited(self.version) and len(sockaddr) > SOCKADDR_NG_MAX:
            fail(errno.EINVAL, "sg_len > 34")
        length = max(len(sockaddr) - 2, 0)
        hook = sockaddr_path(sockaddr)
        if length <= 0 or not hook:
            if len(node.hooks) != 1:
                fail(errno.EDESTADDRREQ, "no hook given")
            self.send_data(next(iter(node.hooks.values())), frame)  # write(2) on one hook
            return
        if length >= NG_HOOKSIZ:
            fail(errno.EINVAL, "hook name too long")
        if hook not in node.hooks:
            fail(errno.EHOSTUNREACH, hook)
        self.send_data(node.hooks[hook], frame)

    def enqueue(self, node: SocketNode, msg: NgMesg, source: Node | None = None) -> None:
        """ngs_rcvmsg: append to the control socket with a ``[id]:`` source, or drop.

        The sockaddr is ``sizeof(struct sockaddr_ng)``: 16 bytes before FreeBSD 15, 34 after.
        sbappendaddr fails when the datagram does not fit the receive buffer, and the
        message is dropped silently (soroverflow).
        """
        if node.deliver is None:
            return
        size = SOCKADDR_NG_MAX if self.version >= 15 else 16
        sender = source if source is not None else node
        sockaddr = make_sockaddr(sender.address, size)
        raw = msg.encode()
        if len(raw) + len(sockaddr) > node.rcvbuf:
            return
        node.deliver(sockaddr, raw)

    def send(self, sender: SocketNode, sockaddr: bytes, raw: bytes) -> None:
        """ngc_send: deliver one message; raise OSError with the node's errno."""
        if not sender.valid:
            fail(errno.ENOTCONN, "socket node is gone")
        if not sockaddr:
            fail(errno.EDESTADDRREQ, "no destination")
        if sockaddr_limited(self.version) and len(sockaddr) > SOCKADDR_NG_MAX:
            fail(errno.EINVAL, "sg_len > 34")  # ngc_send of FreeBSD 15 (main [M] 2d614aa2)
        msg = NgMesg.decode(raw)
        if msg.version != NG_VERSION:
            fail(errno.EINVAL, f"NG_VERSION {msg.version}")
        if msg.arglen != len(msg.data):
            fail(errno.EINVAL, f"arglen {msg.arglen} but {len(msg.data)} bytes follow")
        path = cstr(sockaddr[2 : len(sockaddr)])
        target, lasthook = self.resolve(sender, path)
        self.sender = sender
        try:
            reply = self.apply(target, lasthook, msg)
        finally:
            self.sender = None
        if reply is not None:  # NG_RESPOND_MSG: a reply only when the node made one
            self.enqueue(sender, msg.response(reply), target)
