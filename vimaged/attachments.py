"""CNI attachments: the owner of interfaces vimaged puts into sandboxes it does not own.

An attachment is what vimaged-cni's ADD asks for: an interface created by the platform's
bridged-ifnet call on a parent NIC (same bridge code, naming rule and per-parent lock as a
vimage's bridges), moved into a container's sandbox (a netns path on linux, a VNET jail on
FreeBSD) and renamed to CNI_IFNAME there, with the addresses and routes the IPAM plugin chose.
It is keyed by (network, container ID, ifname), as the CNI spec keys attachments.

Crash safety is the journal's rule, in a table of this module's own (``attachments.db`` beside
the daemon's journal): the row is written in phase ``intent`` before anything is created and
turned ``done`` once the interface is in its sandbox; DEL and GC put it back to ``intent``
before removing. :meth:`Attachments.reconcile` removes whatever an ``intent`` row names, so a
daemon SIGKILLed during ADD or DEL converges at its next start. Removal proves ownership first:
in the sandbox only an interface with vimaged's mark and the journaled MAC is ever deleted.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import ipaddress
import json
import os
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
import trio

from vimaged import macs
from vimaged.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    OperationFailedError,
    ShuttingDownError,
    error_text,
)
from vimaged.platforms import HOST_JID, SandboxIfnet
from vimaged.protocol import (
    Attachment,
    AttachmentList,
    CniAdd,
    CniCheck,
    CniDel,
    CniGc,
    CniList,
    CniStatus,
)

if TYPE_CHECKING:
    from vimaged.platforms import Platform
    from vimaged.supervisor import Supervisor

log = structlog.get_logger()

CNI_REQUESTS = (CniAdd, CniCheck, CniDel, CniGc, CniStatus, CniList)
CLEANUP_GRACE = 10.0
HOST_IFNAME_PREFIX = "cni"
MIN_MTU, MAX_MTU = 68, 65535
MAX_ADDRESSES, MAX_ROUTES = 64, 256

SCHEMA = """
CREATE TABLE IF NOT EXISTS attachment (
    network TEXT NOT NULL,
    container_id TEXT NOT NULL,
    ifname TEXT NOT NULL,
    phase TEXT NOT NULL,
    sandbox TEXT NOT NULL,
    parent TEXT NOT NULL,
    mac TEXT NOT NULL,
    host_ifname TEXT NOT NULL UNIQUE,
    addresses TEXT NOT NULL,
    PRIMARY KEY (network, container_id, ifname)
);
"""

Key = tuple[str, str, str]


def host_ifname(network: str, container_id: str, ifname: str) -> str:
    """The attachment's name on the host before the move: ``cni`` + 11 hex digits (14 bytes,
    under IFNAMSIZ), derived so a restarted daemon and a reader of the journal agree."""
    material = "\0".join((network, container_id, ifname)).encode()
    return HOST_IFNAME_PREFIX + hashlib.blake2s(material).hexdigest()[:11]


def _key(att: Attachment) -> Key:
    return (att.network, att.container_id, att.ifname)


def of_container(atts: list[Attachment], wanted: str) -> list[Attachment]:
    """The attachments of container ``wanted``: its exact ID, else the one ID it begins
    (engines show IDs cut to 12 or 13 characters); [] if none. A prefix of several
    containers' IDs is refused (invalid_request), never guessed."""
    exact = [a for a in atts if a.container_id == wanted]
    if exact:
        return exact
    matched = [a for a in atts if a.container_id.startswith(wanted)]
    ids = sorted({a.container_id for a in matched})
    if len(ids) > 1:
        raise InvalidRequestError(f"{wanted!r} begins several container IDs: {', '.join(ids)}")
    return matched


class AttachmentJournal:
    """The ``attachment`` table: one worker thread, as vimaged.state.Journal does."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._limiter = trio.CapacityLimiter(1)

    @classmethod
    async def open(cls, state_dir: str) -> AttachmentJournal:
        def connect() -> sqlite3.Connection:
            Path(state_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
            db = sqlite3.connect(
                os.path.join(state_dir, "attachments.db"),
                check_same_thread=False,
                isolation_level=None,
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
            return db

        return cls(await trio.to_thread.run_sync(connect))

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self._db.close, limiter=self._limiter)

    async def _execute(self, sql: str, params: tuple[Any, ...]) -> None:
        def run() -> None:
            with self._db:
                self._db.execute(sql, params)

        await trio.to_thread.run_sync(run, limiter=self._limiter)

    async def save(self, att: Attachment) -> None:
        """Write ``att``: phase ``intent`` while ``attaching``, ``done`` once ``attached``."""
        phase = "done" if att.state == "attached" else "intent"
        await self._execute(
            "INSERT OR REPLACE INTO attachment VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*_key(att), phase, att.sandbox, att.parent, att.mac, att.host_ifname,
             json.dumps(list(att.addresses))),
        )  # fmt: skip

    async def forget(self, key: Key) -> None:
        await self._execute(
            "DELETE FROM attachment WHERE network = ? AND container_id = ? AND ifname = ?", key
        )

    async def load(self) -> list[Attachment]:
        def run() -> list[tuple[Any, ...]]:
            return self._db.execute("SELECT * FROM attachment").fetchall()

        rows = await trio.to_thread.run_sync(run, limiter=self._limiter)
        return [
            Attachment(
                network=network,
                container_id=cid,
                ifname=ifname,
                sandbox=sandbox,
                parent=parent,
                mac=mac,
                host_ifname=host,
                addresses=tuple(json.loads(addrs)),
                state="attached" if phase == "done" else "attaching",
            )
            for network, cid, ifname, phase, sandbox, parent, mac, host, addrs in rows
        ]


class Attachments:
    """Every attachment of this daemon; ADD, CHECK, DEL, GC and STATUS of vimaged-cni."""

    def __init__(self, sup: Supervisor, platform: Platform, journal: AttachmentJournal) -> None:
        self._sup = sup
        self._platform = platform
        self._journal = journal
        self._by_key: dict[Key, Attachment] = {}
        self._locks: defaultdict[Key, trio.Lock] = defaultdict(trio.Lock)
        self._host_uuid: str | None = None
        self._host_ifnames = sup.attachment_ifnets
        """Shared with the supervisor, whose orphan sweep must leave these alone."""

    @classmethod
    async def open(cls, state_dir: str, sup: Supervisor, platform: Platform) -> Attachments:
        self = cls(sup, platform, await AttachmentJournal.open(state_dir))
        self._by_key = {_key(a): a for a in await self._journal.load()}
        self._host_ifnames.update(a.host_ifname for a in self._by_key.values())
        return self

    async def aclose(self) -> None:
        await self._journal.aclose()

    # -- verbs -----------------------------------------------------------------------------

    async def add(self, req: CniAdd) -> Attachment:
        if self._sup.stopping:
            raise ShuttingDownError("vimaged is shutting down")
        key = (req.network, req.container_id, req.ifname)
        if req.mtu is not None and not MIN_MTU <= req.mtu <= MAX_MTU:
            raise InvalidRequestError(f"mtu {req.mtu} is not from {MIN_MTU} to {MAX_MTU}")
        if len(req.addresses) > MAX_ADDRESSES or len(req.routes) > MAX_ROUTES:
            raise InvalidRequestError(
                f"at most {MAX_ADDRESSES} addresses and {MAX_ROUTES} routes per attachment"
            )
        for cidr in req.addresses:
            _check_cidr(cidr)
        for route in req.routes:
            _check_cidr(route.dst)
            if route.gw is not None:
                _check_ip(route.gw)
        self._refuse_vimage(req.sandbox)
        mac = await self._mac_for(req)
        async with self._locks[key]:
            if key in self._by_key:
                raise ConflictError(
                    f"container {req.container_id} already has {req.ifname} on {req.network}"
                )
            await self._check_parent(req.parent)
            att = Attachment(
                network=req.network, container_id=req.container_id, ifname=req.ifname,
                sandbox=req.sandbox, parent=req.parent, mac=mac, state="attaching",
                host_ifname=host_ifname(*key), addresses=req.addresses,
            )  # fmt: skip
            if any(a.mac == mac for a in self._by_key.values()):
                raise ConflictError(f"MAC {mac} is taken by another attachment")
            if att.host_ifname in self._host_ifnames:  # 44 bits of blake2s collided
                raise ConflictError(f"host-side name {att.host_ifname} is taken")
            await self._journal.save(att)  # intent first
            self._by_key[key] = att
            self._host_ifnames.add(att.host_ifname)
            try:
                try:
                    # the platform serializes the parent's bridge itself (its one lock)
                    await self._platform.create_in_sandbox(SandboxIfnet(
                        parent=req.parent, ifname=att.host_ifname, mac=mac,
                        sandbox=req.sandbox, newname=req.ifname, mtu=req.mtu,
                        addresses=req.addresses,
                        routes=tuple((r.dst, r.gw) for r in req.routes),
                    ))  # fmt: skip
                except BaseException:
                    with trio.move_on_after(CLEANUP_GRACE, shield=True):
                        await self._destroy_by_host_name(att)  # a platform that left it
                    raise
            except BaseException as exc:
                with trio.move_on_after(CLEANUP_GRACE, shield=True):
                    await self._journal.forget(key)
                    del self._by_key[key]
                    self._host_ifnames.discard(att.host_ifname)
                self._sup.events.emit(
                    "attachment.add_failed", None, network=req.network,
                    container_id=req.container_id, ifname=req.ifname, error=error_text(exc),
                )  # fmt: skip
                raise
            att = _replace(att, state="attached")
            await self._journal.save(att)
            self._by_key[key] = att
        self._sup.events.emit(
            "attachment.added", None, network=att.network, container_id=att.container_id,
            ifname=att.ifname, sandbox=att.sandbox, mac=mac, parent=att.parent,
            host_ifname=att.host_ifname,
        )  # fmt: skip
        return att

    async def check(self, req: CniCheck) -> Attachment:
        key = (req.network, req.container_id, req.ifname)
        if len(req.addresses) > MAX_ADDRESSES or len(req.routes) > MAX_ROUTES:
            raise InvalidRequestError(
                f"at most {MAX_ADDRESSES} addresses and {MAX_ROUTES} routes per attachment"
            )
        wanted = {_normal_route(r.dst, r.gw): r for r in req.routes}  # InvalidRequest if bad
        att = self._by_key.get(key)
        if att is None or att.state != "attached":
            raise NotFoundError(
                f"no attachment {req.ifname} of {req.container_id} on {req.network}"
            )
        info = await self._platform.sandbox_ifnet(att.sandbox, att.ifname)
        if info is None:
            raise NotFoundError(f"{att.ifname} of vimaged is not in the sandbox {att.sandbox}")
        if info.mac != att.mac:
            raise OperationFailedError(f"{att.ifname} has MAC {info.mac}, not {att.mac}")
        if not info.up:
            raise OperationFailedError(f"{att.ifname} is down")
        if req.mtu is not None and info.mtu is not None and info.mtu != req.mtu:
            raise OperationFailedError(f"{att.ifname} has MTU {info.mtu}, not {req.mtu}")
        missing = [
            a
            for a in req.addresses
            if _normal_cidr(a) not in set(map(_normal_cidr, info.addresses))
        ]
        if missing:
            raise OperationFailedError(f"{att.ifname} lacks {', '.join(missing)}")
        present = set()
        for dst, gw in info.routes:
            with contextlib.suppress(InvalidRequestError):  # a kernel text we cannot read
                present.add(_normal_route(dst, gw))
        absent = [_route_text(r.dst, r.gw) for k, r in wanted.items() if k not in present]
        if absent:
            raise OperationFailedError(f"{att.ifname} lacks the route {', '.join(absent)}")
        return _replace(att, addresses=info.addresses)

    async def delete(self, req: CniDel) -> list[Attachment]:
        key = (req.network, req.container_id, req.ifname)
        async with self._locks[key]:
            att = self._by_key.get(key)
            if att is None:
                return []  # the spec: DEL of what is gone succeeds
            await self._remove(att)
        return [att]

    async def gc(self, req: CniGc) -> list[Attachment]:
        valid = {(v.container_id, v.ifname) for v in req.valid}
        stale = [
            a for a in self._by_key.values()
            if a.network == req.network and (a.container_id, a.ifname) not in valid
        ]  # fmt: skip
        removed = []
        for att in stale:
            async with self._locks[_key(att)]:
                if _key(att) in self._by_key:
                    await self._remove(att)
                    removed.append(att)
        return removed

    async def status(self, req: CniStatus) -> list[Attachment]:
        await self._check_parent(req.parent)
        return [a for a in self._by_key.values() if a.network == req.network]

    def list(self) -> list[Attachment]:
        return sorted(self._by_key.values(), key=_key)

    async def reconcile(self) -> None:
        """At start-up: remove what every ``intent`` row names (an ADD or DEL cut short)."""
        for att in [a for a in self._by_key.values() if a.state == "attaching"]:
            try:
                await self._remove(att)
                log.warning("attachment.recovered", host_ifname=att.host_ifname)
            except OSError as exc:
                log.error(
                    "attachment.recover_failed", host_ifname=att.host_ifname, error=error_text(exc)
                )

    # -- helpers ---------------------------------------------------------------------------

    async def _remove(self, att: Attachment) -> None:
        key = _key(att)
        await self._journal.save(_replace(att, state="attaching"))  # intent to remove
        with trio.move_on_after(CLEANUP_GRACE, shield=True):
            await self._destroy_by_host_name(att)
            try:
                await self._platform.detach_from_sandbox(att.sandbox, att.ifname, att.mac)
            except OSError as exc:
                # Gone (with its sandbox, or with its netgraph node above), or the path names
                # another namespace now: nothing of ours is left.
                if exc.errno not in (errno.ENOENT, errno.EINVAL):
                    raise
            await self._journal.forget(key)
            self._by_key.pop(key, None)
            self._host_ifnames.discard(att.host_ifname)
        self._sup.events.emit(
            "attachment.removed", None, network=att.network, container_id=att.container_id,
            ifname=att.ifname, sandbox=att.sandbox, parent=att.parent,
            host_ifname=att.host_ifname,
        )  # fmt: skip

    async def _destroy_by_host_name(self, att: Attachment) -> None:
        """Destroy the interface by its host-side name: on the host (linux: before the move),
        or wherever it lives (netgraph: the eiface node keeps that name)."""
        # the platform releases the parent's bridge with its last interface
        with contextlib.suppress(FileNotFoundError):
            await self._platform.destroy_bridged_ifnet(att.host_ifname)

    def _refuse_vimage(self, sandbox: str) -> None:
        """A sandbox is a container's, never a vimage vimaged runs (by name or jid)."""
        for v in self._sup.vimages.values():
            if sandbox == v.name or (v.jid is not None and sandbox == str(v.jid)):
                raise InvalidRequestError(f"sandbox {sandbox} is vimage {v.name}, not a container")

    async def _check_parent(self, parent: str) -> None:
        host = {i.name for i in await self._platform.list_ifnets(HOST_JID)}
        if parent not in host:
            raise NotFoundError(f"parent NIC {parent} is not on the host")
        if any(parent in v.cfg.vnets for v in self._sup.vimages.values()):
            raise ConflictError(f"parent NIC {parent} is a vimage's vnet")

    async def _mac_for(self, req: CniAdd) -> str:
        if req.mac is not None:
            try:
                mac = macs.parse_mac(req.mac)
            except ValueError as exc:
                raise InvalidRequestError(f"mac {req.mac!r}: {exc}") from None
            if not macs.is_unicast(mac):
                raise InvalidRequestError(f"mac {req.mac} is a multicast address")
            return mac
        if self._host_uuid is None:
            self._host_uuid = await self._platform.host_uuid()
        return macs.attachment_mac(self._host_uuid, req.container_id, req.ifname)


async def cni_reply(attachments: Attachments | None, request: object) -> AttachmentList:
    """Dispatch one CNI request (dispatch.py's one call into this module)."""
    if attachments is None:
        raise OperationFailedError("this daemon has no CNI attachments")
    match request:
        case CniAdd():
            return _reply([await attachments.add(request)])
        case CniCheck():
            return _reply([await attachments.check(request)])
        case CniDel():
            return _reply(await attachments.delete(request))
        case CniGc():
            return _reply(await attachments.gc(request))
        case CniStatus():
            return _reply(await attachments.status(request))
        case CniList():
            return _reply(attachments.list())
    raise InvalidRequestError(f"unhandled request {type(request).__name__}")


def _reply(atts: list[Attachment]) -> AttachmentList:
    return AttachmentList(attachments=tuple(atts))


def _replace(att: Attachment, **changes: Any) -> Attachment:
    return msgspec.structs.replace(att, **changes)


def _check_cidr(text: str) -> None:
    try:
        ipaddress.ip_interface(text)
    except ValueError:
        raise InvalidRequestError(f"{text!r} is no address with prefix length") from None
    if "/" not in text:
        raise InvalidRequestError(f"{text!r} has no prefix length")


def _check_ip(text: str) -> None:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise InvalidRequestError(f"{text!r} is no IP address") from None


def _normal_cidr(text: str) -> str:
    try:
        return str(ipaddress.ip_interface(text))
    except ValueError:
        return text


def _normal_route(dst: str, gw: str | None) -> tuple[str, str | None]:
    """A route compared as the kernel keeps it: the destination's network (``0.0.0.0/0``,
    ``::/0`` for a default route, however it was spelled), the gateway's canonical text."""
    try:
        net = ipaddress.ip_network(dst, strict=False)
        gateway = None if gw is None else ipaddress.ip_address(gw)
    except ValueError:
        raise InvalidRequestError(f"route {_route_text(dst, gw)!r} is no CIDR and IP") from None
    if gateway is not None and gateway.version != net.version:
        raise InvalidRequestError(f"route {_route_text(dst, gw)}: families differ")
    return str(net), None if gateway is None else str(gateway)


def _route_text(dst: str, gw: str | None) -> str:
    return f"{dst} on-link" if gw is None else f"{dst} via {gw}"
