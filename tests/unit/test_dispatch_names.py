"""Dispatcher: repeated and too many names in one request (issue 10 item 13; unit tier)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import msgspec
import pytest

from vimaged.dispatch import Dispatcher
from vimaged.errors import NotFoundError
from vimaged.peercred import Peer
from vimaged.protocol import (
    MAX_NAMES,
    Done,
    Error,
    Health,
    Outcome,
    Reply,
    Restart,
    Start,
    Status,
    Stop,
    VimageInfo,
    Vimages,
    VimagesEnd,
    VimagesPage,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from vimaged.supervisor import Supervisor

pytestmark = pytest.mark.unit

ROOT = Peer(uid=0, gid=0, groups=frozenset({0}))


class RecordingSupervisor:
    """Records what the dispatcher asks of the supervisor."""

    def __init__(self) -> None:
        self.observed: list[Sequence[str]] = []
        self.infos: list[str] = []
        self.started: list[list[str]] = []

    async def observe_addresses(self, names: Sequence[str]) -> None:
        self.observed.append(tuple(names))

    def info(self, name: str) -> VimageInfo:
        if name == "nosuch":
            raise NotFoundError(f"no vimage named {name!r} is configured")
        self.infos.append(name)
        return VimageInfo(name=name, state="running", jid=7)

    async def start(self, names: list[str]) -> list[Outcome]:
        self.started.append(names)
        return [Outcome(name=n, ok=True, state="running") for n in names]

    restart = start


def dispatcher() -> tuple[Dispatcher, RecordingSupervisor]:
    sup = RecordingSupervisor()
    return Dispatcher(cast("Supervisor", sup), None), sup


async def test_repeated_names_are_answered_once() -> None:
    dispatch, sup = dispatcher()
    reply = await dispatch.handle(Status(names=("web", "db") * 75000), ROOT)
    assert isinstance(reply, Vimages)
    assert [v.name for v in reply.vimages] == ["web", "db"]
    assert sup.observed == [("web", "db")]
    assert sup.infos == ["web", "db"]
    started = await dispatch.handle(Start(names=("web", "web", "db")), ROOT)
    assert isinstance(started, Done)
    assert sup.started == [["web", "db"]]


@pytest.mark.parametrize("request_type", [Status, Health, Start])
async def test_more_distinct_names_than_the_cap_are_refused(
    request_type: type[Status | Health | Start],
) -> None:
    dispatch, sup = dispatcher()
    names = tuple(f"v{i}" for i in range(MAX_NAMES + 1))
    reply = await dispatch.handle(request_type(names=names), ROOT)
    assert isinstance(reply, Error)
    assert reply.code == "invalid_request"
    assert (sup.observed, sup.infos, sup.started) == ([], [], [])
    at_the_cap = await dispatch.handle(request_type(names=names[:MAX_NAMES]), ROOT)
    assert not isinstance(at_the_cap, Error)


async def test_a_streamed_status_is_refused_whole_or_paged_once_per_name() -> None:
    dispatch, sup = dispatcher()
    refused = await dispatch.handle(Status(names=("web", "nosuch"), stream=True), ROOT)
    assert isinstance(refused, Error)
    assert refused.code == "not_found"  # before any page, and no address look
    assert sup.observed == []
    stream = await dispatch.handle(Status(names=("web", "db") * 3, stream=True), ROOT)
    assert not isinstance(stream, Reply)
    frames = [frame async for frame in stream]
    decoder = msgspec.json.Decoder(VimagesPage)
    pages = [decoder.decode(f) for f in frames[:-1] if isinstance(f, bytes)]
    assert [v.name for page in pages for v in page.vimages] == ["web", "db"]
    assert frames[-1] == VimagesEnd(count=2)
    assert sup.observed == [("web", "db")]


@pytest.mark.parametrize(
    "request_",
    [
        Start(names=("web",), all_=True),
        Stop(names=("web",), all_=True),
        Restart(names=("web",), all_=True),
    ],
)
async def test_names_and_all_together_are_refused_before_anything_starts(request_: object) -> None:
    dispatch, sup = dispatcher()
    reply = await dispatch.handle(request_, ROOT)  # type: ignore[arg-type]
    assert isinstance(reply, Error)
    assert reply.code == "invalid_request"
    assert sup.started == []
