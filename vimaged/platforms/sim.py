"""Platform layer, ``sim``: the Platform over a UNIX socket to the simulated FreeBSD host.

The host runs as its own process (``python -m vimaged.simhost``) so it outlives a killed daemon.
Calls share one RPC connection; each ``exec_in_jail`` has a connection of its own, so
cancelling it closes that connection and the sim host kills the command. Bridged ifnets are
:class:`~vimaged.platforms.netgraph_bridges.NetgraphBridges` over simulated netgraph sockets
(:mod:`vimaged.platforms.sim_transport`): the ng_mesg bytes go to the sim host's netgraph
model unchanged.

Options (``platforms.load("sim", ...)``): ``sim_host`` (socket of a running sim host; if
absent, one is started detached with socket ``<state_dir>/sim.sock`` unless one is live there),
``state_dir``, ``bridge_mode`` (``classic``/``uplink``, Config.bridge_mode), and for a started
host ``sim_nics``, ``sim_faults``, ``sim_kernel``.

A lost connection to the host (it was killed or restarted) is a platform error, ``OSError``
(ECONNRESET, ENOTCONN, ECONNREFUSED), never trio's stream errors: callers such as the health
poll carry on. Reconnection is attempted with exponential backoff (calls in between fail at
once with ENOTCONN); a host this platform started is started again. After a reconnection the
netgraph socket is reopened and :meth:`SimPlatform.wait_reconnected` returns, so the daemon
can look again at everything it runs.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import os
import sys
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import structlog
import trio

from vimaged.errors import PlatformError, error_text
from vimaged.framing import receive_frame
from vimaged.platforms import (
    HOST_JID,
    BridgedIfnet,
    BridgeInfo,
    IfnetInfo,
    JailInfo,
    LinkCounters,
    freebsd_routes,
    jail_inet,
)
from vimaged.platforms import freebsd_abi as abi
from vimaged.platforms.ifnet_events import open_reconnecting
from vimaged.platforms.jail_cni import JailCniMethods
from vimaged.platforms.netgraph_bridges import NetgraphBridges
from vimaged.platforms.parent_nics import ParentNics
from vimaged.platforms.sim_ifwatch import open_sim_source
from vimaged.platforms.sim_transport import open_sim_transport
from vimaged.simhost import rpc
from vimaged.sockets import socket_is_live

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
    from contextlib import AbstractAsyncContextManager

    from vimaged.netgraph.transport import NgTransport
    from vimaged.platforms import JailSpec
    from vimaged.platforms.ifnet_events import IfnetEvent

R = TypeVar("R", bound=rpc.Reply)
T = TypeVar("T")

DEFAULT_STATE_DIR = "/var/run/vimaged"
START_TIMEOUT = 15.0
"""How long a freshly started sim host may take to listen."""
START_POLL = 0.05
RPC_TIMEOUT = 60.0
"""How long one RPC (not an ``exec``, which has its own connection) waits for its reply."""
RECONNECT_FIRST_DELAY = 0.1
RECONNECT_MAX_DELAY = 5.0
"""Backoff between attempts to reach a sim host that went away, doubling from the first."""

_LOST_ERRNOS = frozenset(
    {errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.EPIPE, errno.ENOTCONN}
)
"""Errnos of a connection to the host that broke (not of a call the host refused)."""

log = structlog.get_logger()


def _spawn_detached(argv: list[str], log_path: str) -> int:
    """posix_spawn in a new session: no Popen object whose finalizer would warn or reap."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    return os.posix_spawn(sys.executable, argv, os.environ, file_actions=actions, setsid=True)


async def _exchange(stream: trio.SocketStream, request: rpc.Request) -> rpc.Reply:
    await stream.send_all(rpc.frame(request))
    body = await receive_frame(stream)
    if body is None:
        raise OSError(errno.ECONNRESET, "the sim host closed the connection")
    reply: rpc.Reply = rpc.REPLY_DECODER.decode(body)
    return reply


def _expect(reply: rpc.Reply, kind: type[R]) -> R:
    """The reply as ``kind``; the sim kernel's errno as OSError (PEP 3151 subclasses)."""
    if isinstance(reply, rpc.Failed):
        raise OSError(reply.errno, os.strerror(reply.errno), reply.message)
    if not isinstance(reply, kind):
        raise TypeError(f"the sim host answered {type(reply).__name__}, not {kind.__name__}")
    return reply


@dataclasses.dataclass
class SimOptions:
    sim_host: str | None = None
    state_dir: str = DEFAULT_STATE_DIR
    sim_nics: str | None = None
    sim_faults: str | None = None
    sim_kernel: str | None = None
    bridge_mode: str = "classic"


class _SimNicOps:
    """:class:`vimaged.platforms.parent_nics.NicOps` over the sim host's RPCs (SIOCGIFFLAGS and
    SIOCGIFCAP read from ``list_ifnets``, ``set_ifnet_up``, ``set_capabilities``)."""

    def __init__(self, platform: SimPlatform) -> None:
        self._platform = platform

    async def _record(self, ifname: str) -> rpc.IfnetRecord:
        reply = await self._platform._call(rpc.ListIfnets(jid=HOST_JID), rpc.Ifnets)
        for ifnet in reply.ifnets:
            if ifnet.name == ifname:
                return ifnet
        raise OSError(errno.ENXIO, os.strerror(errno.ENXIO), ifname)

    async def is_up(self, ifname: str) -> bool:
        return (await self._record(ifname)).up

    async def set_up(self, ifname: str, up: bool) -> None:
        await self._platform._call(rpc.SetIfnetUp(name=ifname, up=up), rpc.Ok)

    async def capabilities(self, ifname: str) -> tuple[int, int]:
        record = await self._record(ifname)
        return record.capabilities, record.capenable

    async def set_capabilities(self, ifname: str, enabled: int) -> None:
        await self._platform._call(rpc.SetCapabilities(name=ifname, enabled=enabled), rpc.Ok)


class SimPlatform(JailCniMethods):
    """The Platform protocol (``vimaged.platforms``) on a simulated FreeBSD host."""

    name = "sim"

    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self.socket_path = options.sim_host or os.path.join(options.state_dir, "sim.sock")
        self._start_lock = trio.Lock()
        self._started = False
        self.spawned_pid: int | None = None
        """The sim host this platform started, if it did (it is left running on purpose)."""
        self._rpc_lock = trio.Lock()
        self._stream: trio.SocketStream | None = None
        self._sandbox_lock = trio.Lock()  # vimaged-cni: one rename-and-move at a time
        self._bridges = self._new_bridges()
        self._lost_at: float | None = None
        """When the connection to the host was lost; ``None`` while connected."""
        self._retry_delay = RECONNECT_FIRST_DELAY
        self._next_attempt = -math.inf
        self._reconnected = trio.Event()
        self.reconnects = 0
        """How many times the connection was lost and found again."""

    def _new_bridges(self) -> NetgraphBridges:
        return NetgraphBridges(
            partial(open_sim_transport, self.socket_path),
            self.rename_ifnet,
            self.set_ifnet_up,
            bridge_mode=self.options.bridge_mode,
            parents=ParentNics(Path(self.options.state_dir) / "parents", _SimNicOps(self)),
        )

    # -- connection ------------------------------------------------------------------------

    async def _ensure_host(self) -> None:
        async with self._start_lock:
            if self._started:
                return
            if self._lost_at is not None:
                await self._reconnect()
                return
            if not await trio.to_thread.run_sync(socket_is_live, self.socket_path):
                if self.options.sim_host is not None:
                    raise PlatformError(f"no sim host listens on {self.socket_path}")
                await self._start_host()
            self._started = True

    async def _start_host(self) -> None:
        state_dir = self.options.state_dir
        argv = [sys.executable, "-m", "vimaged.simhost", "--socket", self.socket_path]
        if self.options.sim_nics is not None:
            argv += ["--sim-nics", self.options.sim_nics]
        if self.options.sim_faults:
            argv += ["--sim-faults", self.options.sim_faults]
        if self.options.sim_kernel:
            argv += ["--sim-kernel", self.options.sim_kernel]
        await trio.to_thread.run_sync(partial(os.makedirs, state_dir, exist_ok=True))
        log_path = os.path.join(state_dir, "simhost.log")
        self.spawned_pid = await trio.to_thread.run_sync(_spawn_detached, argv, log_path)
        for _ in range(int(START_TIMEOUT / START_POLL)):
            if await trio.to_thread.run_sync(socket_is_live, self.socket_path):
                return
            await trio.sleep(START_POLL)
        raise PlatformError(f"the sim host did not start; see {log_path}")

    def _connection_lost(self, exc: BaseException) -> OSError:
        """Record that the host is unreachable; the ``OSError`` to raise for ``exc``."""
        code = exc.errno if isinstance(exc, OSError) and exc.errno in _LOST_ERRNOS else None
        code = code or errno.ECONNRESET
        if self._lost_at is None:
            self._lost_at = trio.current_time()
            self._retry_delay = RECONNECT_FIRST_DELAY
            self._next_attempt = self._lost_at + self._retry_delay
            self._started = False
            log.warning("platform.connection_lost", socket=self.socket_path, error=error_text(exc))
        return OSError(code, os.strerror(code), f"sim host {self.socket_path}")

    async def _reconnect(self) -> None:
        """One attempt to reach the host again, if the backoff allows; OSError until then."""
        now = trio.current_time()
        if now < self._next_attempt:
            raise OSError(
                errno.ENOTCONN,
                os.strerror(errno.ENOTCONN),
                f"sim host {self.socket_path}: connection lost, retrying",
            )
        live = await trio.to_thread.run_sync(socket_is_live, self.socket_path)
        if not live and self.options.sim_host is None:
            try:
                await self._start_host()  # the host this platform started died: another one
                live = True
            except PlatformError:
                live = False
        if not live:
            self._retry_delay = min(RECONNECT_MAX_DELAY, self._retry_delay * 2)
            self._next_attempt = trio.current_time() + self._retry_delay
            code = errno.ECONNREFUSED
            raise OSError(code, os.strerror(code), f"sim host {self.socket_path}")
        async with self._rpc_lock:
            stream, self._stream = self._stream, None
            if stream is not None:
                with trio.CancelScope(shield=True):
                    await stream.aclose()
        stale, self._bridges = self._bridges, self._new_bridges()
        with trio.CancelScope(shield=True):
            await stale.aclose()
        lost_for = now - (self._lost_at or now)
        self._lost_at = None
        self._started = True
        self.reconnects += 1
        log.info("platform.reconnected", socket=self.socket_path, lost_for=round(lost_for, 3))
        self._reconnected.set()
        self._reconnected = trio.Event()

    async def wait_reconnected(self) -> None:
        """Return the next time the connection to the host is found again after a loss."""
        await self._reconnected.wait()

    async def _call(self, request: rpc.Request, kind: type[R]) -> R:
        await self._ensure_host()
        async with self._rpc_lock:
            try:
                if self._stream is None:
                    self._stream = await trio.open_unix_socket(self.socket_path)
                stream = self._stream
                try:
                    with trio.move_on_after(RPC_TIMEOUT) as waited:
                        reply = await _exchange(stream, request)
                    if waited.cancelled_caught:  # a safety net: a live host always answers
                        code = errno.ETIMEDOUT
                        what = f"sim host {self.socket_path}: {type(request).__name__}"
                        raise OSError(code, os.strerror(code), what)
                except BaseException:
                    # A half-done exchange leaves the framing unknown: the next call reconnects.
                    self._stream = None
                    with trio.CancelScope(shield=True):
                        await stream.aclose()
                    raise
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise self._connection_lost(exc) from exc
            except OSError as exc:
                if exc.errno in (*_LOST_ERRNOS, errno.ENOENT):  # ENOENT: no socket file
                    raise self._connection_lost(exc) from exc
                raise
        return _expect(reply, kind)

    async def _netgraph(self, call: Callable[[NetgraphBridges], Awaitable[T]]) -> T:
        """A call on the bridges' netgraph socket, its connection errors mapped as ``_call``'s.

        ENOENT is netgraph's own answer there (no such node), so it does not mean lost.
        """
        await self._ensure_host()
        try:
            return await call(self._bridges)
        except trio.BrokenResourceError as exc:
            raise self._connection_lost(exc) from exc
        except trio.ClosedResourceError:
            # a socket closed by a reconnection under this call
            code = errno.ENOTCONN
            raise OSError(code, os.strerror(code), "simulated netgraph socket") from None
        except OSError as exc:
            # ENOTCONN here is netgraph's own answer (a hook not connected: ng_bridge getstats
            # of an eiface cut from its bridge), never a lost host: that is ECONNRESET.
            if exc.errno in _LOST_ERRNOS and exc.errno != errno.ENOTCONN:
                raise self._connection_lost(exc) from exc
            raise

    # -- Platform --------------------------------------------------------------------------

    async def preflight(self) -> None:
        await self._ensure_host()

    async def host_uuid(self) -> str:
        return (await self._call(rpc.GetHostUuid(), rpc.HostUuid)).uuid

    async def boot_id(self) -> str:
        return (await self._call(rpc.GetBootId(), rpc.BootId)).boot_id

    async def create_jail(self, spec: JailSpec) -> int:
        request = rpc.CreateJail(name=spec.name, hostname=spec.hostname, path=spec.path, vnet=True)
        return (await self._call(request, rpc.Jid)).jid

    async def remove_jail(self, jid: int) -> None:
        await self._call(rpc.RemoveJail(jid=jid), rpc.Ok)

    async def list_jails(self) -> list[JailInfo]:
        reply = await self._call(rpc.ListJails(), rpc.Jails)
        return [JailInfo(jid=j.jid, name=j.name, dying=j.dying) for j in reply.jails]

    async def jail_info(self, jid: int) -> JailInfo | None:
        reply = await self._call(rpc.GetJail(jid=jid), rpc.Jails)
        return next((JailInfo(jid=j.jid, name=j.name, dying=j.dying) for j in reply.jails), None)

    async def exec_in_jail(self, jid: int, command: str, *, output: int | None = None) -> int:
        return await self._exec(jid, command, {}, output)

    async def exec_on_host(
        self, command: str, *, env: Mapping[str, str], output: int | None = None
    ) -> int:
        return await self._exec(HOST_JID, command, env, output)

    async def _exec(
        self, jid: int, command: str, env: Mapping[str, str], output: int | None
    ) -> int:
        await self._ensure_host()
        # A connection of its own: on cancellation it closes, and the sim kills the command.
        try:
            async with await trio.open_unix_socket(self.socket_path) as stream:
                reply = await _exchange(stream, rpc.Exec(jid=jid, command=command, env=dict(env)))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise self._connection_lost(exc) from exc
        except OSError as exc:
            if exc.errno in (*_LOST_ERRNOS, errno.ENOENT):
                raise self._connection_lost(exc) from exc
            raise
        exited = _expect(reply, rpc.ExitStatus)
        if exited.output:
            # What the simulated command wrote, where a real one's stdout would have gone.
            written = exited.output.encode()
            fd = sys.stdout.fileno() if output is None else output
            while written:
                written = written[os.write(fd, written) :]
        return exited.status

    async def list_ifnets(self, jid: int = HOST_JID) -> list[IfnetInfo]:
        if jid != HOST_JID and not await self._attachable(jid):
            # Looking inside means jail_attach(2), which refuses absent and dying jails.
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), f"jail {jid}")
        reply = await self._call(rpc.ListIfnets(jid=jid), rpc.Ifnets)
        return [
            IfnetInfo(name=i.name, mac=i.mac, up=i.up, addresses=tuple(i.addresses), mtu=i.mtu)
            for i in reply.ifnets
        ]

    async def locate_ifnet(self, ifname: str) -> int | None:
        where = (await self._call(rpc.LocateIfnet(name=ifname), rpc.Location)).jid
        if where in (None, HOST_JID) or await self._attachable(where):
            return where
        return None  # as on FreeBSD: a dying jail cannot be entered to look

    async def _attachable(self, jid: int) -> bool:
        jail = await self.jail_info(jid)
        return jail is not None and not jail.dying

    async def move_ifnet(self, ifname: str, jid: int) -> None:
        await self._call(rpc.MoveIfnet(name=ifname, jid=jid), rpc.Ok)

    async def reclaim_ifnet(self, ifname: str, jid: int) -> None:
        await self._call(rpc.ReclaimIfnet(name=ifname, jid=jid), rpc.Ok)

    async def rename_ifnet(self, ifname: str, newname: str) -> None:
        await self._call(rpc.RenameIfnet(name=ifname, newname=newname), rpc.Ok)

    async def set_ifnet_up(self, ifname: str) -> None:
        """``ifconfig IF up`` on the host: for the bridge code and tests, not on ``Platform``."""
        await self._call(rpc.SetIfnetUp(name=ifname, up=True), rpc.Ok)

    async def create_bridged_ifnet(self, parent: str, ifname: str, mac: str) -> None:
        await self._netgraph(lambda bridges: bridges.create(parent, ifname, mac))

    async def destroy_bridged_ifnet(self, ifname: str) -> str | None:
        return await self._netgraph(lambda bridges: bridges.destroy(ifname))

    async def list_bridged_ifnets(self) -> list[BridgedIfnet]:
        # jid left None, as on FreeBSD: locating each one would cost two RPCs per interface
        return await self._netgraph(lambda bridges: bridges.list())

    async def reconcile_strays(self) -> list[BridgedIfnet]:
        return await self._netgraph(lambda bridges: bridges.reconcile_strays())

    async def list_bridges(self) -> list[BridgeInfo]:
        return await self._netgraph(lambda bridges: bridges.bridges())

    async def bridged_ifnet_stats(self, ifname: str) -> LinkCounters:
        return await self._netgraph(lambda bridges: bridges.link_counters(ifname))

    # -- interface arrival and departure (platforms/sim_ifwatch.py) ------------------------
    def watch_ifnets(self) -> AbstractAsyncContextManager[AsyncIterator[IfnetEvent]]:
        return open_reconnecting(
            partial(open_sim_source, self.socket_path), what=f"sim host {self.socket_path}"
        )

    # -- end of interface arrival and departure ---------------------------------------------

    @asynccontextmanager
    async def open_netgraph(self) -> AsyncIterator[NgTransport]:
        """A simulated netgraph socket on this host, for the dev tool."""
        await self._ensure_host()
        async with open_sim_transport(self.socket_path) as transport:
            yield transport

    async def aclose(self) -> None:
        await self._bridges.aclose()
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.aclose()

    # -- CNI attachments (vimaged-cni): the sandbox is a VNET jail; create, inspect and detach
    # are JailCniMethods'

    async def configure_in_jail(self, jid: int, inet: jail_inet.InetPlan) -> None:
        """What jail_inet's child does on FreeBSD, one modelled call per ioctl or RTM_ADD."""
        name = inet.ifname
        if inet.mac is not None:  # the child's check (jail_inet.apply_here), by getifaddrs
            here = (await self._call(rpc.ListIfnets(jid=jid), rpc.Ifnets)).ifnets
            if not any(i.name == name and i.mac == inet.mac for i in here):
                raise OSError(errno.ENXIO, os.strerror(errno.ENXIO), name)
        if inet.mtu is not None:
            await self._call(rpc.SetIfnetMtu(name=name, mtu=inet.mtu, jid=jid), rpc.Ok)
        for cidr in inet.addresses:
            await self._call(rpc.AddInetAddress(name=name, address=cidr, jid=jid), rpc.Ok)
        for dst, gw in inet.routes:
            via = name if gw is None else None
            await self._call(rpc.AddRoute(dst=dst, gateway=gw, via=via, jid=jid), rpc.Ok)

    async def inspect_in_jail(self, jid: int, ifname: str) -> IfnetInfo | None:
        """What the address child does on FreeBSD given a name: getifaddrs(3), then sysctl
        NET_RT_DUMP per family, whose bytes freebsd_routes reads, as it does there."""
        if not await self._attachable(jid):  # jail_attach(2)
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), f"jail {jid}")
        here = (await self._call(rpc.ListIfnets(jid=jid), rpc.Ifnets)).ifnets
        i = next((i for i in here if i.name == ifname), None)
        if i is None:
            return None
        routes: list[tuple[str, str | None]] = []
        for family in (abi.AF_INET, abi.AF_INET6):
            dump = await self._call(rpc.SysctlRtDump(family=family, jid=jid), rpc.SysctlData)
            routes += [
                (d, g) for n, d, g in freebsd_routes.parse_rt_dump(dump.data) if n == i.index
            ]
        return IfnetInfo(name=i.name, mac=i.mac, up=i.up, addresses=tuple(i.addresses),
                         mtu=i.mtu, routes=tuple(routes))  # fmt: skip


def create(**options: str) -> SimPlatform:
    """``platforms.load("sim", **options)``; unknown options are an error naming them."""
    known = {f.name for f in dataclasses.fields(SimOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown sim platform option(s): {', '.join(unknown)}")
    return SimPlatform(SimOptions(**options))
