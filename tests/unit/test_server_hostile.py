"""Control server against hostile clients and planted sockets (issue 10 items 1, 9, 10, 13;
issue 11 item 16), over real AF_UNIX sockets (tests, unit tier)."""

from __future__ import annotations

import errno
import os
import socket
import stat
from typing import TYPE_CHECKING

import pytest
import structlog
import trio
import trio.testing

from tests.unit import test_server
from tests.unit.test_server import NOBODY, Conn, Handler, start_server
from vimaged import peercred, protocol, server
from vimaged.listener import PROBE_REFUSED_DELAY, PROBE_REFUSED_TRIES
from vimaged.peercred import Peer
from vimaged.protocol import (
    Error,
    ListVimages,
    Status,
    VimageInfo,
    Vimages,
)
from vimaged.server import DaemonRunningError, Limits, open_control_listener

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from vimaged.protocol import AnyRequest, Reply

pytestmark = pytest.mark.unit

# test_server's fixtures, shared by name.
_close_clients = test_server._close_clients
socket_dir = test_server.socket_dir
socket_path = test_server.socket_path

DEEP_OBJECT = b'{"a":' * 1000 + b"1" + b"}" * 1000  # 6,001 bytes: RecursionError in msgspec


class HugeHandler(Handler):
    """``status huge`` builds a reply larger than MAX_FRAME."""

    async def handle(
        self, request: AnyRequest, peer: Peer
    ) -> Reply | AsyncGenerator[bytes | Reply, None]:
        if isinstance(request, Status) and request.names == ("huge",):
            info = VimageInfo(name="v" * 60, state="running", jid=7)
            return Vimages(vimages=(info,) * 20000)
        return await super().handle(request, peer)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(DEEP_OBJECT, id="deep-unknown-field"),
        pytest.param(
            b'{"op":"status","names":' + b"[" * 5000 + b"]" * 5000 + b"}", id="deep-names"
        ),
        pytest.param(b"[" * 100000, id="deep-unclosed"),
        pytest.param(b'{"op":"list","x":' + b"[{" * 9 + b"}]" * 9 + b"}", id="just-too-deep"),
    ],
)
async def test_a_deeply_nested_frame_is_refused_and_the_daemon_serves_on(
    nursery: trio.Nursery, socket_path: str, body: bytes
) -> None:
    await start_server(nursery, socket_path)
    conn = await Conn.greeted(socket_path)
    await conn.send_body(body)
    reply = await conn.receive()
    assert isinstance(reply, Error)
    assert reply.code == "invalid_request"
    assert isinstance(await conn.ask(ListVimages()), Vimages)
    assert isinstance(await (await Conn.greeted(socket_path)).ask(ListVimages()), Vimages)


async def test_a_decoder_bug_is_internal_logged_once_and_the_connection_stays(
    nursery: trio.Nursery, socket_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = protocol.REQUEST_DECODER

    class Buggy:
        def decode(self, body: bytes) -> AnyRequest:
            if b"boom" in body:
                raise RecursionError("maximum recursion depth exceeded")
            return real.decode(body)

    monkeypatch.setattr(server, "REQUEST_DECODER", Buggy())
    await start_server(nursery, socket_path)
    conn = await Conn.greeted(socket_path)
    with structlog.testing.capture_logs() as logs:
        await conn.send_body(b'{"op": "status", "names": ["boom"]}')
        reply = await conn.receive()
    assert isinstance(reply, Error)
    assert reply.code == "internal"
    assert "recursion" not in reply.message
    assert [e["exc_info"] for e in logs if e["log_level"] == "error"] == [True]
    assert isinstance(await conn.ask(ListVimages()), Vimages)


async def test_a_bug_outside_any_request_costs_one_connection_not_the_daemon(
    nursery: trio.Nursery, socket_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = peercred.peer_credentials
    calls = iter(range(100))

    def first_one_buggy(sock: socket.socket) -> Peer:
        if next(calls) == 0:
            raise ZeroDivisionError("bug")
        return real(sock)

    monkeypatch.setattr(server, "peer_credentials", first_one_buggy)
    await start_server(nursery, socket_path, limits=Limits(max_connections=2, root_reserved=0))
    with structlog.testing.capture_logs() as logs:
        assert await (await Conn.open(socket_path)).receive() is None
        await trio.testing.wait_all_tasks_blocked()
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["connection.crashed"]
    first = await Conn.greeted(socket_path)
    second = await Conn.greeted(socket_path)  # the crashed one gave its slot back
    assert isinstance(await first.ask(ListVimages()), Vimages)
    assert isinstance(await second.ask(ListVimages()), Vimages)


async def test_a_reply_larger_than_max_frame_is_a_clear_error(
    nursery: trio.Nursery, socket_path: str
) -> None:
    listener = await open_control_listener(socket_path)
    await _serve(nursery, listener, HugeHandler())
    conn = await Conn.greeted(socket_path)
    reply = await conn.ask(Status(names=("huge",)))
    assert isinstance(reply, Error)
    assert reply.code == "reply_too_large"
    assert isinstance(await conn.ask(ListVimages()), Vimages)


async def _serve(nursery: trio.Nursery, listener: server.ControlListener, handler: Handler) -> None:
    async def run(task_status: trio.TaskStatus[None]) -> None:
        await server.serve_control(
            listener, handler, handler_nursery=nursery, task_status=task_status
        )

    await nursery.start(run)


# Connection slots (issue 10 item 10).


@pytest.fixture
def peers_as(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each new connection's peer gets the next uid of this list (root once it is empty)."""
    uids: list[int] = []

    def fake(sock: socket.socket) -> Peer:
        uid = uids.pop(0) if uids else 0
        return Peer(uid=uid, gid=uid, groups=frozenset({uid}))

    monkeypatch.setattr(server, "peer_credentials", fake)
    return uids


async def _refused_busy(path: str) -> bool:
    conn = await Conn.open(path)
    reply = await conn.receive()
    if isinstance(reply, Error) and reply.code == "busy":
        assert await conn.receive() is None
        return True
    return False


async def test_slots_are_kept_for_root(
    nursery: trio.Nursery, socket_path: str, peers_as: list[int]
) -> None:
    await start_server(
        nursery, socket_path, limits=Limits(max_connections=4, root_reserved=2, max_per_uid=9)
    )
    peers_as.extend([NOBODY, 1001, 1002])
    idle = [await Conn.greeted(socket_path), await Conn.greeted(socket_path)]
    assert await _refused_busy(socket_path)  # uid 1002: only root's slots are left
    root = await Conn.greeted(socket_path)
    assert isinstance(await root.ask(ListVimages()), Vimages)
    await idle[0].stream.aclose()
    await trio.testing.wait_all_tasks_blocked()
    peers_as.append(1003)
    assert isinstance(await (await Conn.greeted(socket_path)).ask(ListVimages()), Vimages)


async def test_connections_per_uid_are_capped(
    nursery: trio.Nursery, socket_path: str, peers_as: list[int]
) -> None:
    await start_server(
        nursery, socket_path, limits=Limits(max_connections=10, root_reserved=0, max_per_uid=2)
    )
    peers_as.extend([NOBODY, NOBODY, NOBODY, 1001])
    first = await Conn.greeted(socket_path)
    await Conn.greeted(socket_path)
    assert await _refused_busy(socket_path)
    assert isinstance(await (await Conn.greeted(socket_path)).ask(ListVimages()), Vimages)
    await first.stream.aclose()
    await trio.testing.wait_all_tasks_blocked()
    peers_as.append(NOBODY)
    assert isinstance(await (await Conn.greeted(socket_path)).ask(ListVimages()), Vimages)


async def test_a_steady_trickle_of_requests_does_not_hold_a_slot_forever(
    nursery: trio.Nursery, socket_path: str, autojump_clock: trio.testing.MockClock
) -> None:
    await start_server(nursery, socket_path, limits=Limits(idle_timeout=60, session_timeout=300))
    with trio.fail_after(3600):
        conn = await Conn.greeted(socket_path)
        opened = trio.current_time()
        while True:
            await trio.sleep(50)  # well inside idle_timeout each time
            try:
                reply = await conn.ask(ListVimages())
            except trio.BrokenResourceError:
                reply = None
            if reply is None:
                break
            assert isinstance(reply, Vimages)
        assert 300 <= trio.current_time() - opened < 360


# Planted sockets and refused probes (issue 10 item 9, issue 11 item 16).


async def test_an_impostor_socket_is_replaced_never_obeyed(socket_path: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to another uid needs root")
    with socket.socket(socket.AF_UNIX) as impostor:
        impostor.bind(socket_path)
        impostor.listen()
        os.chown(socket_path, NOBODY, NOBODY)
        listener = await open_control_listener(socket_path)  # not DaemonRunningError (69)
        impostor.setblocking(False)
        with pytest.raises(BlockingIOError):
            impostor.accept()  # never even probed
    st = os.lstat(socket_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert st.st_uid == 0
    async with trio.open_nursery() as nursery:
        await _serve(nursery, listener, Handler())
        assert isinstance(await (await Conn.greeted(socket_path)).ask(ListVimages()), Vimages)
        nursery.cancel_scope.cancel()


async def test_a_link_at_the_socket_path_is_not_followed(socket_dir: str, socket_path: str) -> None:
    target = os.path.join(socket_dir, "target")
    with open(target, "w") as file:  # noqa: ASYNC230  # test setup
        file.write("root's file")
    os.symlink(target, socket_path)
    with pytest.raises(FileExistsError):
        await open_control_listener(socket_path)
    assert os.readlink(socket_path) == target
    with open(target) as file:  # noqa: ASYNC230
        assert file.read() == "root's file"
    assert sorted(os.listdir(socket_dir)) == ["target", "vimaged.sock"]


async def test_a_refused_probe_is_retried_before_the_socket_is_called_stale(
    socket_path: str, autojump_clock: trio.testing.MockClock
) -> None:
    # A live FreeBSD daemon with a full listen queue refuses; here the "daemon" starts
    # listening (its queue drains) after the first refusals.
    with socket.socket(socket.AF_UNIX) as busy:
        busy.bind(socket_path)
        async with trio.open_nursery() as nursery:

            async def drain() -> None:
                await trio.sleep(PROBE_REFUSED_DELAY * 2.5)
                busy.listen()

            nursery.start_soon(drain)
            with pytest.raises(DaemonRunningError) as raised:
                await open_control_listener(socket_path)
        assert raised.value.errno == errno.EADDRINUSE


async def test_a_socket_refused_every_time_is_stale_and_replaced(
    socket_path: str, autojump_clock: trio.testing.MockClock
) -> None:
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(socket_path)
        started = trio.current_time()
        listener = await open_control_listener(socket_path)
        waited = trio.current_time() - started
    assert waited >= PROBE_REFUSED_DELAY * (PROBE_REFUSED_TRIES - 1)
    await listener.aclose()
