"""A netgraph transport that counts what crosses it: the bridges' cost in tests and benchmarks."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vimaged.netgraph.transport import NgTransport


class CountingTransport:
    """An NgTransport that counts the requests sent and the reply bytes received."""

    def __init__(self, inner: NgTransport) -> None:
        self.inner = inner
        self.requests = 0
        self.reply_bytes = 0

    async def bind(self, sockaddr: bytes) -> None:
        await self.inner.bind(sockaddr)

    async def sendto(self, message: bytes, sockaddr: bytes) -> None:
        self.requests += 1
        await self.inner.sendto(message, sockaddr)

    async def recvfrom(self) -> tuple[bytes, bytes]:
        message, source = await self.inner.recvfrom()
        self.reply_bytes += len(message)
        return message, source

    async def set_rcvbuf(self, size: int) -> None:
        await self.inner.set_rcvbuf(size)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def take(self) -> tuple[int, int]:
        """``(requests, reply bytes)`` since the last call."""
        counts = (self.requests, self.reply_bytes)
        self.requests = self.reply_bytes = 0
        return counts
