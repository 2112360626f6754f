"""The transport seam of the netgraph binding.

An :class:`NgTransport` is one netgraph socket node as the kernel exposes it: a control socket
(``socket(PF_NETGRAPH, SOCK_DGRAM, NG_CONTROL)``) and optionally its data socket. The real one
drives PF_NETGRAPH fds; the simulated one (``vimaged.platforms.sim_transport``) carries the
same bytes to ``vimaged.simhost``. Nothing above this seam knows which it has.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class NgTransport(Protocol):
    async def bind(self, sockaddr: bytes) -> None:
        """``bind(cs, sockaddr, len(sockaddr))``: name the socket node."""

    async def sendto(self, message: bytes, sockaddr: bytes) -> None:
        """``sendto(cs, message, ..., sockaddr, len(sockaddr))``.

        Raises ``OSError`` with the errno the kernel returned: the command's result.
        """

    async def recvfrom(self) -> tuple[bytes, bytes]:
        """The next datagram on the control socket: ``(message, source sockaddr)``."""

    async def set_rcvbuf(self, size: int) -> None:
        """``setsockopt(SOL_SOCKET, SO_RCVBUF)``; larger replies are dropped by the kernel."""

    async def aclose(self) -> None:
        """Close the sockets; the socket node dies with them. Idempotent."""


@runtime_checkable
class NgDataTransport(NgTransport, Protocol):
    """A transport that can also open the node's data socket (``NgMkSockNode``'s ``ds``)."""

    async def connect_data(self, sockaddr: bytes) -> None:
        """``socket(PF_NETGRAPH, SOCK_DGRAM, NG_DATA)`` then ``connect`` to the node."""

    async def send_data(self, frame: bytes, hook_sockaddr: bytes) -> None:
        """``sendto(ds, frame, ..., {hook}, ...)``: out of one of this node's hooks."""

    async def recv_data(self) -> tuple[bytes, bytes]:
        """The next frame and the sockaddr naming the hook it arrived on."""
