"""The database's files are owner-only, whatever the umask, outside systemd too.

Under umask 022 (where SQLite alone would make 0644 files): a fresh
database, its `-wal` and `-shm`, and its directory are private, in-process
and for a real `jobsd serve`; a backup is 0600 even over a wider file; an
existing 0644 database and WAL files are tightened with a warning; a file
that cannot be tightened is refused with a message, and nothing is opened.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from jobsd.clock import Clock
from jobsd.crypto import KeyRing
from jobsd.errors import StorageError
from jobsd.store import files, open_store
from jobsd.store.schema import configure, migrate
from tests.conftest import TOKEN_A, config_text, job_doc
from tests.daemon_process import DaemonProcess
from tests.model import create_job
from tests.test_store import T0, spec


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def wal_files(db: Path) -> dict[str, int]:
    return {suffix: mode(Path(f"{db}{suffix}")) for suffix in files.SUFFIXES}


@pytest.fixture(autouse=True)
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


async def test_a_new_database_and_its_wal_are_private(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "fresh" / "state" / "jobsd.sqlite3"
    with caplog.at_level(logging.WARNING, logger="jobsd.store"):
        async with open_store(db, KeyRing.load_or_create(tmp_path / "k"), Clock(T0)) as store:
            await create_job(store, "acme", spec(), -1)
            assert wal_files(db) == {"": 0o600, "-wal": 0o600, "-shm": 0o600}
    assert mode(db.parent) == 0o700 and mode(db.parent.parent) == 0o700
    # Made 0600, not made 0644 and then tightened: nothing to warn about.
    assert not [r for r in caplog.records if "had mode" in r.getMessage()]


def test_a_directory_at_the_database_path_is_refused_naming_it(tmp_path: Path) -> None:
    db = tmp_path / "jobsd.sqlite3"
    db.mkdir(mode=0o700)
    with pytest.raises(
        StorageError, match=r"jobsd.sqlite3 is not a regular file: fix storage.path"
    ):
        files.make_private(db)


async def test_a_new_data_directory_is_private_whichever_file_makes_it(tmp_path: Path) -> None:
    """`jobsd serve --data-dir NEW/DIR`: the key file is made first, in the same
    directory as the database; its directories, parents included, are 0700 too
    (Path.mkdir(parents=True) gives the parents the umask's mode, here 0755)."""
    state = tmp_path / "fresh" / "state"
    keyring = KeyRing.load_or_create(state / "secret.key")
    async with open_store(state / "jobsd.sqlite3", keyring, Clock(T0)):
        pass
    assert mode(state) == 0o700 and mode(state.parent) == 0o700


def loose_database(tmp_path: Path) -> tuple[Path, sqlite3.Connection]:
    """A 0644 jobsd database with 0644 -wal and -shm, kept open so they stay."""
    db = tmp_path / "jobsd.sqlite3"
    conn = sqlite3.connect(db, isolation_level=None)
    configure(conn)  # WAL, and the functions the migrations use
    migrate(conn)  # made before the rule: jobsd's, not another program's
    assert wal_files(db) == {"": 0o644, "-wal": 0o644, "-shm": 0o644}
    return db, conn


async def test_an_existing_loose_database_is_tightened_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db, conn = loose_database(tmp_path)
    os.chmod(f"{db}-wal", 0o660)
    with caplog.at_level(logging.WARNING, logger="jobsd.store"):
        files.make_private(db)
    assert wal_files(db) == {"": 0o600, "-wal": 0o600, "-shm": 0o600}
    conn.close()
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 3 and "mode 0660" in warned[1] and "0600" in warned[1]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="jobsd.store"):
        files.make_private(db)  # already private: nothing to say
    assert not caplog.records


async def test_a_file_that_cannot_be_tightened_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, conn = loose_database(tmp_path)
    conn.close()

    def not_yours(path: object, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(files.os, "chmod", not_yours)
    with pytest.raises(StorageError, match=r"mode 0644 and cannot be made private.*chmod 600"):
        async with open_store(db, KeyRing.load_or_create(tmp_path / "k"), Clock(T0)):
            pass
    assert mode(db) == 0o644


def test_the_daemon_and_its_backup_write_private_files(tmp_path: Path) -> None:
    cfg = tmp_path / "jobsd.toml"
    cfg.write_text(config_text(tmp_path))
    db = tmp_path / "jobsd.sqlite3"
    backup = tmp_path / "b.sqlite3"
    backup.write_bytes(b"")
    os.chmod(backup, 0o644)
    with DaemonProcess(["serve", "--config", str(cfg)], tmp_path) as daemon:
        r = httpx2.post(
            f"{daemon.url}/api/v1/jobs",
            json=job_doc("private"),
            headers={"Authorization": f"Bearer {TOKEN_A}"},
            trust_env=False,
        )
        assert r.status_code == 201, r.text
        assert wal_files(db) == {"": 0o600, "-wal": 0o600, "-shm": 0o600}
        done = subprocess.run(
            [sys.executable, "-m", "jobsd", "backup", "--config", str(cfg), "--force", str(backup)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert mode(backup) == 0o600
        daemon.stop()
    # A database left 0644 by an older jobsd is tightened at the next start, and says so.
    os.chmod(db, 0o644)
    with DaemonProcess(["serve", "--config", str(cfg)], tmp_path) as daemon:
        assert mode(db) == 0o600
        daemon.stop()
        assert "had mode 0644; jobsd made it 0600" in daemon.stderr()
