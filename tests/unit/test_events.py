"""The event hub: a subscriber that falls behind is told why its stream ends (issue 13)."""

from __future__ import annotations

import pytest
import trio

from vimaged.events import LAGGED, SUBSCRIBER_BUFFER, EventHub

pytestmark = pytest.mark.unit


async def test_a_lagging_subscriber_gets_every_buffered_event_then_lagged() -> None:
    hub = EventHub()
    async with hub.subscribe() as events:
        for i in range(SUBSCRIBER_BUFFER + 10):  # a burst it does not read
            hub.emit("vimage.stopped", f"v{i}")
        got = [event async for event in events]  # ends: the hub dropped it
    assert [e.name for e in got[:-1]] == [f"v{i}" for i in range(SUBSCRIBER_BUFFER)]
    assert got[-1].event == LAGGED
    assert got[-1].data == {"buffer": SUBSCRIBER_BUFFER}


async def test_a_subscriber_that_keeps_up_stays() -> None:
    hub = EventHub()
    async with hub.subscribe() as events:
        for i in range(3 * SUBSCRIBER_BUFFER):
            hub.emit("vimage.started", f"v{i}")
            assert (await events.receive()).name == f"v{i}"
        with pytest.raises(trio.WouldBlock):
            events.receive_nowait()  # still open, nothing lagged
