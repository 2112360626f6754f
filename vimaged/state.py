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

Every row carries the boot it was written in (``Platform.boot_id``): kernel objects do not
survive a reboot, and jids are reused, so reconciliation acts on a row only in its own boot.
The schema has a version (``PRAGMA user_version``): older journals are migrated forward, a newer
one is refused by name. Every journal problem is one :class:`~vimaged.statedir.StateDirError`
line naming the file, with the sysexits(3) status that fits. A teardown fact (a NIC home, a jail
removed) that cannot be written, the disk being full, is kept in memory and written first by the
next write that succeeds: the daemon never believes what the journal refused, and never keeps a
NIC inside a jail for want of a disk block.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

import msgspec
import structlog
import trio

from vimaged import statedir
from vimaged.statedir import EX_CANTCREAT, EX_CONFIG, EX_IOERR, EX_TEMPFAIL, StateDirError

if TYPE_CHECKING:
    from collections.abc import Callable

ResourceKind = Literal["jail", "bridge", "vnet"]
Phase = Literal["intent", "done"]
Desired = Literal["running", "stopped"]

P = ParamSpec("P")
T = TypeVar("T")

log = structlog.get_logger()

DB_NAME = "vimaged.db"

SCHEMA_VERSION = 2
"""1: vimage, resource, mac (unversioned journals are 1). 2: each row's ``boot``; ``meta``."""

SCHEMA_V1 = """
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

MIGRATIONS = {
    2: """
ALTER TABLE vimage ADD COLUMN boot TEXT;
ALTER TABLE resource ADD COLUMN boot TEXT;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
""",
}
"""Version N's statements, run on a journal at version N - 1."""

EXPECTED_COLUMNS = {
    "vimage": ("name", "desired", "jid", "boot"),
    "resource": ("kind", "key", "vimage", "phase", "jid", "parent", "boot"),
    "mac": ("vimage", "idx", "mac"),
    "meta": ("key", "value"),
}

# sqlite3 result codes (sqlite3.h), primary code = extended & 0xff.
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY, _SQLITE_IOERR = 5, 6, 8, 10
_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 11, 13, 14, 26
_SQLITE_PERM = 3


def journal_error(path: str, exc: sqlite3.Error | OSError) -> StateDirError:
    """One line for any journal failure, with the exit status that fits (sysexits(3))."""
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            return StateDirError(f"state dir full: {path}", exit_status=EX_IOERR)
        status = EX_CANTCREAT if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM) else EX_IOERR
        return StateDirError(f"journal {path}: {exc.strerror}", exit_status=status)
    code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
    if code == _SQLITE_FULL:
        return StateDirError(f"state dir full: {path}", exit_status=EX_IOERR)
    if code in (_SQLITE_READONLY, _SQLITE_CANTOPEN, _SQLITE_PERM):
        return StateDirError(f"journal {path}: cannot write it: {exc}", exit_status=EX_CANTCREAT)
    if code == _SQLITE_IOERR:
        return StateDirError(f"journal {path}: I/O error: {exc}", exit_status=EX_IOERR)
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return StateDirError(f"journal {path}: in use: {exc}", exit_status=EX_TEMPFAIL)
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return StateDirError(f"journal {path}: damaged: {exc}", exit_status=EX_CONFIG)
    return StateDirError(f"journal {path}: not a vimaged journal: {exc}", exit_status=EX_CONFIG)


def _prepare(db: sqlite3.Connection, path: str) -> None:
    """Check, create or migrate the schema. Raises StateDirError for a journal it cannot use."""
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise StateDirError(
            f"journal {path}: schema version {version} is newer than this vimaged's "
            f"{SCHEMA_VERSION}: run the newer vimaged, or move the state dir aside",
            exit_status=EX_CONFIG,
        )
    (status,) = db.execute("PRAGMA quick_check").fetchone()
    if status != "ok":
        raise StateDirError(f"journal {path}: damaged: {status}", exit_status=EX_CONFIG)
    db.execute("BEGIN IMMEDIATE")
    try:
        if version == 0:
            for statement in SCHEMA_V1.split(";"):
                if statement.strip():
                    db.execute(statement)
            version = 1
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[target].split(";"):
                if statement.strip():
                    db.execute(statement)
            log.info("journal.migrated", path=path, version=target)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    for table, wanted in EXPECTED_COLUMNS.items():
        found = tuple(row[1] for row in db.execute(f"PRAGMA table_info({table})"))
        missing = [c for c in wanted if c not in found]
        if missing:
            raise StateDirError(
                f"journal {path}: damaged: table {table} lacks column {', '.join(missing)}",
                exit_status=EX_CONFIG,
            )


class VimageRecord(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    desired: Desired
    jid: int | None = None
    boot: str | None = None
    """The boot the row was written in; None for a journal from before boots were recorded."""


class Resource(msgspec.Struct, frozen=True, kw_only=True):
    """One kernel object a vimage owns: its jail, a bridged interface or a moved NIC."""

    kind: ResourceKind
    key: str
    """The jail name, or the interface name."""
    vimage: str
    phase: Phase
    jid: int | None = None
    parent: str | None = None
    boot: str | None = None


class Journal:
    """The state database of one daemon (``<state_dir>/vimaged.db``)."""

    def __init__(self, db: sqlite3.Connection, path: str, boot_id: str | None) -> None:
        self._db = db
        self.path = path
        self.boot_id = boot_id
        """Written with every row: the boot the rows' kernel objects belong to."""
        self._limiter = trio.CapacityLimiter(1)
        self._unsaved: list[tuple[str, tuple[Any, ...]]] = []
        self.unsaved_error: StateDirError | None = None
        """Set when a teardown fact could not be written; cleared by the next good write."""

    @classmethod
    async def open(cls, state_dir: str, *, boot_id: str | None = None) -> Journal:
        """Open (create, migrate) the journal in a trusted state dir.

        Raises:
            StateDirError: the state dir is not trusted, or the journal cannot be used.
        """
        path = os.path.join(state_dir, DB_NAME)

        def connect() -> sqlite3.Connection:
            statedir.open_state_dir(state_dir)
            try:
                # Refuses a link planted as the file (the dir check did, but not atomically).
                os.close(statedir.open_file(path, os.O_RDWR | os.O_CREAT))
                db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            except OSError as exc:
                raise journal_error(path, exc) from None
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                _prepare(db, path)
            except sqlite3.Error as exc:
                db.close()
                raise journal_error(path, exc) from None
            except BaseException:
                db.close()
                raise
            return db

        return cls(await trio.to_thread.run_sync(connect), path, boot_id)

    async def aclose(self) -> None:
        if self._unsaved:
            with contextlib.suppress(StateDirError):
                await self._execute("SELECT 1")  # one last try to record the truth
        await self._run(self._db.close)

    async def _run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        def call() -> T:
            return fn(*args, **kwargs)

        return await trio.to_thread.run_sync(call, limiter=self._limiter)

    async def _execute(
        self, sql: str, params: tuple[Any, ...] = (), *, teardown: bool = False
    ) -> None:
        """One transaction: the facts not written yet, then this one.

        ``teardown``: a fact about what is already gone from the kernel. If it cannot be
        written it is kept and written first by the next write that succeeds, and
        :attr:`unsaved_error` says why; any other failed write raises, and changes nothing.

        Raises:
            StateDirError: the write failed (not for a ``teardown`` write).
        """
        statements = [*self._unsaved, (sql, params)]

        def run() -> None:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for text, values in statements:
                    self._db.execute(text, values)
                self._db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise

        try:
            await self._run(run)
        except sqlite3.Error as exc:
            error = journal_error(self.path, exc)
            if not teardown:
                raise error from None
            self._unsaved.append((sql, params))
            self.unsaved_error = error
            log.error("journal.write_failed", path=self.path, error=str(error))
            return
        if self._unsaved:
            log.info("journal.caught_up", path=self.path, facts=len(self._unsaved))
        self._unsaved.clear()
        self.unsaved_error = None

    async def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        def run() -> list[tuple[Any, ...]]:
            return self._db.execute(sql, params).fetchall()

        try:
            return await self._run(run)
        except sqlite3.Error as exc:
            raise journal_error(self.path, exc) from None

    # boot: the boot in which the daemon last ran vimage_enable's autostart.

    async def autostarted_boot(self) -> str | None:
        rows = await self._query("SELECT value FROM meta WHERE key = 'autostarted_boot'")
        return rows[0][0] if rows else None

    async def set_autostarted_boot(self, boot_id: str) -> None:
        await self._execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('autostarted_boot', ?)", (boot_id,)
        )

    # vimages: what the operator asked for, so a restarted daemon knows what to keep running.

    async def set_vimage(self, name: str, *, desired: Desired, jid: int | None) -> None:
        """Record the operator's intent; a ``stopped`` one is a teardown fact (see
        :meth:`_execute`), so a full disk never keeps a stop from bringing NICs home."""
        await self._execute(
            "INSERT INTO vimage (name, desired, jid, boot) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET desired=excluded.desired, jid=excluded.jid, "
            "boot=excluded.boot",
            (name, desired, jid, self.boot_id),
            teardown=desired == "stopped",
        )

    async def vimages(self) -> dict[str, VimageRecord]:
        rows = await self._query("SELECT name, desired, jid, boot FROM vimage")
        return {n: VimageRecord(name=n, desired=d, jid=j, boot=b) for n, d, j, b in rows}

    async def forget_vimage(self, name: str) -> None:
        await self._execute("DELETE FROM vimage WHERE name = ?", (name,), teardown=True)

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
        """Record that ``vimage`` is about to create or move ``key`` (in this boot)."""
        await self._execute(
            "INSERT OR REPLACE INTO resource (kind, key, vimage, phase, jid, parent, boot) "
            "VALUES (?, ?, ?, 'intent', ?, ?, ?)",
            (kind, key, vimage, jid, parent, self.boot_id),
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
        """``key`` is gone from the kernel (a teardown fact)."""
        await self._execute(
            "DELETE FROM resource WHERE kind = ? AND key = ?", (kind, key), teardown=True
        )

    async def resources(self) -> list[Resource]:
        rows = await self._query(
            "SELECT kind, key, vimage, phase, jid, parent, boot FROM resource ORDER BY rowid"
        )
        return [
            Resource(kind=k, key=key, vimage=v, phase=p, jid=j, parent=par, boot=b)
            for k, key, v, p, j, par, b in rows
        ]

    # MACs: assigned once per (vimage, bridge index), kept across restarts and upgrades.

    async def macs(self) -> dict[tuple[str, int], str]:
        rows = await self._query("SELECT vimage, idx, mac FROM mac")
        return {(v, i): m for v, i, m in rows}

    async def save_mac(self, vimage: str, index: int, mac: str) -> None:
        await self._execute(
            "INSERT OR REPLACE INTO mac (vimage, idx, mac) VALUES (?, ?, ?)", (vimage, index, mac)
        )
