"""Platform layer, ``sim``: the simulated host's interface events, by long poll.

The sim host keeps devctl's IFNET notices in a numbered log (``vimaged.simhost.ifnet_log``).
A watcher holds a connection of its own (a long poll would block the shared RPC connection)
and asks, again and again, for the notices after the last it saw (RPC ``watch_ifnets``),
which the host answers at once if there are some and otherwise after the first one or
:data:`POLL_WAIT` seconds. The first answer only gives the position; an answer saying
``lost`` (the host rebooted or dropped notices it kept for us) is a ``lost`` event. The host
going away ends the iteration with ``OSError``; :func:`open_reconnecting` opens it again.
"""

from __future__ import annotations

import errno
import os
from contextlib import aclosing, asynccontextmanager
from typing import TYPE_CHECKING

import msgspec
import trio

from vimaged.framing import receive_frame
from vimaged.platforms.ifnet_events import LOST, IfnetEvent, valid_ifname
from vimaged.simhost import rpc

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator

POLL_WAIT = 1.0
"""How long one poll may wait: the host applies time (dying jails ending) when asked."""

_KINDS = {"ATTACH": "attach", "DETACH": "detach"}


def notice_event(notice: rpc.IfnetNoticeRecord) -> IfnetEvent | None:
    if not valid_ifname(notice.name):
        return LOST
    if notice.kind == "RENAME":
        if notice.newname is None or not valid_ifname(notice.newname):
            return LOST
        return IfnetEvent(kind="rename", name=notice.name, newname=notice.newname)
    kind = _KINDS.get(notice.kind)
    if kind is None:
        return None
    return IfnetEvent(kind="attach" if kind == "attach" else "detach", name=notice.name)


async def _poll(stream: trio.SocketStream, request: rpc.WatchIfnets) -> rpc.IfnetNotices:
    await stream.send_all(rpc.frame(request))
    try:
        body = await receive_frame(stream)
        if body is None:
            raise OSError(errno.ECONNRESET, os.strerror(errno.ECONNRESET), "sim host")
        reply = rpc.REPLY_DECODER.decode(body)
    except (ValueError, msgspec.DecodeError) as exc:  # a bad frame: the framing is lost
        raise OSError(errno.EPROTO, os.strerror(errno.EPROTO), "sim host") from exc
    if isinstance(reply, rpc.Failed):
        raise OSError(reply.errno, os.strerror(reply.errno), reply.message)
    if not isinstance(reply, rpc.IfnetNotices):
        raise OSError(errno.EPROTO, f"the sim host answered {type(reply).__name__}")
    return reply


@asynccontextmanager
async def open_sim_source(socket_path: str) -> AsyncIterator[AsyncIterator[IfnetEvent]]:
    """One watching connection to the sim host at ``socket_path``.

    Raises ``OSError`` if the host cannot be reached. Cancellation: safe; the connection is
    closed on the way out (the host drops the poll).
    """
    stream = await trio.open_unix_socket(socket_path)
    try:
        try:
            position = await _poll(stream, rpc.WatchIfnets())
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise OSError(errno.ECONNRESET, os.strerror(errno.ECONNRESET), socket_path) from exc

        async def events() -> AsyncGenerator[IfnetEvent, None]:
            boot, seq = position.boot, position.seq
            while True:
                try:
                    reply = await _poll(
                        stream, rpc.WatchIfnets(after=seq, boot=boot, wait=POLL_WAIT)
                    )
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    code = errno.ECONNRESET
                    raise OSError(code, os.strerror(code), socket_path) from exc
                boot, seq = reply.boot, reply.seq
                if reply.lost:
                    yield LOST
                    continue
                for notice in reply.notices:
                    event = notice_event(notice)
                    if event is not None:
                        yield event

        async with aclosing(events()) as generator:
            yield generator
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()
