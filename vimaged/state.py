"""Crash-safe state: the journal of intended and completed kernel changes, and persisted MACs.

The rule is *record intent, act, record outcome*: every kernel change is written here before it
is made, so a daemon killed at any point finds, at its next start, each object it may have
created and converges (reconcile in ``supervisor``). SQLite in WAL mode with
``synchronous=NORMAL`` commits atomically and survives a killed process; a power loss may drop
the last commits, but it also wipes the kernel state they describe (jails, vnets, netgraph nodes
do not survive a reboot), so nothing is orphaned by it. MAC assignments live here too, so a
vimage keeps its MACs across restarts and upgrades.

All database work runs in one worker thread (``trio.to_thread`` with a limiter of one), never
on the trio thread.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

import msgspec
import trio

if TYPE_CHECKING:
    from collections.abc import Callable

ResourceKind = Literal["jail", "bridge", "vnet"]
Phase = Literal["intent", "done"]
Desired = Literal["running", "stopped"]

P = ParamSpec("P")
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS vimage (
    name TEXT PRIMARY KEY,
    desired TEXT NOT NULL,
    jid INTEGER
);
CREATE TABLE IF NOT EXISTS resource (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    vimage TEXT NOT NULL,
    phase TEXT NOT NULL,
    jid INTEGER,
    parent TEXT,
    PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS mac (
    vimage TEXT NOT NULL,
    idx INTEGER NOT NULL,
    mac TEXT NOT NULL UNIQUE,
    PRIMARY KEY (vimage, idx)
);
"""


class VimageRecord(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    desired: Desired
    jid: int | None = None


class Resource(msgspec.Struct, frozen=True, kw_only=True):
    """One kernel object a vimage owns: its jail, a bridged interface or a moved NIC."""

    kind: ResourceKind
    key: str
    """The jail name, or the interface name."""
    vimage: str
    phase: Phase
    jid: int | None = None
    parent: str | None = None


class Journal:
    """The state database of one daemon (``<state_dir>/vimaged.db``)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._limiter = trio.CapacityLimiter(1)

    @classmethod
    async def open(cls, state_dir: str) -> Journal:
        def connect() -> sqlite3.Connection:
            Path(state_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
            db = sqlite3.connect(
                os.path.join(state_dir, "vimaged.db"),
                check_same_thread=False,
                isolation_level=None,
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
            return db

        return cls(await trio.to_thread.run_sync(connect))

    async def aclose(self) -> None:
        await self._run(self._db.close)

    async def _run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        def call() -> T:
            return fn(*args, **kwargs)

        return await trio.to_thread.run_sync(call, limiter=self._limiter)

    async def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        def run() -> None:
            with self._db:  # one transaction, committed on exit
                self._db.execute(sql, params)

        await self._run(run)

    async def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        def run() -> list[tuple[Any, ...]]:
            return self._db.execute(sql, params).fetchall()

        return await self._run(run)

    # vimages: what the operator asked for, so a restarted daemon knows what to keep running.

    async def set_vimage(self, name: str, *, desired: Desired, jid: int | None) -> None:
        await self._execute(
            "INSERT INTO vimage (name, desired, jid) VALUES (?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET desired=excluded.desired, jid=excluded.jid",
            (name, desired, jid),
        )

    async def vimages(self) -> dict[str, VimageRecord]:
        rows = await self._query("SELECT name, desired, jid FROM vimage")
        return {n: VimageRecord(name=n, desired=d, jid=j) for n, d, j in rows}

    async def forget_vimage(self, name: str) -> None:
        await self._execute("DELETE FROM vimage WHERE name = ?", (name,))

    # resources: the write-ahead intents.

    async def intend(
        self,
        kind: ResourceKind,
        key: str,
        *,
        vimage: str,
        jid: int | None = None,
        parent: str | None = None,
    ) -> None:
        """Record that ``vimage`` is about to create or move ``key``."""
        await self._execute(
            "INSERT OR REPLACE INTO resource (kind, key, vimage, phase, jid, parent) "
            "VALUES (?, ?, ?, 'intent', ?, ?)",
            (kind, key, vimage, jid, parent),
        )

    async def mark(
        self, kind: ResourceKind, key: str, phase: Phase, *, jid: int | None = None
    ) -> None:
        if jid is None:
            await self._execute(
                "UPDATE resource SET phase = ? WHERE kind = ? AND key = ?", (phase, kind, key)
            )
        else:
            await self._execute(
                "UPDATE resource SET phase = ?, jid = ? WHERE kind = ? AND key = ?",
                (phase, jid, kind, key),
            )

    async def forget(self, kind: ResourceKind, key: str) -> None:
        await self._execute("DELETE FROM resource WHERE kind = ? AND key = ?", (kind, key))

    async def resources(self) -> list[Resource]:
        rows = await self._query(
            "SELECT kind, key, vimage, phase, jid, parent FROM resource ORDER BY rowid"
        )
        return [
            Resource(kind=k, key=key, vimage=v, phase=p, jid=j, parent=par)
            for k, key, v, p, j, par in rows
        ]

    # MACs: assigned once per (vimage, bridge index), kept across restarts and upgrades.

    async def macs(self) -> dict[tuple[str, int], str]:
        rows = await self._query("SELECT vimage, idx, mac FROM mac")
        return {(v, i): m for v, i, m in rows}

    async def save_mac(self, vimage: str, index: int, mac: str) -> None:
        await self._execute(
            "INSERT OR REPLACE INTO mac (vimage, idx, mac) VALUES (?, ?, ?)", (vimage, index, mac)
        )
