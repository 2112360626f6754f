"""Simulated host layer: a blocking RPC client for tests and tools (no trio).

``SimHostClient.call(request)`` returns the typed reply, or raises ``OSError`` carrying the
errno the simulated kernel answered.
"""

from __future__ import annotations

import os
import socket
from typing import TypeVar

from vimaged.framing import recv_frame
from vimaged.simhost import rpc

R = TypeVar("R", bound=rpc.Reply)


def raise_failed(reply: rpc.Reply, subject: str) -> None:
    if isinstance(reply, rpc.Failed):
        raise OSError(reply.errno, os.strerror(reply.errno), f"{subject}: {reply.message}")


class SimHostClient:
    """One connection to a sim host's RPC socket; requests are answered in order."""

    def __init__(self, path: str, *, timeout: float = 10.0) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(path)
        except OSError:
            self._sock.close()
            raise

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> SimHostClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, request: rpc.Request) -> rpc.Reply:
        self._sock.sendall(rpc.frame(request))
        body = recv_frame(self._sock)
        if body is None:
            raise ConnectionResetError("sim host closed the connection")
        reply: rpc.Reply = rpc.REPLY_DECODER.decode(body)
        return reply

    def expect(self, request: rpc.Request, kind: type[R]) -> R:
        """``call`` that raises OSError on ``Failed`` and checks the reply's type."""
        reply = self.call(request)
        raise_failed(reply, type(request).__name__)
        if not isinstance(reply, kind):
            raise TypeError(f"{type(request).__name__} answered {reply!r}")
        return reply
