"""Retention's batches are bounded by the run text they delete, not only by rows.

A run keeps its request (a job's body, up to 1 MiB) and the response's
first 64 KiB. Deleting a row walks its whole overflow chain, so 250 runs of
1 MiB made one transaction of ~250 MiB of page reads: over a second on the
writer thread (measured 1.3 s on the review machine, page cache warm) that
every API write and run end waited behind, batch after batch.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from jobsd.clock import Clock, to_us
from jobsd.config import RetentionConfig
from jobsd.crypto import KeyRing
from jobsd.retention import prune_once
from jobsd.store import open_store
from jobsd.store.retention import BATCH_BYTES
from tests.test_retention import DAY_US, T0, count_tables, make_jobs

RUN_BYTES = 1024 * 1024


def large_runs(conn: sqlite3.Connection, pk: int, count: int, age_us: int) -> None:
    request = '{"method": "POST", "body": "' + "b" * RUN_BYTES + '"}'
    conn.executemany(
        "INSERT INTO runs (id, account_id, job_id, job_slug, trigger, status, created_at_us, "
        "finished_at_us, request, result) VALUES (?, 'acme', ?, 'x', 'MANUAL', 'SUCCEEDED', ?, ?, "
        "?, '{}')",
        [
            (str(uuid.uuid4()), pk, to_us(T0) - age_us - 1, to_us(T0) - age_us, request)
            for _ in range(count)
        ],
    )


async def test_a_batch_of_large_runs_stops_at_its_byte_budget(tmp_path: Path) -> None:
    policy = RetentionConfig(days=7, max_runs_per_job=4)
    async with open_store(tmp_path / "db", KeyRing.load_or_create(tmp_path / "k"), Clock(T0)) as s:
        old, busy = await make_jobs(s, 2, [False, False])
        await s.engine.write(lambda c: large_runs(c, old, 24, 30 * DAY_US))
        await s.engine.write(lambda c: large_runs(c, busy, 24, DAY_US))
        report = await prune_once(s.retention, policy, T0, batch_rows=250, pause_s=0)
        left = await s.engine.read(
            lambda c: c.execute("SELECT job_id, count(*) FROM runs GROUP BY job_id").fetchall()
        )
        kept, recount = await s.engine.read(count_tables)
    # Everything the policy says goes, went (a short batch is not the end)...
    assert (report.expired, report.over_cap) == (24, 20)
    assert [tuple(r) for r in left] == [(busy, 4)]
    assert kept == recount
    # ... and no transaction deleted much more than the budget (one run past it at most).
    assert report.largest_batch <= BATCH_BYTES // RUN_BYTES + 1
