"""A database jobsd cannot trust stops the daemon, saying what to do.

A file that is not a database, or too new, is refused before serving; the
integrity check (`PRAGMA quick_check`) runs once the daemon serves
(`jobsd.store.integrity`) and a failure stops it with exit 2 all the same.
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

from jobsd import cli_refusals
from jobsd.clock import Clock
from jobsd.crypto import KeyRing
from jobsd.errors import StorageError
from jobsd.job_model import HttpConfig
from jobsd.store import integrity, open_store
from jobsd.store.schema import LATEST
from tests.conftest import config_text
from tests.model import create_job, seed_job

T0 = datetime(2026, 6, 5, tzinfo=UTC)


async def _filled(tmp_path: Path) -> Path:
    db = tmp_path / "jobsd.sqlite3"
    keyring = KeyRing.load_or_create(tmp_path / "secret.key")
    async with open_store(db, keyring, Clock(T0)) as store:
        for i in range(300):
            spec = seed_job(
                f"j{i}", "n" * 200, "d" * 500, False, "now", HttpConfig(url="https://x.invalid/")
            )
            await create_job(store, "acme", spec, -1)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db


def _damage(db: Path, page_no: int = 11) -> None:
    """Scribble over the start of page `page_no` (1-based)."""
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) > 20 * page
    for offset in range((page_no - 1) * page, (page_no - 1) * page + 600, 7):
        data[offset] = 0xA5
    db.write_bytes(bytes(data))


def _a_page_of(db: Path, table: str) -> int:
    """A leaf page of `table` in the middle of its pages."""
    with sqlite3.connect(db) as conn:
        pages = [
            int(r[0])
            for r in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno",
                (table,),
            )
        ]
    assert len(pages) > 10
    return pages[len(pages) // 2]


async def test_damaged_pages_refused(tmp_path: Path) -> None:
    db = await _filled(tmp_path)
    _damage(db)
    with pytest.raises(StorageError, match="backup"):
        async with open_store(db, KeyRing.load_or_create(tmp_path / "secret.key"), Clock(T0)) as s:
            await integrity.check(s.engine.open_reader)


async def test_a_sound_file_passes(tmp_path: Path) -> None:
    db = await _filled(tmp_path)
    async with open_store(db, KeyRing.load_or_create(tmp_path / "secret.key"), Clock(T0)) as s:
        await integrity.check(s.engine.open_reader)


class _HeldConnection(sqlite3.Connection):
    """Holds its first statement at its first step until interrupted (or 30 s)."""

    held = threading.Event()
    released = threading.Event()
    steps_after = 0

    def hold(self) -> None:
        def step() -> int:
            if not self.held.is_set():
                self.held.set()
                self.released.wait(30)
            else:
                _HeldConnection.steps_after += 1
            return 0

        self.set_progress_handler(step, 1)

    def interrupt(self) -> None:
        super().interrupt()
        self.released.set()


async def test_a_stop_interrupts_the_check(tmp_path: Path) -> None:
    """Cancelled mid-check (a stop), the check ends at once: SQLite is interrupted,
    not waited for, and its connection closes only after its thread is done."""
    db = await _filled(tmp_path)
    opened: list[_HeldConnection] = []

    def open_reader() -> sqlite3.Connection:
        conn = sqlite3.connect(db, check_same_thread=False, factory=_HeldConnection)
        conn.hold()
        opened.append(conn)
        return conn

    began = time.monotonic()
    with trio.move_on_after(30) as outer:
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def checking() -> None:
                with scope:
                    await integrity.check(open_reader)
                    raise AssertionError("the check was not interrupted")

            nursery.start_soon(checking)
            await trio.to_thread.run_sync(_HeldConnection.held.wait, 30)
            scope.cancel()
    assert not outer.cancelled_caught
    assert time.monotonic() - began < 10
    # The whole check of this file is ~33,000 steps of SQLite's VM; interrupted, ~10.
    assert _HeldConnection.released.is_set() and _HeldConnection.steps_after < 1_000
    with pytest.raises(sqlite3.ProgrammingError):  # closed by the check
        opened[0].execute("SELECT 1")


def _serve(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "jobsd.toml"
    cfg.write_text(config_text(tmp_path))
    return subprocess.run(
        [sys.executable, "-m", "jobsd", "serve", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


async def test_cli_refuses_damaged_and_foreign_files(tmp_path: Path) -> None:
    db = await _filled(tmp_path)
    _damage(db)
    out = _serve(tmp_path)
    assert out.returncode == 2, out.stderr
    assert "backup" in out.stderr and "Traceback" not in out.stderr
    db.write_bytes(b"not a database at all " * 500)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    out = _serve(tmp_path)
    assert out.returncode == 2 and "storage.path" in out.stderr and "Traceback" not in out.stderr


async def test_damage_found_after_ready_stops_the_daemon(tmp_path: Path) -> None:
    """Damage the start does not read (a page of disabled jobs): the daemon serves,
    then its check finds the damage, says so as CRITICAL and exits 2 with the guidance."""
    db = await _filled(tmp_path)
    _damage(db, _a_page_of(db, "jobs"))
    out = _serve(tmp_path)
    assert "jobsd listening on" in out.stdout, out.stderr
    assert out.returncode == 2, out.stderr
    critical = [line for line in out.stderr.splitlines() if "CRITICAL" in line]
    assert len(critical) == 1 and "quick_check" in critical[0], out.stderr
    assert "restore the latest backup" in critical[0]
    assert "jobsd: storage error:" in out.stderr and "Traceback" not in out.stderr
    assert "stopped" in out.stderr


async def test_cli_refuses_a_newer_schema(tmp_path: Path) -> None:
    db = await _filled(tmp_path)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (LATEST + 1,))
    out = _serve(tmp_path)
    assert out.returncode == 2
    assert "upgrade jobsd" in out.stderr and "Traceback" not in out.stderr


def test_sqlites_own_word_of_damage_is_a_refusal_with_the_guidance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLITE_NOTADB raised by a statement before the check has run (not a
    StorageError of jobsd's): exit 2 naming the damage and the remedy, no traceback."""
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"not a database at all " * 500)
    conn = sqlite3.connect(bad)
    try:
        with pytest.raises(sqlite3.DatabaseError) as caught:
            conn.execute("SELECT 1 FROM sqlite_master")
    finally:
        conn.close()
    assert cli_refusals.refused(caught.value)
    # SQLite's extended codes of damage (SQLITE_CORRUPT_INDEX) are damage too.
    extended = sqlite3.DatabaseError("database disk image is malformed")
    extended.sqlite_errorcode = sqlite3.SQLITE_CORRUPT_INDEX
    assert integrity.damaged(extended)
    assert cli_refusals.refuse(caught.value, argparse.Namespace()) == 2
    err = capsys.readouterr().err
    assert err.startswith("jobsd: storage error: the database is damaged (") and (
        integrity.GUIDANCE in err
    ), err
