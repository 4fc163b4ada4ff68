"""The WAL file returns to a bounded size after a long reader lets it grow.

A reader that holds one snapshot (`jobsd backup`'s copy, a streamed list)
keeps every commit made meanwhile in the WAL: it cannot be checkpointed
past that snapshot. SQLite reuses the file from its start once a
checkpoint completes, but without `journal_size_limit` never makes it
smaller, so a backup taken under write load left the `-wal` at its peak
size (the writes of the whole copy) until the daemon restarted.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from pathlib import Path

import pytest

from jobsd.clock import Clock
from jobsd.crypto import KeyRing
from jobsd.store import engine, open_store
from tests.test_retention import T0, make_jobs


def runs(conn: sqlite3.Connection, pk: int, count: int) -> None:
    conn.executemany(
        "INSERT INTO runs (id, account_id, job_id, job_slug, trigger, status, created_at_us, "
        "finished_at_us, result) VALUES (?, 'acme', ?, 'x', 'MANUAL', 'SUCCEEDED', 1, 2, ?)",
        [(str(uuid.uuid4()), pk, "r" * 60_000) for _ in range(count)],
    )


async def test_the_wal_shrinks_back_after_a_long_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "WAL_SIZE_LIMIT", 8 * 1024 * 1024)  # 64 MiB: a slower test
    limit = engine.WAL_SIZE_LIMIT
    db = tmp_path / "db"
    wal = Path(f"{db}-wal")
    async with open_store(db, KeyRing.load_or_create(tmp_path / "k"), Clock(T0)) as s:
        (pk,) = await make_jobs(s, 1, [False])
        reader = sqlite3.connect(db, isolation_level=None)
        try:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM runs").fetchone()  # holds its snapshot
            for _ in range(60):  # ~36 MB of commits the reader pins
                await s.engine.write(lambda c: runs(c, pk, 10))
            assert os.path.getsize(wal) > 2 * limit
            reader.execute("COMMIT")
        finally:
            reader.close()
        for _ in range(200):  # past a checkpoint, and the restart of the WAL after it
            await s.engine.write(lambda c: runs(c, pk, 1))
        assert os.path.getsize(wal) <= limit
