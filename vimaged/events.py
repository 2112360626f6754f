"""The event hub: lifecycle and health events fanned out to ``vimagectl events`` subscribers.

Every event is also a log line; subscribers get the same facts as data. A subscriber that does
not keep up is dropped rather than slowing the daemon down.
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import structlog
import trio

from vimaged.log import event_level
from vimaged.protocol import Event

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

log = structlog.get_logger()

SUBSCRIBER_BUFFER = 256
LAGGED = "events.lagged"
"""The last event a subscriber gets when it fell SUBSCRIBER_BUFFER events behind."""


class EventHub:
    def __init__(self) -> None:
        self._subscribers: set[trio.MemorySendChannel[Event]] = set()

    def emit(
        self, event: str, name: str | None = None, **data: str | int | float | bool | None
    ) -> None:
        """Log ``event`` and hand it to every subscriber without waiting."""
        getattr(log, event_level(event))(event, vimage=name, **data)
        if not self._subscribers:
            return
        now = time.time()
        message = Event(time=now, event=event, name=name, data=data)
        for channel in list(self._subscribers):
            try:
                if channel.statistics().current_buffer_used >= SUBSCRIBER_BUFFER:
                    # Its last slot says why the stream ends, rather than a bare close that
                    # looks like the daemon stopping (a burst: stop --all of 10,000 vimages).
                    lagged = Event(time=now, event=LAGGED, data={"buffer": SUBSCRIBER_BUFFER})
                    channel.send_nowait(lagged)
                    log.warning("events.subscriber_dropped", reason="lagged")
                    raise trio.WouldBlock
                channel.send_nowait(message)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.discard(channel)
                channel.close()

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[trio.MemoryReceiveChannel[Event]]:
        send, receive = trio.open_memory_channel[Event](SUBSCRIBER_BUFFER + 1)
        self._subscribers.add(send)
        try:
            yield receive
        finally:
            self._subscribers.discard(send)
            send.close()
            receive.close()
