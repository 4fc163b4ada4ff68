"""What a retention pass costs the one writer: each write bounded by what it deletes.

Runs: a batch is bounded by the run text it deletes, not only by rows. A
run keeps its request (a job's body, up to 1 MiB) and the response's first
64 KiB. Deleting a row walks its whole overflow chain, so 250 runs of 1 MiB
made one transaction of ~250 MiB of page reads: over a second on the
writer thread (measured 1.3 s on the review machine, page cache warm) that
every API write and run end waited behind, batch after batch.

Deleted jobs: the tombstones that no run refers to any more were found by
the delete itself, a scan of every job row (no index holds the deleted
ones) on the writer thread, every pass even with nothing to drop: 170 ms a
pass at a million jobs. They are found on a reader now, a stretch at a time,
and the write only deletes those ids, checking each again by its key.
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


def jobs(conn: sqlite3.Connection, tombstones: int, live: int) -> None:
    conn.executemany(
        "INSERT INTO jobs (account_id, slug, name, name_key, kind, schedule, method, url, "
        "success_status, tls_verify, timeout_s, created_at_us, updated_at_us, deleted_at_us) "
        "VALUES ('acme', ?, 'j', 'j', 'recurring', '0 2 * * *', 'POST', 'http://x/', '2xx', 1, "
        "30, 1, 1, ?)",
        [(f"j{i}", 5 if i < tombstones else None) for i in range(tombstones + live)],
    )


async def test_dropping_deleted_jobs_does_not_walk_every_job_on_the_writer(tmp_path: Path) -> None:
    live = 50_000
    steps = 0

    def step() -> int:
        nonlocal steps
        steps += 1
        return 0

    async with open_store(tmp_path / "db", KeyRing.load_or_create(tmp_path / "k"), Clock(T0)) as s:
        await s.engine.write(lambda c: jobs(c, 5, live))
        await s.engine.write(lambda c: c.set_progress_handler(step, 100))
        report = await prune_once(s.retention, RetentionConfig(), T0, batch_rows=2, pause_s=0)
        await s.engine.write(lambda c: c.set_progress_handler(None, 100))
        (tombstones,) = await s.engine.read(
            lambda c: c.execute(
                "SELECT count(*) FROM jobs WHERE deleted_at_us IS NOT NULL"
            ).fetchone()
        )
    assert (report.jobs_dropped, tombstones) == (5, 0)
    # The writer ran a few hundred instructions per id, not some for every job row.
    assert steps * 100 < live
