"""Platform layer: interface arrival and departure in the host's vnet, as a stream of events.

:meth:`vimaged.platforms.Platform.watch_ifnets` yields :class:`IfnetEvent` values. Each platform
has a source of its own (devd's seqpacket pipe on FreeBSD, rtnetlink's RTNLGRP_LINK on Linux,
the sim host's ``watch_ifnets`` long poll) and :func:`open_reconnecting` around it, so a source
that goes away (devd restarted, the sim host restarted) is opened again with capped backoff
and the consumer is told with a ``lost`` event that it may have missed some: it lists the
interfaces again. Events are hints, never proof: a consumer acts on an interface only after
looking at it (``list_ifnets``/``locate_ifnet``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Literal

import msgspec
import structlog
import trio

from vimaged.names import IFNAMSIZ  # the one definition: <net/if.h> and <linux/if.h> alike

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator


FIRST_DELAY = 0.1
MAX_DELAY = 5.0
"""Backoff between attempts to open a source again, doubling from the first."""

log = structlog.get_logger()


class IfnetEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One change of the host's interfaces.

    ``attach``: ``name`` appeared in the host's vnet (a NIC plugged, a vlan or eiface made, an
    interface moved home from a jail). ``detach``: it left (unplugged, destroyed, moved into a
    jail). ``rename``: ``name`` is now ``newname``; on FreeBSD devd reports renames in every
    vnet (if_rename notifies unconditionally), so the consumer looks before believing it.
    ``lost``: events may have been missed (the source was reopened, or overflowed); list again.
    """

    kind: Literal["attach", "detach", "rename", "lost"]
    name: str = ""
    newname: str | None = None


LOST = IfnetEvent(kind="lost")

IfnetSource = Callable[[], AbstractAsyncContextManager["AsyncIterator[IfnetEvent]"]]
"""Opens one subscription; its iterator ends or raises ``OSError`` when the source is lost."""


def valid_ifname(name: str) -> bool:
    """Whether ``name`` can be an interface name (from a hostile or garbled source)."""
    return (
        0 < len(name.encode()) < IFNAMSIZ
        and name.isascii()
        and name.isprintable()
        and not any(c.isspace() or c in "/=" for c in name)
    )


@asynccontextmanager
async def open_reconnecting(
    open_source: IfnetSource, *, what: str
) -> AsyncIterator[AsyncIterator[IfnetEvent]]:
    """Events of ``open_source()``, opened again after a loss with a ``lost`` event.

    Opening the first time raises ``OSError`` if the source is not there (the caller retries);
    later losses are logged (``ifnet.watch_lost``) and retried here, forever, with backoff.

    Cancellation: safe at any point; the open source is closed on the way out.
    """
    stack = contextlib.AsyncExitStack()
    source = await stack.enter_async_context(open_source())

    async def events() -> AsyncGenerator[IfnetEvent, None]:
        nonlocal source, stack
        while True:
            error: OSError | None = None
            try:
                async for event in source:
                    yield event
            except OSError as exc:
                error = exc
            await stack.aclose()
            log.warning(
                "ifnet.watch_lost",
                source=what,
                errno=error.errno if error else None,
                error=str(error) if error else "closed by the other side",
            )
            delay = FIRST_DELAY
            while True:
                await trio.sleep(delay)
                delay = min(MAX_DELAY, delay * 2)
                stack = contextlib.AsyncExitStack()
                try:
                    source = await stack.enter_async_context(open_source())
                except OSError:
                    await stack.aclose()
                    continue
                break
            log.info("ifnet.watch_resumed", source=what)
            yield LOST

    generator = events()
    try:
        yield generator
    finally:
        with trio.CancelScope(shield=True):
            await generator.aclose()
            await stack.aclose()
