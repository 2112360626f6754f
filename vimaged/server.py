"""Control socket server: the daemon's end of docs/protocol.md (control layer, trio).

:func:`open_control_listener` (vimaged/listener.py) binds the AF_UNIX socket without ever taking
it from a live daemon;
:func:`serve_control` accepts connections and runs one task per connection in the handler
nursery it is given (the daemon cancels that nursery last, with a grace deadline, so in-flight
requests may finish). Each connection: peer credentials read once, ``Hello``, then length-prefixed
requests answered in order by a :class:`Handler` (vimaged/dispatch.py implements it). The server
decodes, authorizes, enforces :class:`Limits` and logs one ``request.done`` line per request; the
handler maps domain errors to ``Error`` replies, and whatever still escapes it becomes
``Error(code="internal")`` here, logged once with its traceback, never sent.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, Protocol

import msgspec
import structlog
import trio

from vimaged import __version__
from vimaged.errors import VimagedError
from vimaged.listener import (  # re-exported: the daemon and tests import them from here
    ControlListener,
    DaemonRunningError,
    admin_gid,
    open_control_listener,
)
from vimaged.peercred import Peer, peer_credentials
from vimaged.protocol import (
    FEATURES,
    HEADER,
    MAX_FRAME,
    MAX_NESTING,
    MUTATING,
    PROTOCOL_VERSION,
    REQUEST_DECODER,
    CniExec,
    Error,
    Events,
    Hello,
    Reply,
    frame,
    frame_length,
    nests_deeper_than,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator
    from contextlib import AbstractAsyncContextManager

    from vimaged.metrics import RequestTimes
    from vimaged.protocol import AnyRequest, Event

__all__ = [
    "ControlListener",
    "DaemonRunningError",
    "Handler",
    "Limits",
    "admin_gid",
    "may_mutate",
    "open_control_listener",
    "serve_control",
]

log = structlog.get_logger()

ACCEPT_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
"""accept(2) failures that pass once a connection closes (trio.serve_listeners sleeps too)."""
ACCEPT_RETRY_DELAY = 0.1


class Handler(Protocol):
    """What the server calls; vimaged/dispatch.py implements it.

    ``handle`` gets every decoded request except ``events``, already authorized, and returns the
    reply. It should map errors to ``Error`` itself (``VimagedError.code``, ``os_error`` with
    ``errno``); an exception escaping it is logged once and answered ``Error(code="internal")``.
    The server binds ``conn``, ``uid``, ``pid``, ``op`` and ``req`` in structlog's contextvars
    around the call and logs ``request.done`` itself, so the handler should not.

    A streamed listing is answered with an async generator instead of a reply: the frames to
    send in order, a ``Reply`` or an encoded body each (``protocol.vimages_pages``); an
    exception from it ends the stream with an ``Error`` (``VimagedError.code`` or
    ``internal``).

    ``events`` is entered once per ``events`` subscription; each ``Event`` it yields is sent to
    that client until the client closes its end, or the iterator ends (the daemon is stopping),
    which closes the connection.
    """

    async def handle(
        self, request: AnyRequest, peer: Peer
    ) -> Reply | AsyncGenerator[bytes | Reply, None]: ...

    def events(self) -> AbstractAsyncContextManager[AsyncIterator[Event]]: ...


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Resource limits of the control server.

    Attributes:
        max_connections: open connections at once; one more gets ``Error(code="busy")`` and a
            close.
        idle_timeout: seconds a connection may take to deliver its next whole frame (after
            ``Hello`` or the previous reply); a silent or half-sent frame is then dropped.
        send_timeout: seconds a client may take to read one reply or event before it is
            dropped, so a client that stops reading cannot hold a handler.
        root_reserved: of ``max_connections``, slots only uid 0 may take, so idle unprivileged
            clients cannot lock root's vimagectl out.
        max_per_uid: open connections one non-root uid may hold at once.
        session_timeout: seconds a connection may stay open for requests, however often it
            sends them (a frame every minute must not hold a slot forever); it is closed
            between requests once this passes. An ``events`` subscription is not bounded.
    """

    max_connections: int = 256
    idle_timeout: float = 60.0
    send_timeout: float = 10.0
    root_reserved: int = 16
    max_per_uid: int = 32
    session_timeout: float = 600.0

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {self.max_connections}")
        if not 0 <= self.root_reserved < self.max_connections:
            raise ValueError(
                f"root_reserved must be in 0..max_connections-1, got {self.root_reserved}"
            )
        if self.max_per_uid < 1:
            raise ValueError(f"max_per_uid must be at least 1, got {self.max_per_uid}")
        for name in ("idle_timeout", "send_timeout", "session_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


def may_mutate(peer: Peer, gid: int) -> bool:
    """Root, or a process whose effective or supplementary groups include ``gid``."""
    return peer.uid == 0 or peer.in_group(gid)


async def serve_control(
    listener: ControlListener,
    handler: Handler,
    *,
    handler_nursery: trio.Nursery,
    limits: Limits = Limits(),  # frozen, so one shared default is safe
    request_times: RequestTimes | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Accept control connections forever; run under ``nursery.start``.

    Args:
        listener: from :func:`open_control_listener`, whose group (and root) may send
            mutating requests; closed when this returns.
        handler: answers the requests (see :class:`Handler`).
        handler_nursery: where connection tasks run; they outlive the accept loop so in-flight
            requests can finish during shutdown.
        limits: connection cap and timeouts.
        request_times: where each decoded request's latency and outcome go as it is answered
            (``metrics``; vimaged/metrics.py), except ``events``, which lasts as its client does.

    Cancellation:
        Cancelling stops accepting and closes the listener; connections already accepted live in
        ``handler_nursery`` and are not affected.
    """
    server = _Server(
        handler=handler, gid=listener.admin_gid, limits=limits, request_times=request_times
    )
    conn_ids = itertools.count(1)
    try:
        task_status.started()
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in ACCEPT_RESOURCE_ERRNOS:
                    raise
                log.error("accept.failed", errno=exc.errno, error=exc.strerror)
                await trio.sleep(ACCEPT_RETRY_DELAY)
                continue
            conn = next(conn_ids)
            if server.open >= limits.max_connections:
                busy = f"{limits.max_connections} connections open; try again later"
                handler_nursery.start_soon(server.refuse_busy, stream, conn, busy)
            else:
                server.open += 1
                handler_nursery.start_soon(server.serve_connection, stream, conn)
    finally:
        with trio.CancelScope(shield=True):
            await listener.aclose()


class _FrameTooLargeError(Exception):
    pass


class _TruncatedFrameError(Exception):
    pass


class _FrameReader:
    """Length-prefixed frames off a stream; refuses an oversized one from its header alone."""

    CHUNK = 65536

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def _fill(self, size: int) -> bool:
        while len(self._buffer) < size:
            chunk = await self._stream.receive_some(self.CHUNK)
            if not chunk:
                return False
            self._buffer += chunk
        return True

    async def receive_frame(self) -> bytes | None:
        """The next frame's body, or None if the peer closed between frames.

        Raises:
            _FrameTooLargeError: the header announces more than MAX_FRAME.
            _TruncatedFrameError: the peer closed in the middle of a frame.
        """
        if not await self._fill(HEADER.size):
            if self._buffer:
                raise _TruncatedFrameError
            return None
        try:
            length = frame_length(bytes(self._buffer[: HEADER.size]))
        except ValueError:
            raise _FrameTooLargeError from None
        end = HEADER.size + length
        if not await self._fill(end):
            raise _TruncatedFrameError
        body = bytes(self._buffer[HEADER.size : end])
        del self._buffer[:end]
        return body

    async def wait_for_anything(self) -> None:
        """Return once the peer closes or sends anything (it must not while subscribed)."""
        if not self._buffer:
            await self._stream.receive_some(1)


@dataclass(kw_only=True)
class _Server:
    handler: Handler
    gid: int
    limits: Limits
    request_times: RequestTimes | None = None

    def __post_init__(self) -> None:
        self.open = 0  # connections counted against max_connections (the accept loop's)
        self.unprivileged = 0  # of those, admitted for a non-root peer
        self.by_uid: Counter[int] = Counter()

    async def refuse_busy(self, stream: trio.SocketStream, conn: int, message: str) -> None:
        log.warning("connection.refused", conn=conn, reason="busy")
        try:
            await _send(stream, Error(code="busy", message=message), self.limits)
        except Exception:
            log.exception("connection.crashed", conn=conn)
        finally:
            await trio.aclose_forcefully(stream)

    def _admission(self, peer: Peer) -> str | None:
        """Why ``peer`` may not take a slot now, or None; root always may (it got one)."""
        limits = self.limits
        if peer.uid == 0:
            return None
        if self.unprivileged >= limits.max_connections - limits.root_reserved:
            return (
                f"{self.unprivileged} unprivileged connections open, the rest are kept for "
                "root; try again later"
            )
        if self.by_uid[peer.uid] >= limits.max_per_uid:
            return f"uid {peer.uid} already has {limits.max_per_uid} connections open"
        return None

    async def serve_connection(self, stream: trio.SocketStream, conn: int) -> None:
        # trio gives each task a copy of the spawner's context: these bindings stay here.
        structlog.contextvars.bind_contextvars(conn=conn)
        peer: Peer | None = None
        try:
            try:
                peer = peer_credentials(stream.socket)
            except OSError as exc:
                log.warning("connection.refused", reason="peer_credentials", errno=exc.errno)
                refused = Error(
                    code="permission_denied",
                    message=f"cannot read peer credentials: {exc.strerror}",
                    errno=exc.errno,
                )
                await _send(stream, refused, self.limits)
                return
            structlog.contextvars.bind_contextvars(uid=peer.uid, pid=peer.pid)
            busy = self._admission(peer)
            if busy is not None:
                peer = None  # counted nowhere
                log.warning("connection.refused", reason="busy")
                await _send(stream, Error(code="busy", message=busy), self.limits)
                return
            if peer.uid != 0:
                self.unprivileged += 1
                self.by_uid[peer.uid] += 1
            log.debug("connection.opened", gid=peer.gid)
            await _Connection(self, stream, peer).run()
        except Exception:
            # A bug here must cost one connection, never the handler nursery (the daemon).
            log.exception("connection.crashed")
        finally:
            self.open -= 1
            if peer is not None and peer.uid != 0:
                self.unprivileged -= 1
                self.by_uid[peer.uid] -= 1
                if not self.by_uid[peer.uid]:
                    del self.by_uid[peer.uid]
            await trio.aclose_forcefully(stream)


class _Connection:
    def __init__(self, server: _Server, stream: trio.SocketStream, peer: Peer) -> None:
        self._server = server
        self._stream = stream
        self._peer = peer
        self._reader = _FrameReader(stream)
        self._request_ids = itertools.count(1)

    async def run(self) -> None:
        limits = self._server.limits
        session_ends = trio.current_time() + limits.session_timeout
        if not await self.send(
            Hello(protocol=PROTOCOL_VERSION, daemon=__version__, features=FEATURES)
        ):
            return
        while True:
            with trio.move_on_at(
                min(trio.current_time() + limits.idle_timeout, session_ends)
            ) as idle:
                try:
                    body = await self._reader.receive_frame()
                except _FrameTooLargeError:
                    log.warning("connection.closed", reason="frame_too_large")
                    await self.send(
                        Error(
                            code="frame_too_large",
                            message=f"frame exceeds MAX_FRAME ({MAX_FRAME} bytes); closing",
                        )
                    )
                    return
                except _TruncatedFrameError:
                    log.info("connection.closed", reason="truncated_frame")
                    return
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    log.debug("connection.lost")
                    return
            if idle.cancelled_caught:
                expired = trio.current_time() >= session_ends
                log.info(
                    "connection.closed", reason="session_timeout" if expired else "idle_timeout"
                )
                return
            if body is None:
                log.debug("connection.closed", reason="peer_closed")
                return
            if not await self._answer(body):
                return

    async def _answer(self, body: bytes) -> bool:
        """Decode, authorize and answer one frame; False once the connection should close."""
        started = time.perf_counter()
        req = next(self._request_ids)
        try:
            if nests_deeper_than(body):
                raise msgspec.DecodeError(
                    f"request nests deeper than {MAX_NESTING} levels or its brackets do not pair"
                )
            request = REQUEST_DECODER.decode(body)
        except Exception as exc:
            if isinstance(exc, msgspec.DecodeError):
                # Covers ValidationError: bad JSON, wrong types, unknown op or field, bad names.
                reply: Reply = Error(code="invalid_request", message=str(exc))
            else:  # a decoder bug (RecursionError was one): the frame boundary still holds
                with structlog.contextvars.bound_contextvars(req=req):
                    log.exception("request.crashed")
                reply = Error(code="internal", message="internal error; see the daemon log")
            with structlog.contextvars.bound_contextvars(req=req):
                return await self._reply(reply, started)
        op = request.__struct_config__.tag
        with structlog.contextvars.bound_contextvars(op=op, req=req):
            if type(request) in MUTATING and not may_mutate(self._peer, self._server.gid):
                reply = Error(
                    code="permission_denied",
                    message=f"{op} needs uid 0 or membership of gid {self._server.gid}",
                )
            elif isinstance(request, Events):
                await self._stream_events()
                log.info("request.done", outcome="ok", ms=_ms_since(started))
                return False
            else:
                try:
                    answer = await self._server.handler.handle(request, self._peer)
                except Exception:
                    log.exception("request.crashed")
                    answer = Error(code="internal", message="internal error; see the daemon log")
                if not isinstance(answer, Reply):
                    return await self._stream_reply(answer, started, str(op))
                reply = answer
            sent = await self._reply(reply, started, str(op))
            return sent and not isinstance(request, CniExec)  # a plugin exec: one per connection

    async def _stream_reply(
        self, frames: AsyncGenerator[bytes | Reply, None], started: float, op: str
    ) -> bool:
        """Send a streamed reply frame by frame (docs/protocol.md, Streams): the handler builds
        the next frame only once the previous one is sent, so a listing of 100,000 vimages
        is never held whole. A failure mid-stream ends it with an ``Error`` frame; the frame
        boundary holds, so the connection stays."""
        async with contextlib.aclosing(frames):
            try:
                async for message in frames:
                    if not await self.send(message):
                        return False
            except Exception as exc:
                if isinstance(exc, VimagedError):
                    error = Error(code=exc.code, message=str(exc))
                else:
                    log.exception("request.crashed")
                    error = Error(code="internal", message="internal error; see the daemon log")
                return await self._reply(error, started, op)
        log.info("request.done", outcome="ok", ms=_ms_since(started))
        if self._server.request_times is not None:  # metrics (issue 13)
            self._server.request_times.observe(op, "ok", time.perf_counter() - started)
        return True

    async def _reply(self, reply: Reply, started: float, op: str | None = None) -> bool:
        # Logged before sending, so the line exists by the time the client has its answer.
        outcome = reply.code if isinstance(reply, Error) else "ok"
        log.info("request.done", outcome=outcome, ms=_ms_since(started))
        if op is not None and self._server.request_times is not None:  # metrics (issue 13)
            self._server.request_times.observe(op, outcome, time.perf_counter() - started)
        return await self.send(reply)

    async def send(self, message: Reply | bytes) -> bool:
        return await _send(self._stream, message, self._server.limits)

    async def _stream_events(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._cancel_when_client_leaves, nursery.cancel_scope)
            try:
                async with self._server.handler.events() as events:
                    async for event in events:
                        if not await self.send(event):
                            break
            except Exception:
                log.exception("events.crashed")
                await self.send(Error(code="internal", message="event stream failed"))
            nursery.cancel_scope.cancel()

    async def _cancel_when_client_leaves(self, scope: trio.CancelScope) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._reader.wait_for_anything()
        scope.cancel()


async def _send(stream: trio.SocketStream, message: Reply | bytes, limits: Limits) -> bool:
    """Send one frame (a reply, or a body already encoded: a listing's page); False if the
    client is gone or slower than ``limits.send_timeout``."""
    try:
        if isinstance(message, bytes):
            if len(message) > MAX_FRAME:
                raise ValueError(f"frame of {len(message)} bytes exceeds MAX_FRAME")
            data = HEADER.pack(len(message)) + message
        else:
            data = frame(message)
    except ValueError as exc:  # protocol.frame: larger than MAX_FRAME
        log.warning("reply.too_large", reply=type(message).__name__, error=str(exc))
        data = frame(
            Error(
                code="reply_too_large",
                message=f"the reply exceeds MAX_FRAME ({MAX_FRAME} bytes); ask for fewer names",
            )
        )
    except (msgspec.EncodeError, TypeError) as exc:
        log.error("reply.unencodable", reply=type(message).__name__, error=str(exc))
        data = frame(Error(code="internal", message="reply could not be encoded"))
    with trio.move_on_after(limits.send_timeout):
        try:
            await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            log.debug("connection.lost")
            return False
        return True
    log.warning("connection.closed", reason="send_timeout")
    return False


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
