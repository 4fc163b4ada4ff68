"""Start-up refuses a database it cannot trust, saying what to do."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobsd.clock import Clock
from jobsd.crypto import KeyRing
from jobsd.errors import StorageError
from jobsd.messages import HttpConfig
from jobsd.store import open_store
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


def _damage(db: Path) -> None:
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) > 20 * page
    for offset in range(10 * page, 10 * page + 600, 7):
        data[offset] = 0xA5
    db.write_bytes(bytes(data))


async def test_damaged_pages_refused(tmp_path: Path) -> None:
    db = await _filled(tmp_path)
    _damage(db)
    with pytest.raises(StorageError, match="backup"):
        async with open_store(db, KeyRing.load_or_create(tmp_path / "secret.key"), Clock(T0)):
            pass


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


async def test_cli_refuses_a_newer_schema(tmp_path: Path) -> None:
    db = await _filled(tmp_path)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (LATEST + 1,))
    out = _serve(tmp_path)
    assert out.returncode == 2
    assert "upgrade jobsd" in out.stderr and "Traceback" not in out.stderr
