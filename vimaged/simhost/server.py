"""Simulated host layer: the sim host process's two servers.

``serve_simhost`` listens on the RPC stream socket ``PATH`` and on ``PATH + .ng``, where every
``SOCK_SEQPACKET`` connection is one simulated netgraph socket (framing in ``wire.py``). One trio
task per connection; the model itself is synchronous, so each request runs to completion
without interleaving, as a kernel call holding its locks would.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import signal
import socket
import struct
from typing import TYPE_CHECKING

import msgspec
import structlog
import trio

from vimaged.framing import receive_frame
from vimaged.simhost import rpc, wire
from vimaged.simhost.faults import parse_faults
from vimaged.simhost.host import SIGKILL_STATUS, ExecScript, SimHost, mac_text
from vimaged.simhost.hotplug import plug_nic, unplug_nic
from vimaged.simhost.ng_socket import SB_MAX_ADJ, SocketNode
from vimaged.sockets import socket_is_live

if TYPE_CHECKING:
    from vimaged.simhost.host import ExecRecord

log = structlog.get_logger()

WATCH_MAX_WAIT = 30.0
"""The longest a ``watch_ifnets`` long poll is held before an empty answer."""


class SimHostServer:
    """The host model plus what a reset needs to rebuild it."""

    def __init__(
        self,
        *,
        nics: tuple[str, ...],
        kernel: int,
        faults: str,
        wires: tuple[tuple[str, ...], ...] = (),
    ) -> None:
        self.nics = nics
        self.kernel = kernel
        self.wires = wires
        self.host = SimHost(nics=nics, kernel=kernel, faults=parse_faults(faults), wires=wires)
        self.host_uuid = self.host.host_uuid
        """kern.hostuuid of this sim instance; a reset undoes what a test set."""
        self._ifnet_changed = trio.Event()
        self.host.ifnet_log.on_notice = self._wake_watchers

    def reset(self, request: rpc.Reset) -> None:
        nics = tuple(request.nics) if request.nics is not None else self.nics
        kernel = request.kernel if request.kernel is not None else self.kernel
        wires = tuple(tuple(w) for w in request.wires) if request.wires is not None else self.wires
        new = SimHost(nics=nics, kernel=kernel, faults=parse_faults(request.faults), wires=wires)
        new.host_uuid = self.host_uuid
        old = self.host
        for record in old.exec_log:
            old.kill_exec(record)
        for node in old.ng.nodes.values():
            # Sockets still open on the old kernel now talk to nothing: ENOTCONN.
            node.valid = False
            if isinstance(node, SocketNode):
                node.deliver = node.deliver_data = None
        self.host = new
        new.ifnet_log.on_notice = self._wake_watchers
        self._wake_watchers()  # a reboot: every watcher has lost its place

    # -- RPC -------------------------------------------------------------------------------

    def call(self, request: rpc.Request) -> rpc.Reply:
        """Every request except Exec; OSError becomes ``Failed``."""
        host = self.host
        host.tick()
        try:
            return self._call(host, request)
        except OSError as exc:
            return _failed(exc)
        except ValueError as exc:
            return rpc.Failed(errno=errno.EINVAL, message=str(exc))

    def _call(self, host: SimHost, request: rpc.Request) -> rpc.Reply:
        match request:
            case rpc.GetHostUuid():
                return rpc.HostUuid(uuid=host.host_uuid)
            case rpc.GetBootId():
                return rpc.BootId(boot_id=host.boot_id)
            case rpc.SetHostUuid(uuid=value):
                host.host_uuid = value
            case rpc.CreateJail():
                jid = host.create_jail(
                    request.name, hostname=request.hostname, path=request.path, vnet=request.vnet
                )
                return rpc.Jid(jid=jid)
            case rpc.RemoveJail(jid=jid):
                host.remove_jail(jid)
            case rpc.ListJails():
                return rpc.Jails(
                    jails=[
                        rpc.JailRecord(jid=j.jid, name=j.name, vnet=j.vnet, dying=j.dying)
                        for j in sorted(host.jails.values(), key=lambda j: j.jid)
                    ]
                )
            case rpc.GetJail(jid=jid):
                # jail_get(2) by jid (sys/kern/kern_jail.c kern_jail_get, JAIL_DYING)
                found = host.jails.get(jid)
                return rpc.Jails(
                    jails=[]
                    if found is None
                    else [
                        rpc.JailRecord(
                            jid=found.jid, name=found.name, vnet=found.vnet, dying=found.dying
                        )
                    ]
                )
            case rpc.ListIfnets(jid=jid):
                return rpc.Ifnets(
                    ifnets=[
                        rpc.IfnetRecord(
                            name=i.name,
                            kind=i.kind,
                            mac=mac_text(i.mac),
                            up=i.up,
                            hwassist=i.hwassist,
                            capabilities=i.capabilities,
                            capenable=i.capenable,
                            mtu=i.mtu,
                            addresses=list(i.addresses),
                            index=i.index,
                        )
                        for i in host.list_ifnets(jid)
                    ]
                )
            case rpc.LocateIfnet(name=name):
                return rpc.Location(jid=host.locate(name))
            case rpc.MoveIfnet(name=name, jid=jid):
                host.move_ifnet_keeping_up(name, jid)
            case rpc.ReclaimIfnet(name=name, jid=jid):
                host.reclaim_ifnet(name, jid)
            case rpc.RenameIfnet(name=name, newname=newname, jid=jid):
                host.rename_ifnet(name, newname, jid)
            case rpc.SetIfnetMtu(name=name, mtu=mtu, jid=jid):
                host.set_mtu(jid, name, mtu)
            case rpc.AddInetAddress(name=name, address=address, jid=jid):
                host.add_address(jid, name, address)
            case rpc.AddRoute(dst=dst, gateway=gateway, via=via, jid=jid):
                host.add_route(jid, dst, gateway, via)
            case rpc.ListRoutes(jid=jid):
                return rpc.Routes(
                    routes=[
                        rpc.RouteRecord(dst=r.dst, gateway=r.gateway, ifname=r.ifnet.name)
                        for r in host.list_routes(jid)
                    ]
                )
            case rpc.DelRoute(dst=dst, gateway=gateway, jid=jid):
                host.delete_route(jid, dst, gateway)
            case rpc.SysctlRtDump(family=family, jid=jid):
                return rpc.SysctlData(data=host.rt_dump(jid, family))
            case rpc.SetIfnetUp(name=name, up=up):
                host.set_up(name, up)
            case rpc.Reset():
                self.reset(request)
            case rpc.SetFaults(spec=spec):
                host.set_faults(parse_faults(spec))
            case rpc.ScriptExec():
                host.scripts.insert(
                    0,
                    ExecScript(
                        request.jail,
                        request.match,
                        request.status,
                        request.duration,
                        request.output,
                    ),
                )
            case rpc.GetExecLog():
                # ExecEntry is ExecRecord's fields by name, less the server's cancel hook
                entries = [
                    msgspec.convert(r, rpc.ExecEntry, from_attributes=True) for r in host.exec_log
                ]
                return rpc.ExecLog(entries=entries)
            case rpc.KillJail(name=name):
                return rpc.Jid(jid=host.kill_jail(name))
            case rpc.ListNgNodes():
                return rpc.NgNodes(
                    nodes=[
                        rpc.NgNodeRecord(
                            id=n.id,
                            name=n.name,
                            type=n.type_name,
                            hooks=[
                                rpc.NgHookRecord(
                                    name=h.name, peer_id=h.peer.node.id, peer_hook=h.peer.name
                                )
                                for h in reversed(list(n.hooks.values()))
                                if h.peer is not None
                            ],
                            state={
                                k: v
                                for k, v in n.describe().items()
                                if isinstance(v, str | int | bool)
                            },
                        )
                        for n in host.ng.iter_nodes()
                    ]
                )
            case rpc.SendFrame(name=name, frame=frame, jid=jid):
                host.send_frame(name, bytes.fromhex(frame), jid)
            case rpc.SetCapabilities(name=name, enabled=enabled):
                host.set_capabilities(name, enabled)
            case rpc.PlugNic(name=name, plugged=plugged):
                (plug_nic if plugged else unplug_nic)(host, name)
            case rpc.Received(name=name, jid=jid):
                return rpc.Frames(frames=[f.hex() for f in host.received(name, jid)])
            case _:
                return rpc.Failed(errno=errno.EOPNOTSUPP, message=f"unexpected {request!r}")
        return rpc.Ok()

    async def run_exec(self, stream: trio.SocketStream, request: rpc.Exec) -> rpc.Reply:
        """Run a scripted (or instant) command; the peer's EOF kills it."""
        host = self.host
        host.tick()
        try:
            record, script = host.start_exec(request.jid, request.command, request.env)
        except OSError as exc:
            return _failed(exc)
        status = script.status if script is not None else 0
        duration = script.duration if script is not None else 0.0
        output = script.output if script is not None else ""
        if duration > 0:
            await self._wait_exec(stream, record, duration)
        if record.outcome == "killed":
            return rpc.ExitStatus(status=SIGKILL_STATUS, output=output)
        host.finish_exec(record, status)
        return rpc.ExitStatus(status=status, output=output)

    def _wake_watchers(self) -> None:
        self._ifnet_changed.set()
        self._ifnet_changed = trio.Event()

    async def watch_ifnets(self, request: rpc.WatchIfnets) -> rpc.Reply:
        """Answer a long poll: notices after ``request.after``, waiting for one if none."""
        with trio.move_on_after(max(0.0, min(request.wait, WATCH_MAX_WAIT))):
            while True:
                changed = self._ifnet_changed
                host = self.host
                host.tick()  # time may have destroyed a dying jail, sending its NICs home
                log_ = host.ifnet_log
                notices = log_.since(request.after) if request.boot == host.boot_id else None
                if notices is None or notices:
                    break
                await changed.wait()
        host = self.host
        log_ = host.ifnet_log
        notices = log_.since(request.after) if request.boot == host.boot_id else None
        return rpc.IfnetNotices(
            boot=host.boot_id,
            seq=log_.seq,
            notices=[
                rpc.IfnetNoticeRecord(seq=n.seq, kind=n.kind, name=n.name, newname=n.newname)
                for n in notices or ()
            ],
            lost=notices is None,
        )

    async def _wait_exec(self, stream: trio.SocketStream, record: ExecRecord, delay: float) -> None:
        async def watch_peer(scope: trio.CancelScope) -> None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.receive_some(1)
            # Anything from the peer mid-command, EOF included, means it gave up.
            self.host.kill_exec(record)
            scope.cancel()

        with trio.CancelScope() as scope:
            record.cancel = scope.cancel
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_peer, scope)
                await trio.sleep(delay)
                nursery.cancel_scope.cancel()
        record.cancel = None

    async def handle_rpc(self, stream: trio.SocketStream) -> None:
        async with stream:
            while True:
                try:
                    body = await receive_frame(stream)
                except (ValueError, trio.BrokenResourceError):
                    return
                if body is None:
                    return
                try:
                    request = rpc.REQUEST_DECODER.decode(body)
                except msgspec.DecodeError as exc:
                    reply: rpc.Reply = rpc.Failed(errno=errno.EINVAL, message=str(exc))
                else:
                    try:
                        if isinstance(request, rpc.Exec):
                            reply = await self.run_exec(stream, request)
                        elif isinstance(request, rpc.WatchIfnets):
                            reply = await self.watch_ifnets(request)
                        else:
                            reply = self.call(request)
                    except Exception:
                        log.exception("simhost.rpc_failed", op=type(request).__name__)
                        reply = rpc.Failed(errno=errno.EIO, message="sim host internal error")
                try:
                    data = rpc.frame(reply)
                except ValueError as exc:  # beyond MAX_FRAME: the client could not read it
                    data = rpc.frame(rpc.Failed(errno=errno.EMSGSIZE, message=str(exc)))
                try:
                    await stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return

    # -- simulated netgraph sockets --------------------------------------------------------

    async def handle_ng(self, sock: trio.socket.SocketType) -> None:
        send, receive = trio.open_memory_channel[bytes](math.inf)
        node: SocketNode | None = None
        data = False

        def deliver(sockaddr: bytes, message: bytes) -> None:
            send.send_nowait(wire.pack_addressed(wire.DATAGRAM, sockaddr, message))

        async def writer(done: trio.CancelScope) -> None:
            try:
                async for packet in receive:
                    for piece in wire.split_packet(packet):
                        await sock.send(piece)
            except OSError as exc:
                # A reply that cannot go out: close the connection rather than leave the
                # peer waiting for it (it sees EOF, ECONNRESET).
                log.warning("simhost.ng_send_failed", error=os.strerror(exc.errno or 0))
            done.cancel()

        joiner = wire.Joiner()
        with sock:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer, nursery.cancel_scope)
                try:
                    while True:
                        try:
                            piece = await sock.recv(wire.PIECE)
                        except OSError:
                            break
                        if not piece:
                            break
                        try:
                            joined = joiner.feed(piece)
                        except ValueError:
                            break  # not our wire: the peer gets EOF
                        if joined is None:
                            continue
                        packet = joined
                        self.host.tick()
                        kind = packet[:1]
                        err = 0
                        try:
                            if kind == wire.OPEN_CONTROL:
                                if node is not None:
                                    raise OSError(errno.EISCONN, "socket already open")
                                node = self.host.ng.open_control()
                                node.deliver = deliver
                            elif kind == wire.OPEN_DATA:
                                if node is not None:
                                    raise OSError(errno.EISCONN, "socket already open")
                                node = self.host.ng.connect_data(packet[1:])
                                node.deliver_data = deliver
                                data = True
                            elif node is None:
                                raise OSError(errno.ENOTCONN, "no socket opened yet")
                            elif kind == wire.BIND:
                                if data:
                                    raise OSError(errno.EOPNOTSUPP, "bind on a data socket")
                                node.kernel.bind(node, packet[1:])
                            elif kind == wire.SENDTO:
                                sockaddr, message = wire.unpack_addressed(packet)
                                if data:
                                    node.kernel.data_send(node, sockaddr, message)
                                else:
                                    node.kernel.send(node, sockaddr, message)
                            elif kind == wire.RCVBUF:
                                size = wire.unpack_rcvbuf(packet)
                                if size == 0:
                                    raise OSError(errno.EINVAL, "SO_RCVBUF 0")
                                if size > SB_MAX_ADJ:
                                    raise OSError(errno.ENOBUFS, "SO_RCVBUF above sb_max_adj")
                                node.rcvbuf = size
                            else:
                                raise OSError(errno.EINVAL, f"unknown packet {kind!r}")
                        except OSError as exc:
                            err = exc.errno or errno.EIO
                        except (ValueError, struct.error):
                            err = errno.EINVAL
                        except Exception:
                            # A model bug must not take the whole host down: log it once and
                            # answer EIO, as a kernel would report a driver failure.
                            log.exception("simhost.ng_call_failed", packet=packet[:64].hex())
                            err = errno.EIO
                        send.send_nowait(wire.pack_result(err))
                finally:
                    if node is not None and node.kernel is self.host.ng:
                        node.kernel.close_socket(node, data=data)
                    nursery.cancel_scope.cancel()


def _failed(exc: OSError) -> rpc.Failed:
    """The errno and the subject (an interface, a jail) the kernel call failed on."""
    subject = exc.filename if exc.filename is not None else exc.strerror
    return rpc.Failed(errno=exc.errno or errno.EIO, message=str(subject or ""))


def _clear_stale(path: str, kind: int) -> None:
    """Refuse a live socket (another sim host serves it); unlink a dead one."""
    if os.path.exists(path):
        if socket_is_live(path, kind):
            raise OSError(errno.EADDRINUSE, "a sim host is already serving", path)
        os.unlink(path)


async def _bind_unix(path: str, kind: int) -> trio.socket.SocketType:
    _clear_stale(path, kind)
    sock = trio.socket.socket(socket.AF_UNIX, kind)
    await sock.bind(path)
    sock.listen(64)
    return sock


async def serve_simhost(
    server: SimHostServer,
    path: str,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; the socket files are removed on the way out."""
    ng_path = path + wire.NG_SOCKET_SUFFIX
    rpc_sock = await _bind_unix(path, socket.SOCK_STREAM)
    try:
        ng_sock = await _bind_unix(ng_path, socket.SOCK_SEQPACKET)
    except BaseException:
        rpc_sock.close()
        os.unlink(path)
        raise
    try:
        async with trio.open_nursery() as nursery:
            listener = trio.SocketListener(rpc_sock)
            nursery.start_soon(trio.serve_listeners, server.handle_rpc, [listener])

            async def accept_ng() -> None:
                while True:
                    conn, _ = await ng_sock.accept()
                    nursery.start_soon(server.handle_ng, conn)

            nursery.start_soon(accept_ng)
            log.info("simhost.listening", socket=path, nics=" ".join(server.nics))
            task_status.started()
    finally:
        ng_sock.close()
        for leftover in (path, ng_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


async def run(server: SimHostServer, path: str) -> None:
    """The process's main: serve until SIGTERM or SIGINT."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_simhost, server, path)
            async for signum in signals:
                log.info("simhost.stopping", signal=signal.Signals(signum).name)
                break
            nursery.cancel_scope.cancel()
