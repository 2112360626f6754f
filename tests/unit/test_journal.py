"""The journal: schema versions, one-line errors, a full disk (issue 10 items 5 and 11)."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import pytest
import trio

from vimaged.state import DB_NAME, SCHEMA_V1, SCHEMA_VERSION, Journal
from vimaged.statedir import EX_CONFIG, EX_IOERR, StateDirError

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.unit


def open_journal(path: Path, boot_id: str | None = "boot-1") -> Journal:
    return trio.run(lambda: Journal.open(str(path), boot_id=boot_id))


def test_rows_carry_the_boot_they_were_written_in(tmp_path: Path) -> None:
    async def main() -> None:
        journal = await Journal.open(str(tmp_path), boot_id="boot-1")
        await journal.set_vimage("db", desired="running", jid=4)
        await journal.intend("vnet", "em1", vimage="db", jid=4)
        assert (await journal.vimages())["db"].boot == "boot-1"
        assert [r.boot for r in await journal.resources()] == ["boot-1"]
        await journal.aclose()

    trio.run(main)
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def test_an_unversioned_journal_is_migrated_forward(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.executescript(SCHEMA_V1)
        db.execute("INSERT INTO vimage (name, desired, jid) VALUES ('db', 'running', 3)")
    tmp_path.chmod(0o700)

    async def main() -> None:
        journal = await Journal.open(str(tmp_path), boot_id="boot-1")
        record = (await journal.vimages())["db"]
        assert (record.desired, record.jid, record.boot) == ("running", 3, None)
        await journal.aclose()

    trio.run(main)
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def test_a_newer_journal_is_refused_by_its_version(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("PRAGMA user_version = 99")
    tmp_path.chmod(0o700)
    with pytest.raises(StateDirError) as raised:
        open_journal(tmp_path)
    assert raised.value.exit_status == EX_CONFIG
    assert "99" in str(raised.value)
    assert str(tmp_path / DB_NAME) in str(raised.value)


def test_garbage_is_one_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"\x00garbage" * 1000)
    tmp_path.chmod(0o700)
    with pytest.raises(StateDirError) as raised:
        open_journal(tmp_path)
    assert raised.value.exit_status == EX_CONFIG
    assert "\n" not in str(raised.value)


def fill(journal: Journal) -> None:
    """Let the database grow no further (SQLITE_FULL, as on a full disk)."""
    (pages,) = journal._db.execute("PRAGMA page_count").fetchone()
    journal._db.execute(f"PRAGMA max_page_count = {pages}")


async def write_macs_until_refused(journal: Journal) -> StateDirError:
    for index in range(10_000):
        try:
            await journal.save_mac("db", index, f"02:00:00:00:{index >> 8:02x}:{index & 255:02x}")
        except StateDirError as exc:
            return exc
    raise AssertionError("the journal never filled up")


class FullDisk:
    """The journal's connection on a full disk: every write fails as SQLite reports ENOSPC
    (SQLITE_FULL, sqlite3.h), reads work."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.full = True

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        verb = sql.split()[0].upper()
        if self.full and verb in ("INSERT", "UPDATE", "DELETE"):
            exc = sqlite3.OperationalError("database or disk is full")
            exc.sqlite_errorcode = 13
            raise exc
        return self.db.execute(sql, params)

    def close(self) -> None:
        self.db.close()


def test_a_full_disk_changes_nothing_and_the_next_write_records_the_truth(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        journal = await Journal.open(str(tmp_path), boot_id="boot-1")
        await journal.set_vimage("db", desired="running", jid=4)
        await journal.intend("vnet", "em1", vimage="db", jid=4)
        fill(journal)
        # An intent that cannot be written raises: nothing may be done without it.
        error = await write_macs_until_refused(journal)
        assert error.exit_status == EX_IOERR
        assert "state dir full" in str(error)
        assert str(tmp_path / DB_NAME) in str(error)
        macs = len(await journal.macs())
        # A teardown fact (em1 is home, db stopped) is kept, not raised.
        full = FullDisk(journal._db)
        journal._db = full  # type: ignore[assignment]
        await journal.forget("vnet", "em1")
        await journal.set_vimage("db", desired="stopped", jid=None)
        assert journal.unsaved_error is not None
        assert [r.key for r in await journal.resources()] == ["em1"]  # not written yet
        full.full = False
        journal._db.execute("PRAGMA max_page_count = 1073741823")
        await journal.save_mac("db", 99_999, "02:00:00:ff:ff:ff")
        assert journal.unsaved_error is None
        assert await journal.resources() == []
        assert (await journal.vimages())["db"].desired == "stopped"
        assert len(await journal.macs()) == macs + 1
        await journal.aclose()

    trio.run(main)
