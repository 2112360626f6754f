"""Control server tests over real AF_UNIX sockets (tests, unit tier).

One small handler stands in for vimaged/dispatch.py. Clients speak raw frames so malformed
input can be sent; unprivileged peers are child processes run as uid 65534.
"""

from __future__ import annotations

import errno
import grp
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from contextlib import asynccontextmanager
from functools import cache, partial
from typing import TYPE_CHECKING, ClassVar

import pytest
import structlog
import trio
import trio.testing

from vimaged import __version__
from vimaged.errors import ConfigError, NotFoundError
from vimaged.protocol import (
    HEADER,
    MAX_FRAME,
    REPLY_DECODER,
    CniExec,
    Done,
    Error,
    Event,
    Events,
    Hello,
    ListVimages,
    Outcome,
    Start,
    Status,
    VimageInfo,
    Vimages,
    VimagesPage,
    frame,
    vimages_pages,
)
from vimaged.server import (
    DaemonRunningError,
    Limits,
    open_control_listener,
    serve_control,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Iterator

    from vimaged.peercred import Peer
    from vimaged.protocol import AnyRequest, Reply, Request

pytestmark = pytest.mark.unit

NOBODY = 65534
TIMEOUT = 10  # absolute bound on every test that waits on the server


class Handler:
    """Answers like the dispatcher would; ``Status(names=("boom",))`` is a handler bug."""

    def __init__(self) -> None:
        self.seen: list[tuple[AnyRequest, Peer]] = []
        self.publish, self._events = trio.open_memory_channel[Event](16)
        self.subscribers = 0

    async def handle(
        self, request: AnyRequest, peer: Peer
    ) -> Reply | AsyncGenerator[bytes | Reply, None]:
        self.seen.append((request, peer))
        if isinstance(request, ListVimages) and request.stream:
            return self._stream()
        if isinstance(request, Status) and "boom" in request.names:
            raise RuntimeError("handler bug with a secret detail")
        if isinstance(request, Start):
            return Done(
                outcomes=tuple(Outcome(name=n, ok=True, state="running") for n in request.names)
            )
        return Vimages(vimages=(VimageInfo(name="web", state="running", jid=7),))

    async def _stream(self) -> AsyncGenerator[bytes | Reply, None]:
        """Two pages, then a failure: a domain error ends the stream with its code."""
        web = VimageInfo(name="web", state="running", jid=7)
        for page in vimages_pages([web, web], budget=1):
            yield page
        raise NotFoundError("no vimage named 'gone' is configured")

    @asynccontextmanager
    async def events(self) -> AsyncIterator[trio.MemoryReceiveChannel[Event]]:
        self.subscribers += 1
        try:
            yield self._events
        finally:
            self.subscribers -= 1


class Conn:
    """A raw protocol client: frames out, decoded replies in, ``None`` at EOF."""

    opened: ClassVar[list[Conn]] = []

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buffer = bytearray()
        self.opened.append(self)

    @classmethod
    async def open(cls, path: str) -> Conn:
        return cls(await trio.open_unix_socket(path))

    @classmethod
    async def greeted(cls, path: str) -> Conn:
        conn = await cls.open(path)
        assert await conn.receive() == Hello(protocol=1, daemon=__version__, features=("stream",))
        return conn

    async def _fill(self, size: int) -> bool:
        while len(self._buffer) < size:
            chunk = await self.stream.receive_some()
            if not chunk:
                return False
            self._buffer += chunk
        return True

    async def receive(self) -> Reply | None:
        if not await self._fill(HEADER.size):
            assert not self._buffer, "EOF inside a header"
            return None
        (length,) = HEADER.unpack(self._buffer[: HEADER.size])
        assert await self._fill(HEADER.size + length), "EOF inside a frame"
        body = bytes(self._buffer[HEADER.size : HEADER.size + length])
        del self._buffer[: HEADER.size + length]
        reply: Reply = REPLY_DECODER.decode(body)
        return reply

    async def send_body(self, body: bytes) -> None:
        await self.stream.send_all(HEADER.pack(len(body)) + body)

    async def ask(self, request: Request) -> Reply | None:
        await self.stream.send_all(frame(request))
        return await self.receive()


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while Conn.opened:
        await Conn.opened.pop().stream.aclose()


@pytest.fixture
def socket_dir() -> Iterator[str]:
    # Short (sun_path holds 104 bytes) and traversable by uid 65534, unlike pytest's tmp_path.
    path = tempfile.mkdtemp(prefix="vctl", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def socket_path(socket_dir: str) -> str:
    return os.path.join(socket_dir, "vimaged.sock")


async def start_server(
    nursery: trio.Nursery, path: str, *, limits: Limits | None = None, group: str | None = None
) -> Handler:
    handler = Handler()
    limits = limits or Limits()
    listener = await open_control_listener(path, group=group)
    await nursery.start(
        partial(serve_control, listener, handler, handler_nursery=nursery, limits=limits)
    )
    return handler


async def test_hello_first_then_replies_in_order(nursery: trio.Nursery, socket_path: str) -> None:
    handler = await start_server(nursery, socket_path)
    conn = await Conn.greeted(socket_path)
    assert await conn.ask(ListVimages()) == Vimages(
        vimages=(VimageInfo(name="web", state="running", jid=7),)
    )
    assert await conn.ask(Start(names=("web", "db"))) == Done(
        outcomes=(
            Outcome(name="web", ok=True, state="running"),
            Outcome(name="db", ok=True, state="running"),
        )
    )
    request, peer = handler.seen[0]
    assert request == ListVimages()
    assert (peer.uid, peer.gid, peer.pid) == (os.geteuid(), os.getegid(), os.getpid())


async def test_a_cni_exec_connection_closes_after_its_reply(
    nursery: trio.Nursery, socket_path: str
) -> None:
    """One plugin exec, one connection (docs/protocol.md, cni_exec): the plugin waits for
    nothing more, and the slot is free at once."""
    handler = await start_server(nursery, socket_path)
    conn = await Conn.greeted(socket_path)
    assert isinstance(await conn.ask(CniExec(environ=b"CNI_COMMAND=DEL\0")), Vimages)
    assert await conn.receive() is None  # closed
    [(request, _)] = handler.seen
    assert request == CniExec(environ=b"CNI_COMMAND=DEL\0", stdin=b"")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="malformed-json"),
        pytest.param(b"", id="empty-body"),
        pytest.param(b"\xff\xfe\x00", id="not-utf8"),
        pytest.param(b"[1, 2]", id="not-an-object"),
        pytest.param(b'{"names": ["web"]}', id="no-op"),
        pytest.param(b'{"op": "status", "names": "web"}', id="wrong-type"),
        pytest.param(b'{"op": "frobnicate"}', id="unknown-op"),
        pytest.param(b'{"op": "list", "verbose": true}', id="unknown-field"),
        pytest.param(b'{"op": "status", "names": ["web\\n"]}', id="name-with-newline"),
        pytest.param(b'{"op": "status", "names": ["1234"]}', id="name-all-digits"),
        pytest.param(b"x" * MAX_FRAME, id="max-frame-of-garbage"),
    ],
)
async def test_bad_body_is_answered_and_connection_stays(
    nursery: trio.Nursery, socket_path: str, body: bytes
) -> None:
    handler = await start_server(nursery, socket_path)
    conn = await Conn.greeted(socket_path)
    await conn.send_body(body)
    reply = await conn.receive()
    assert isinstance(reply, Error)
    assert reply.code == "invalid_request"
    assert isinstance(await conn.ask(ListVimages()), Vimages)
    assert [request for request, _ in handler.seen] == [ListVimages()]


async def test_oversized_header_is_refused_and_closed(
    nursery: trio.Nursery, socket_path: str
) -> None:
    await start_server(nursery, socket_path)
    conn = await Conn.greeted(socket_path)
    await conn.stream.send_all(HEADER.pack(MAX_FRAME + 1))
    reply = await conn.receive()
    assert isinstance(reply, Error)
    assert reply.code == "frame_too_large"
    assert await conn.receive() is None
    assert isinstance(await (await Conn.greeted(socket_path)).ask(ListVimages()), Vimages)


async def test_half_closed_client_still_gets_its_reply(
    nursery: trio.Nursery, socket_path: str
) -> None:
    await start_server(nursery, socket_path)
    conn = await Conn.greeted(socket_path)
    await conn.stream.send_all(frame(ListVimages()))
    await conn.stream.send_eof()
    assert isinstance(await conn.receive(), Vimages)
    assert await conn.receive() is None


async def test_client_vanishing_mid_frame_leaves_server_serving(
    nursery: trio.Nursery, socket_path: str
) -> None:
    handler = await start_server(nursery, socket_path)
    conn = await Conn.greeted(socket_path)
    await conn.stream.send_all(frame(ListVimages())[:-3])
    with structlog.testing.capture_logs() as logs:
        await conn.stream.aclose()
        await trio.testing.wait_all_tasks_blocked()
    assert {"event": "connection.closed", "reason": "truncated_frame", "log_level": "info"} in logs
    assert handler.seen == []
    assert isinstance(await (await Conn.greeted(socket_path)).ask(ListVimages()), Vimages)


@pytest.mark.parametrize("sent", [b"", frame(ListVimages())[:6]], ids=["silent", "half-frame"])
async def test_idle_connection_is_closed(
    nursery: trio.Nursery, socket_path: str, autojump_clock: trio.testing.MockClock, sent: bytes
) -> None:
    await start_server(nursery, socket_path, limits=Limits(idle_timeout=60))
    with trio.fail_after(600):
        conn = await Conn.greeted(socket_path)
        before = trio.current_time()
        await conn.stream.send_all(sent)
        assert await conn.receive() is None
        assert trio.current_time() - before >= 60
        assert isinstance(await (await Conn.greeted(socket_path)).ask(ListVimages()), Vimages)


async def test_connection_cap_refuses_with_busy(nursery: trio.Nursery, socket_path: str) -> None:
    await start_server(nursery, socket_path, limits=Limits(max_connections=2, root_reserved=0))
    first = await Conn.greeted(socket_path)
    second = await Conn.greeted(socket_path)
    third = await Conn.open(socket_path)
    reply = await third.receive()
    assert isinstance(reply, Error)
    assert reply.code == "busy"
    assert await third.receive() is None
    assert isinstance(await second.ask(ListVimages()), Vimages)
    await first.stream.aclose()
    await trio.testing.wait_all_tasks_blocked()
    assert isinstance(await (await Conn.greeted(socket_path)).ask(ListVimages()), Vimages)


async def test_200_concurrent_clients_are_all_answered(
    nursery: trio.Nursery, socket_path: str
) -> None:
    await start_server(nursery, socket_path)
    replies: list[Reply | None] = []

    async def client() -> None:
        # FreeBSD refuses connects while the listen queue (kern.ipc.soacceptqueue, 128) is
        # full; retry as vimagectl does. Linux makes connect wait instead.
        for _ in range(100):
            try:
                conn = await Conn.greeted(socket_path)
                break
            except ConnectionRefusedError:
                await trio.sleep(0.01)
        replies.append(await conn.ask(ListVimages()))
        await conn.stream.aclose()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as clients:
            for _ in range(200):
                clients.start_soon(client)
    assert len(replies) == 200
    assert all(isinstance(reply, Vimages) for reply in replies)


async def test_handler_exception_becomes_internal_and_is_logged_once(
    nursery: trio.Nursery, socket_path: str
) -> None:
    await start_server(nursery, socket_path)
    conn = await Conn.greeted(socket_path)
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        reply = await conn.ask(Status(names=("boom",)))
    assert isinstance(reply, Error)
    assert reply.code == "internal"
    assert "secret detail" not in reply.message
    assert "Traceback" not in reply.message
    errors = [entry for entry in logs if entry["log_level"] == "error"]
    assert len(errors) == 1
    assert errors[0]["exc_info"] is True
    assert errors[0]["op"] == "status"
    done = [entry for entry in logs if entry["event"] == "request.done"]
    assert [(entry["op"], entry["outcome"]) for entry in done] == [("status", "internal")]
    assert isinstance(await conn.ask(ListVimages()), Vimages)


async def test_request_done_is_logged_with_peer_and_op(
    nursery: trio.Nursery, socket_path: str
) -> None:
    await start_server(nursery, socket_path)
    conn = await Conn.greeted(socket_path)
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        await conn.ask(ListVimages())
        await conn.send_body(b"{")
        await conn.receive()
    done = [entry for entry in logs if entry["event"] == "request.done"]
    assert [entry["outcome"] for entry in done] == ["ok", "invalid_request"]
    assert done[0]["op"] == "list"
    assert done[0]["uid"] == os.geteuid()
    assert done[0]["pid"] == os.getpid()
    assert isinstance(done[0]["ms"], float)


async def test_events_stream_until_client_leaves(nursery: trio.Nursery, socket_path: str) -> None:
    handler = await start_server(nursery, socket_path)
    conn = await Conn.greeted(socket_path)
    await conn.stream.send_all(frame(Events()))
    await trio.testing.wait_all_tasks_blocked()
    assert handler.subscribers == 1
    started = Event(time=1.5, event="vimage.started", name="web", data={"jid": 7})
    stopped = Event(time=2.5, event="vimage.stopped", name="web")
    await handler.publish.send(started)
    await handler.publish.send(stopped)
    assert await conn.receive() == started
    assert await conn.receive() == stopped
    await conn.stream.aclose()
    await trio.testing.wait_all_tasks_blocked()
    assert handler.subscribers == 0


async def test_events_end_closes_the_connection(nursery: trio.Nursery, socket_path: str) -> None:
    handler = await start_server(nursery, socket_path)
    conn = await Conn.greeted(socket_path)
    await conn.stream.send_all(frame(Events()))
    await trio.testing.wait_all_tasks_blocked()
    await handler.publish.aclose()
    with trio.fail_after(TIMEOUT):
        assert await conn.receive() is None
    assert handler.subscribers == 0


async def test_client_that_stops_reading_is_dropped(
    nursery: trio.Nursery, socket_path: str, autojump_clock: trio.testing.MockClock
) -> None:
    handler = await start_server(nursery, socket_path, limits=Limits(send_timeout=10))
    with trio.fail_after(600):
        conn = await Conn.greeted(socket_path)
        await conn.stream.send_all(frame(Events()))
        await trio.testing.wait_all_tasks_blocked()
        before = trio.current_time()
        bulky = Event(time=0.0, event="vimage.started", data={"blob": "x" * 65536})
        while handler.subscribers:  # the socket buffers fill, then the send times out
            with trio.move_on_after(1):  # the channel fills too once nobody drains it
                await handler.publish.send(bulky)
            await trio.testing.wait_all_tasks_blocked()
        assert trio.current_time() - before >= 10
        assert isinstance(await (await Conn.greeted(socket_path)).ask(ListVimages()), Vimages)


async def test_unreadable_peer_credentials_are_refused(
    nursery: trio.Nursery, socket_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unsupported(sock: object) -> Peer:
        raise OSError(errno.ENOTSUP, os.strerror(errno.ENOTSUP), "peer credentials")

    monkeypatch.setattr("vimaged.server.peer_credentials", unsupported)
    handler = await start_server(nursery, socket_path)
    conn = await Conn.open(socket_path)
    reply = await conn.receive()
    assert isinstance(reply, Error)
    assert (reply.code, reply.errno) == ("permission_denied", errno.ENOTSUP)
    assert await conn.receive() is None
    assert handler.seen == []


async def test_cancelling_serve_control_closes_listener(socket_path: str) -> None:
    listener = await open_control_listener(socket_path)
    async with trio.open_nursery() as handlers:
        async with trio.open_nursery() as main:
            await main.start(partial(serve_control, listener, Handler(), handler_nursery=handlers))
            conn = await Conn.greeted(socket_path)
            main.cancel_scope.cancel()
        with pytest.raises(ConnectionRefusedError):
            await Conn.open(socket_path)
        assert isinstance(await conn.ask(ListVimages()), Vimages)  # accepted ones live on
        handlers.cancel_scope.cancel()


# The listener.


async def test_listener_socket_is_0660_root_and_group(socket_dir: str, socket_path: str) -> None:
    group = grp.getgrnam("daemon")
    listener = await open_control_listener(socket_path, group="daemon")
    st = os.stat(socket_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (0, group.gr_gid)
    assert listener.admin_gid == group.gr_gid
    assert os.listdir(socket_dir) == ["vimaged.sock"]  # no temporary left behind
    await listener.aclose()


async def test_listener_refuses_to_replace_a_live_daemon(socket_path: str) -> None:
    live = await open_control_listener(socket_path)
    inode = os.stat(socket_path).st_ino
    with pytest.raises(DaemonRunningError) as raised:
        await open_control_listener(socket_path)
    assert raised.value.errno == errno.EADDRINUSE
    assert os.stat(socket_path).st_ino == inode
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_control, live, Handler(), handler_nursery=nursery))
        assert isinstance(await (await Conn.greeted(socket_path)).ask(ListVimages()), Vimages)
        nursery.cancel_scope.cancel()


async def test_listener_replaces_a_stale_socket(socket_dir: str, socket_path: str) -> None:
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(socket_path)  # the file of a daemon that died: bound, nobody listening
    stale = os.stat(socket_path).st_ino
    listener = await open_control_listener(socket_path)
    assert os.stat(socket_path).st_ino != stale
    assert os.listdir(socket_dir) == ["vimaged.sock"]
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_control, listener, Handler(), handler_nursery=nursery))
        assert isinstance(await (await Conn.greeted(socket_path)).ask(ListVimages()), Vimages)
        nursery.cancel_scope.cancel()


async def test_listener_leaves_a_non_socket_alone(socket_path: str) -> None:
    with open(socket_path, "w") as regular:  # noqa: ASYNC230  # test setup, nothing to wait on
        regular.write("not a socket")
    with pytest.raises(FileExistsError):
        await open_control_listener(socket_path)
    with open(socket_path) as regular:  # noqa: ASYNC230
        assert regular.read() == "not a socket"


async def test_listener_rejects_unknown_group(socket_dir: str, socket_path: str) -> None:
    with pytest.raises(ConfigError):
        await open_control_listener(socket_path, group="no_such_group_here")
    assert os.listdir(socket_dir) == []


async def test_listener_refuses_unusable_paths(socket_dir: str) -> None:
    with pytest.raises(FileNotFoundError):
        await open_control_listener(os.path.join(socket_dir, "missing", "vimaged.sock"))
    with pytest.raises(OSError, match=rf"^\[Errno {errno.ENAMETOOLONG}\]"):
        await open_control_listener(os.path.join(socket_dir, "x" * 100 + ".sock"))
    assert os.listdir(socket_dir) == []


async def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        Limits(max_connections=0)
    with pytest.raises(ValueError, match="idle_timeout"):
        Limits(idle_timeout=0)


# Peer credentials, with children running as uid 65534.

CHILD = """
import json, socket, struct, sys
sock = socket.socket(socket.AF_UNIX)
try:
    sock.connect(sys.argv[1])
except PermissionError:
    print(json.dumps("EACCES"))
    sys.exit()
def read():
    (n,) = struct.unpack(">I", sock.recv(4, socket.MSG_WAITALL))
    return json.loads(sock.recv(n, socket.MSG_WAITALL))
replies = [read()]
for body in sys.argv[2:]:
    sock.sendall(struct.pack(">I", len(body)) + body.encode())
    replies.append(read())
print(json.dumps(replies))
"""

LIST = '{"op": "list"}'
START = '{"op": "start", "names": ["web"]}'
CNI_EXEC = '{"op": "cni_exec", "environ": "", "stdin": ""}'  # it would run an IPAM plugin


@cache
def unprivileged_python() -> str | None:
    """A Python that uid 65534 can execute (a venv under /root is out of reach)."""
    for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        if not os.path.exists(candidate):
            continue
        try:
            probe = subprocess.run(
                [candidate, "-c", "pass"],
                user=NOBODY,
                group=NOBODY,
                extra_groups=[],
                cwd="/",
                capture_output=True,
                check=False,
            )
        except PermissionError:  # exec refused: not reachable by uid 65534
            continue
        if probe.returncode == 0:
            return candidate
    return None


@pytest.fixture
def admin_group() -> grp.struct_group:
    if os.geteuid() != 0:
        pytest.skip("switching to uid 65534 needs root")
    if unprivileged_python() is None:
        pytest.skip("no Python interpreter that uid 65534 may execute")
    return grp.getgrnam("daemon")


async def as_nobody(
    path: str, *bodies: str, gid: int = NOBODY, extra_groups: tuple[int, ...] = ()
) -> object:
    python = unprivileged_python()
    assert python is not None
    done = await trio.run_process(
        [python, "-c", CHILD, path, *bodies],
        user=NOBODY,
        group=gid,
        extra_groups=list(extra_groups),
        cwd="/",
        capture_stdout=True,
    )
    return json.loads(done.stdout)


async def test_unprivileged_peer_reads_but_may_not_mutate(
    nursery: trio.Nursery, socket_path: str, admin_group: grp.struct_group
) -> None:
    handler = await start_server(nursery, socket_path, group=admin_group.gr_name)
    os.chmod(socket_path, 0o666)  # an admin widened the mode; authorization must still hold
    with trio.fail_after(TIMEOUT):
        replies = await as_nobody(socket_path, LIST, START, CNI_EXEC)
    assert isinstance(replies, list)
    hello, listed, started, executed = replies
    assert hello["reply"] == "hello"
    assert listed["reply"] == "vimages"
    assert (started["reply"], started["code"]) == ("error", "permission_denied")
    assert (executed["reply"], executed["code"]) == ("error", "permission_denied")
    [(request, peer)] = handler.seen
    assert request == ListVimages()
    assert (peer.uid, peer.gid) == (NOBODY, NOBODY)


async def test_socket_mode_keeps_non_members_out(
    nursery: trio.Nursery, socket_path: str, admin_group: grp.struct_group
) -> None:
    await start_server(nursery, socket_path, group=admin_group.gr_name)
    with trio.fail_after(TIMEOUT):
        assert await as_nobody(socket_path, LIST) == "EACCES"


@pytest.mark.parametrize("membership", ["supplementary", "primary"])
async def test_group_member_may_mutate(
    nursery: trio.Nursery, socket_path: str, admin_group: grp.struct_group, membership: str
) -> None:
    handler = await start_server(nursery, socket_path, group=admin_group.gr_name)
    gid = admin_group.gr_gid
    with trio.fail_after(TIMEOUT):
        if membership == "primary":
            replies = await as_nobody(socket_path, START, gid=gid)
        else:
            # The list starts with the egid: FreeBSD before 15 makes setgroups(2)'s first
            # element the egid (cr_groups[0]), and the setgid that follows would overwrite it.
            replies = await as_nobody(socket_path, START, extra_groups=(NOBODY, gid))
    assert isinstance(replies, list)
    assert replies[1]["reply"] == "done"
    [(request, peer)] = handler.seen
    assert request == Start(names=("web",))
    assert peer.uid == NOBODY
    assert peer.in_group(gid)


async def test_a_stream_that_fails_midway_ends_with_its_error_and_the_connection_stays(
    nursery: trio.Nursery, socket_path: str
) -> None:
    await start_server(nursery, socket_path)
    conn = await Conn.greeted(socket_path)
    with trio.fail_after(TIMEOUT):
        await conn.stream.send_all(frame(ListVimages(stream=True)))
        web = VimageInfo(name="web", state="running", jid=7)
        assert await conn.receive() == VimagesPage(vimages=(web,))
        assert await conn.receive() == VimagesPage(vimages=(web,))
        error = await conn.receive()
        assert isinstance(error, Error)
        assert error.code == "not_found"
        assert isinstance(await conn.ask(ListVimages()), Vimages)  # the boundary held
