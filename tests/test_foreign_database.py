"""A storage.path that names another program's SQLite database is refused, untouched.

A database with tables but no `schema_version` is not jobsd's (every
migration records its version in its own transaction). jobsd used to
migrate it anyway: its tables were written into the other program's file,
which was also switched to WAL and made 0600.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobsd.cli import main
from jobsd.clock import Clock
from jobsd.config import builtin_config
from jobsd.crypto import KeyRing
from jobsd.errors import StorageError
from jobsd.store import open_store
from jobsd.store.schema import configure, migrate

T0 = datetime(2026, 6, 5, 2, 0, tzinfo=UTC)


def tables(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master ORDER BY name")]
    finally:
        conn.close()


async def test_another_programs_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "grafana.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, login TEXT)")
    conn.execute("INSERT INTO users (login) VALUES ('admin')")
    conn.commit()
    conn.close()
    os.chmod(path, 0o644)
    with pytest.raises(StorageError, match=r"something else \(tables users; .*storage\.path"):
        async with open_store(path, KeyRing.load_or_create(tmp_path / "k"), Clock(T0)):
            pass
    assert tables(path) == ["users"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        conn.close()


def test_migrate_itself_refuses_one(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "other.db", isolation_level=None)
    try:
        conn.execute("CREATE TABLE notes (body TEXT)")
        with pytest.raises(StorageError, match="something else"):
            migrate(conn)
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["notes"]
    finally:
        conn.close()


async def test_a_new_or_empty_file_and_a_jobsd_database_still_open(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite3"
    empty.touch()
    ours = tmp_path / "ours.sqlite3"
    conn = sqlite3.connect(ours, isolation_level=None)
    configure(conn)
    migrate(conn)
    conn.close()
    for path in (tmp_path / "new.sqlite3", empty, ours):
        async with open_store(path, KeyRing.load_or_create(tmp_path / "k"), Clock(T0)):
            pass
        assert "jobs" in tables(path)


def foreign_home(tmp_path: Path, *, empty: bool = False) -> tuple[Path, Path]:
    """A data dir whose database path holds another program's database (or an empty file)."""
    config = builtin_config(tmp_path, "0" * 64)
    KeyRing.load_or_create(config.secrets.key_file)
    if empty:
        config.storage.path.touch()
    else:
        conn = sqlite3.connect(config.storage.path)
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
        conn.commit()
        conn.close()
    return config.storage.path, config.secrets.key_file


def test_the_key_commands_refuse_another_programs_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, key = foreign_home(tmp_path)
    keys_before = key.read_bytes()
    for verb in ("check-keys", "rotate-key"):
        assert main([verb, "--data-dir", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert "something else (tables users" in err and "Traceback" not in err
    assert key.read_bytes() == keys_before  # no key was added before the refusal
    assert tables(db) == ["users"]


def test_the_key_commands_take_an_empty_database_file_as_holding_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign_home(tmp_path, empty=True)
    assert main(["check-keys", "--data-dir", str(tmp_path)]) == 0
    assert "none stored" in capsys.readouterr().out
