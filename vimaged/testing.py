"""Test doubles for code that drives vimaged's domain layer: public, importable in production.

Modelled on httpx's ``MockTransport`` and structlog's ``testing`` module: the seam is replaced,
nothing above it is. :class:`InProcessPlatform` is the ``sim`` platform with its transport cut
out: the RPC requests it would send go straight to the sim host's model (``SimHostServer`` and
``SimHost``, the same code ``python -m vimaged.simhost`` runs) in this process, its netgraph
messages straight to the model's ng_socket, with no subprocess and no socket. Every call is a
trio checkpoint and the model's clock is trio's, so the supervisor, health polls, restarts and
the return watcher run under ``trio.testing.MockClock(autojump_threshold=0)`` (pytest-trio's
``autojump_clock``): a dying jail that lingers 600 s costs no wall time.

The rest is what such a test needs beside it: a journal in memory that never leaves the trio
thread (a worker thread would let an autojump clock jump while it runs), an event hub that
records what was emitted, and :func:`open_supervisor` to run a Supervisor over them.

No pytest import: a downstream project's tests, or a REPL, can use this module as it is.
"""

from __future__ import annotations

import errno
import math
import os
import sqlite3
import struct
import sys
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import trio

from vimaged.events import EventHub
from vimaged.platforms.sim import SimOptions, SimPlatform, _expect
from vimaged.simhost import rpc
from vimaged.simhost.faults import parse_faults
from vimaged.simhost.host import DEFAULT_NICS, SIGKILL_STATUS, ExecScript
from vimaged.simhost.server import SimHostServer
from vimaged.state import Journal, _prepare
from vimaged.supervisor import Supervisor

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator, Mapping
    from pathlib import Path

    from vimaged.config import Config
    from vimaged.platforms.netgraph_bridges import NetgraphBridges
    from vimaged.simhost.host import SimHost
    from vimaged.simhost.ng_socket import SocketNode

P = ParamSpec("P")
R = TypeVar("R", bound=rpc.Reply)
T = TypeVar("T")

__all__ = [
    "InProcessPlatform",
    "ModelTransport",
    "RecordingEvents",
    "open_memory_journal",
    "open_supervisor",
]


class ModelTransport:
    """An ``NgTransport`` (vimaged.netgraph.transport) whose kernel is a sim host's netgraph
    model in this process: the ng_mesg bytes go to ``NgSocket.send`` unchanged, replies come
    back through the socket node's receive queue. Control socket only."""

    def __init__(self, platform: InProcessPlatform) -> None:
        self._platform = platform
        self._node: SocketNode | None = platform.host.ng.open_control()
        self._send, self._receive = trio.open_memory_channel[tuple[bytes, bytes]](math.inf)
        self._node.deliver = lambda sockaddr, message: self._send.send_nowait((message, sockaddr))

    async def _enter(self, what: str) -> SocketNode:
        await trio.lowlevel.checkpoint()
        self._platform._check_reachable()
        self._platform.host.tick()
        if self._node is None:
            raise trio.ClosedResourceError(f"netgraph socket is closed ({what})")
        return self._node

    async def bind(self, sockaddr: bytes) -> None:
        node = await self._enter("bind")
        with _as_errno("bind"):
            node.kernel.bind(node, sockaddr)

    async def sendto(self, message: bytes, sockaddr: bytes) -> None:
        node = await self._enter("sendto")
        with _as_errno("sendto"):
            node.kernel.send(node, sockaddr, message)

    async def recvfrom(self) -> tuple[bytes, bytes]:
        return await self._receive.receive()

    async def set_rcvbuf(self, size: int) -> None:
        node = await self._enter("setsockopt")
        if size == 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), "SO_RCVBUF 0")
        node.rcvbuf = size

    async def aclose(self) -> None:
        node, self._node = self._node, None
        if node is not None and node.kernel is self._platform.host.ng:
            node.kernel.close_socket(node, data=False)
        self._send.close()
        await trio.lowlevel.checkpoint()


@contextmanager
def _as_errno(what: str) -> Iterator[None]:
    """What the sim host's server makes of a malformed packet: EINVAL, as the kernel would."""
    try:
        yield
    except (ValueError, struct.error) as exc:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), what) from exc


class InProcessPlatform(SimPlatform):
    """The ``sim`` platform (``vimaged.platforms.sim.SimPlatform``) over a sim host model in
    this process; everything but the transport is SimPlatform's own code.

    ``nics``, ``kernel`` (FreeBSD release, 12 to 15) and ``faults`` (a ``--sim-faults`` spec,
    docs/sim.md) are the sim host's options. ``state_dir``: where the parent NICs' saved
    settings go (``<state_dir>/parents``) when a bridge is built; ``None`` leaves parent NICs
    as they are (they start down: bring one up with ``host.set_up(nic, True)``).

    Test-facing helpers: :attr:`host` (the model itself, for the truth: ``host.jails``,
    ``host.exec_log``), :meth:`set_faults`, :meth:`script`, :meth:`where`, :meth:`kill_jail`,
    :meth:`disconnect`/:meth:`reconnect`.
    """

    def __init__(
        self,
        *,
        nics: tuple[str, ...] = DEFAULT_NICS,
        kernel: int = 14,
        faults: str = "",
        state_dir: str | Path | None = None,
        bridge_mode: str = "classic",
    ) -> None:
        self.server = SimHostServer(nics=nics, kernel=kernel, faults=faults)
        self.host.clock = self.host.ng.clock = trio.current_time  # read only inside trio.run
        self._reachable = True
        self._parents_dir = None if state_dir is None else os.path.join(state_dir, "parents")
        options = SimOptions(
            sim_host="(in-process)",
            state_dir=str(state_dir or "(none)"),
            bridge_mode=bridge_mode,
        )
        super().__init__(options)
        self._started = True

    @property
    def host(self) -> SimHost:
        """The simulated host's model: jails, ifnets, faults, exec log, netgraph kernel."""
        return self.server.host

    # -- the transport, in process ---------------------------------------------------------

    def _new_bridges(self) -> NetgraphBridges:
        # The sim platform's own bridges with the transport swapped, and nothing else.
        bridges = super()._new_bridges()
        bridges._open_transport = self._open_model_transport
        if self._parents_dir is None:
            bridges._parents = None
        return bridges

    @asynccontextmanager
    async def _open_model_transport(self) -> AsyncIterator[ModelTransport]:
        self._check_reachable()
        transport = ModelTransport(self)
        try:
            yield transport
        finally:
            await transport.aclose()

    async def _ensure_host(self) -> None:
        self._check_reachable()

    async def _call(self, request: rpc.Request, kind: type[R]) -> R:
        await trio.lowlevel.checkpoint()
        self._check_reachable()
        return _expect(self.server.call(request), kind)

    async def _exec(
        self, jid: int, command: str, env: Mapping[str, str], output: int | None
    ) -> int:
        """``SimHostServer.run_exec`` without the socket: a scripted command takes its
        ``duration`` on trio's clock; removing its jail kills it (status 137), and so does
        cancelling the call (the caller went away)."""
        await trio.lowlevel.checkpoint()
        self._check_reachable()
        host = self.host
        host.tick()
        record, script = host.start_exec(jid, command, dict(env))
        if script is not None and script.duration > 0:
            with trio.CancelScope() as scope:
                record.cancel = scope.cancel
                try:
                    await trio.sleep(script.duration)
                except trio.Cancelled:
                    host.kill_exec(record)  # cancelled from outside: kill it, then go
                    raise
                finally:
                    record.cancel = None
        written = (script.output if script is not None else "").encode()
        fd = sys.stdout.fileno() if output is None else output
        while written:
            written = written[os.write(fd, written) :]
        if record.outcome == "killed":
            return SIGKILL_STATUS
        status = script.status if script is not None else 0
        host.finish_exec(record, status)
        return status

    # -- switches and queries for tests ----------------------------------------------------

    def _check_reachable(self) -> None:
        if not self._reachable:
            code = errno.ENOTCONN
            raise OSError(code, os.strerror(code), "sim host (in-process): disconnected")

    def disconnect(self) -> None:
        """Every call fails with ENOTCONN from now on, as over a lost connection to the host."""
        self._reachable = False

    def reconnect(self) -> None:
        """Calls reach the host again; :meth:`wait_reconnected` returns, as after a reconnect."""
        self._reachable = True
        self._lost_at = None  # as SimPlatform._reconnect leaves it
        self.reconnects += 1
        self._reconnected.set()
        self._reconnected = trio.Event()

    def set_faults(self, spec: str) -> None:
        """Replace the host's faults (docs/sim.md, e.g. ``"dying=600, reclaim_fail=2"``)."""
        self.host.set_faults(parse_faults(spec))

    def script(
        self, jail: str, match: str, *, status: int = 0, duration: float = 0.0, output: str = ""
    ) -> None:
        """Commands run in ``jail`` (``"*"``: any, ``""``: on the host) containing ``match``
        exit ``status`` after ``duration`` seconds, writing ``output``. The newest wins."""
        self.host.scripts.insert(0, ExecScript(jail, match, status, duration, output))

    def where(self, ifname: str) -> int | None:
        """Where ``ifname`` really is (``HOST_JID``, a jid, dying or not, or None), unlike
        :meth:`locate_ifnet`, which cannot look inside a dying jail."""
        self.host.tick()
        return self.host.locate(ifname)

    def kill_jail(self, name: str) -> int:
        """``jail -r NAME`` by someone else; returns the jid. ENOENT if no live jail has it."""
        self.host.tick()
        return self.host.kill_jail(name)

    def commands(self, jail: str | None = None) -> list[str]:
        """The commands run so far, oldest first; only those in ``jail`` if it is given."""
        return [r.command for r in self.host.exec_log if jail is None or r.jail == jail]


# -- journal and events --------------------------------------------------------------------


class _MemoryJournal(Journal):
    """``state.Journal`` on an in-memory SQLite database, run on the trio thread: the
    database work is instant, and never gives an autojump clock a moment to jump."""

    async def _run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        await trio.lowlevel.checkpoint()
        return fn(*args, **kwargs)


@asynccontextmanager
async def open_memory_journal(*, boot_id: str | None = None) -> AsyncIterator[Journal]:
    """A fresh journal (schema as ``Journal.open`` makes it) that lives as long as the block."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    _prepare(db, ":memory:")
    journal = _MemoryJournal(db, ":memory:", boot_id)
    try:
        yield journal
    finally:
        await journal.aclose()


class RecordingEvents(EventHub):
    """An ``EventHub`` that keeps every event it emits (as structlog's ``LogCapture`` keeps
    log entries): :attr:`events` holds ``(event, vimage, data)``. Only inside ``trio.run``."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, str | None, dict[str, Any]]] = []
        self.timed: list[tuple[float, str, str | None, dict[str, Any]]] = []
        """The same, each with ``trio.current_time()`` when it was emitted first."""
        self._changed = trio.Event()

    def emit(
        self, event: str, name: str | None = None, **data: str | int | float | bool | None
    ) -> None:
        super().emit(event, name, **data)
        self.events.append((event, name, dict(data)))
        self.timed.append((trio.current_time(), event, name, dict(data)))
        self._changed.set()
        self._changed = trio.Event()

    def names(self, vimage: str | None = None) -> list[str]:
        """The events emitted so far, in order; only ``vimage``'s if it is given."""
        return [e for e, name, _ in self.events if vimage is None or name == vimage]

    def count(self, event: str, vimage: str | None = None) -> int:
        return self.names(vimage).count(event)

    async def wait_for(self, event: str, vimage: str | None = None, *, count: int = 1) -> None:
        """Return once ``event`` (of ``vimage``, if given) was emitted ``count`` times in all.
        The caller owns the deadline (``with trio.fail_after(...)``)."""
        while self.count(event, vimage) < count:
            await self._changed.wait()


@asynccontextmanager
async def open_supervisor(
    cfg: Config,
    platform: InProcessPlatform,
    *,
    journal: Journal | None = None,
    events: RecordingEvents | None = None,
    boot: bool = True,
) -> AsyncIterator[Supervisor]:
    """Run ``Supervisor(cfg, platform, ...)`` (reconciled, its watchers and health polls
    going) for the block, over a memory journal and :class:`RecordingEvents` unless given;
    ``sup.events`` is the recorder. Cancelled, not stopped, at the end: a test stops what it
    started if it cares about the teardown."""
    async with open_memory_journal(boot_id=await platform.boot_id()) as memory:
        sup = Supervisor(cfg, platform, journal or memory, events or RecordingEvents())
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(sup.run, boot=boot))
            yield sup
            nursery.cancel_scope.cancel()
