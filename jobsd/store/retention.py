"""Run history retention in the store: bounded deletes through the one writer.

Each method deletes at most `limit` rows in one write, and stops after the
run that takes its batch past `max_bytes` of run text, so the writer thread
is never held for long: pruning a million runs is many short transactions
that interleave with the API's and the scheduler's writes, never one long
one. Rows alone did not bound it: a run keeps its request (a job's body, up
to 1 MiB) and the response's first 64 KiB, deleting a row walks its whole
overflow chain, and 250 runs of 1 MiB held the writer for over a second. A
batch reads the candidates' keys first, then deletes them one at a time,
adding up what each held. The caller (`jobsd.retention`) decides the pace.

Only finished runs are ever deleted. `finished_at_us IS NOT NULL` is exactly
"terminal" (a CHECK on `runs` ties it to the status), and is what the
partial indexes of migration 2 cover, so every query here is an index walk.

A deleted job's row goes once no run refers to it any more (its runs were
pruned): nothing can reach it then, and `jobs` does not grow forever with
churn. No index holds the deleted rows, so they are found on a reader (a
stretch of the table per batch) and the write deletes only those ids, each
checked again by its key: found by the delete itself, they cost a scan of
every job on the writer each pass (170 ms at a million jobs), even with
nothing to drop. The row with the highest id is kept even so, because SQLite hands out
max(id)+1 and a job's id must never be reused: sealed values and runs are
bound to it.

One finished run is kept whatever its age or rank: the SCHEDULE run of a
live one-off job for the job's instant (one per environment). Re-enabling
a one-off recomputes its `next_run_at` to that instant, and that run's row
in the unique `runs_slot` index is what keeps the instant from firing a
second time; pruned, the instant would fire again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from jobsd.store.engine import Engine
from jobsd.store.waiting_writes import write_when_free

# Run text one batch deletes, at most (plus the run that crosses it): ~2,000
# pages to free, tens of milliseconds on the writer.
BATCH_BYTES = 8 * 1024 * 1024
_SIZE = (
    "ifnull(length(CAST(request AS BLOB)), 0) + ifnull(length(CAST(result AS BLOB)), 0) "
    "+ ifnull(length(CAST(error AS BLOB)), 0)"
)


@dataclass(frozen=True, slots=True)
class Batch:
    """What one write deleted, and whether it stopped at a bound (more may be left)."""

    deleted: int
    more: bool


def _delete(conn: sqlite3.Connection, seqs: list[int], limit: int, max_bytes: int) -> Batch:
    """Delete the runs `seqs` in order until `max_bytes` of their text is gone."""
    size = 0
    for done, seq in enumerate(seqs):
        if done and size >= max_bytes:
            return Batch(done, more=True)
        rows = conn.execute(f"DELETE FROM runs WHERE seq = ? RETURNING {_SIZE}", (seq,))
        size += sum(int(r[0]) for r in rows.fetchall())
    return Batch(len(seqs), more=len(seqs) >= limit)


# Not the run that marks a live one-off's instant as fired (see the module note).
# `IS`: NULL from the subquery (no such job, `now`, cron) never matches.
_NOT_NEEDED = (
    "NOT (trigger = 'SCHEDULE' AND scheduled_for_us IS (SELECT jobsd_instant_us(j.schedule) "
    "FROM jobs AS j WHERE j.id = runs.job_id AND j.kind = 'one_off' "
    "AND j.deleted_at_us IS NULL))"
)


def prune_expired(
    conn: sqlite3.Connection, cutoff_us: int, limit: int, max_bytes: int = BATCH_BYTES
) -> Batch:
    """Delete up to `limit` runs that finished before `cutoff_us`."""
    seqs = conn.execute(
        "SELECT seq FROM runs WHERE finished_at_us < ? AND status NOT IN ('PENDING', 'RUNNING') "
        f"AND {_NOT_NEEDED} LIMIT ?",
        (cutoff_us, limit),
    ).fetchall()
    return _delete(conn, [int(r[0]) for r in seqs], limit, max_bytes)


def jobs_over_cap(conn: sqlite3.Connection, keep: int) -> list[int]:
    """Jobs (ids) with more than `keep` finished runs."""
    rows = conn.execute(
        "SELECT job_id FROM runs WHERE finished_at_us IS NOT NULL "
        "GROUP BY job_id HAVING count(*) > ? ORDER BY job_id",
        (keep,),
    ).fetchall()
    return [int(r[0]) for r in rows]


def prune_over_cap(
    conn: sqlite3.Connection, job_pk: int, keep: int, limit: int, max_bytes: int = BATCH_BYTES
) -> Batch:
    """Delete up to `limit` of a job's finished runs older than its newest `keep`.

    The boundary is found inside the same transaction, so a run that
    finished a moment ago is counted: the newest `keep` always survive.
    """
    boundary = conn.execute(
        "SELECT seq FROM runs WHERE job_id = ? AND finished_at_us IS NOT NULL "
        "ORDER BY seq DESC LIMIT 1 OFFSET ?",
        (job_pk, keep - 1),
    ).fetchone()
    if boundary is None:
        return Batch(0, more=False)
    seqs = conn.execute(
        "SELECT seq FROM runs WHERE job_id = ? AND finished_at_us IS NOT NULL AND seq < ? "
        f"AND status NOT IN ('PENDING', 'RUNNING') AND {_NOT_NEEDED} ORDER BY seq LIMIT ?",
        (job_pk, int(boundary[0]), limit),
    ).fetchall()
    return _delete(conn, [int(r[0]) for r in seqs], limit, max_bytes)


def deleted_jobs_to_drop(conn: sqlite3.Connection, after_id: int, limit: int) -> list[int]:
    """Up to `limit` deleted jobs past `after_id` that no run refers to, by id.

    A read: no index holds the deleted rows, so this walks the jobs table
    (a stretch of it per call), which must not happen on the writer.
    """
    rows = conn.execute(
        "SELECT j.id FROM jobs AS j WHERE j.id > ? AND j.deleted_at_us IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM runs AS r WHERE r.job_id = j.id) ORDER BY j.id LIMIT ?",
        (after_id, limit),
    ).fetchall()
    return [int(r[0]) for r in rows]


def drop_deleted_jobs(conn: sqlite3.Connection, ids: Sequence[int]) -> int:
    """Delete those of `ids` that may still go (checked again, each by its key); see
    the module note for the highest id."""
    if not ids:
        return 0
    marks = ", ".join("?" * len(ids))
    return conn.execute(
        f"DELETE FROM jobs WHERE id IN ({marks}) AND deleted_at_us IS NOT NULL "
        "AND id < (SELECT max(id) FROM jobs) "
        "AND NOT EXISTS (SELECT 1 FROM runs AS r WHERE r.job_id = jobs.id)",
        tuple(ids),
    ).rowcount


class RetentionStore:
    """The awaitable face of the functions above, for the retention actor; its writes
    wait out a database another process keeps locked (`jobsd.store.waiting_writes`)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def prune_expired(self, cutoff_us: int, limit: int, max_bytes: int) -> Batch:
        return await write_when_free(
            self._engine,
            lambda c: prune_expired(c, cutoff_us, limit, max_bytes),
            "retention's pruning",
        )

    async def jobs_over_cap(self, keep: int) -> list[int]:
        return await self._engine.read(lambda c: jobs_over_cap(c, keep))

    async def prune_over_cap(self, job_pk: int, keep: int, limit: int, max_bytes: int) -> Batch:
        return await write_when_free(
            self._engine,
            lambda c: prune_over_cap(c, job_pk, keep, limit, max_bytes),
            "retention's pruning",
        )

    def job_dropper(self, limit: int) -> Callable[[], Awaitable[Batch]]:
        """Each call drops up to `limit` deleted jobs, found on a reader past the last
        call's; job rows are small (a tombstone's large parts went at its delete)."""
        after = 0

        async def step() -> Batch:
            nonlocal after
            ids = await self._engine.read(lambda c: deleted_jobs_to_drop(c, after, limit))
            if not ids:
                return Batch(0, more=False)
            after = ids[-1]
            dropped = await write_when_free(
                self._engine, lambda c: drop_deleted_jobs(c, ids), "retention's pruning"
            )
            return Batch(dropped, more=len(ids) >= limit)

        return step
