"""Run rows: SQL, the mapping to `Run`, and every status transition.

Each transition is a conditional UPDATE whose WHERE names the states it may
leave (from `jobsd.runs.sources_of`), and whose row count is checked by the
caller: a run canceled a moment ago is simply not claimed, and a run that
was claimed is never claimed twice.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from jobsd.clock import from_us
from jobsd.messages import Outcome, Run
from jobsd.runs import RunStatus, Trigger, sources_of
from jobsd.store.ended_sql import ENDED_COLUMNS, REASONS, STATUSES, TRIGGERS

COLUMNS = (
    "seq, id, account_id, job_id, job_slug, job_version, environment, trigger, rerun_of, "
    "scheduled_for_us, status, created_at_us, started_at_us, finished_at_us, failure_reason, "
    "error, request, result, retry_of, retry_attempt, retried_run, held_until_us"
)


# A run's instants never go backwards, even when the wall clock did between
# the process that created or started it and the one recording the next step
# (a restored VM, an RTC corrected by NTP): each is clamped to the one before.
STARTED_AT = "max(?, created_at_us)"
DELETED_BEFORE_START = "the job was deleted before this run started"
FINISHED_AT = "max(?, created_at_us, coalesce(started_at_us, created_at_us))"


def _opt_time(us: int | None) -> datetime | None:
    return None if us is None else from_us(us)


def _opt_json(raw: str | None) -> dict[str, object] | None:
    return None if raw is None else json.loads(raw)  # type: ignore[no-any-return]


def to_run(row: sqlite3.Row) -> Run:
    return Run(
        id=row["id"],
        account_id=row["account_id"],
        job_pk=row["job_id"],
        job_slug=row["job_slug"],
        job_version=row["job_version"],
        environment=row["environment"],
        trigger=TRIGGERS[row["trigger"]],
        rerun_of=row["rerun_of"],
        scheduled_for=_opt_time(row["scheduled_for_us"]),
        status=STATUSES[row["status"]],
        created_at=from_us(row["created_at_us"]),
        started_at=_opt_time(row["started_at_us"]),
        finished_at=_opt_time(row["finished_at_us"]),
        failure_reason=REASONS[row["failure_reason"]],
        error=row["error"],
        request=_opt_json(row["request"]),
        result=_opt_json(row["result"]),
        retry_of=row["retry_of"],
        retry_attempt=row["retry_attempt"],
        retried_run=row["retried_run"],
    )


def live_counts(conn: sqlite3.Connection) -> tuple[int, int]:
    """(PENDING, RUNNING) runs, counted on the partial index over live runs."""
    counts = dict(
        conn.execute(
            "SELECT status, COUNT(*) FROM runs WHERE status IN ('PENDING', 'RUNNING') "
            "GROUP BY status"
        ).fetchall()
    )
    return int(counts.get("PENDING", 0)), int(counts.get("RUNNING", 0))


# Built once: a claim and a finish each use one on the writer thread.
_WHERE_FROM = {
    dst: "status IN (" + ", ".join(f"'{s.value}'" for s in sources_of(dst)) + ")"
    for dst in RunStatus
}


def _where_from(dst: RunStatus) -> str:
    return _WHERE_FROM[dst]


@dataclass(frozen=True, slots=True)
class RetryOf:
    """Where a RETRY run sits: the chain's original run, its number, the run it retries."""

    original: str
    attempt: int
    previous: str


_INSERT = (
    "INSERT OR IGNORE INTO runs (id, account_id, job_id, job_slug, environment, trigger, "
    "rerun_of, scheduled_for_us, status, created_at_us, retry_of, retry_attempt, "
    "retried_run, held_until_us) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'PENDING', ?, ?, ?, ?, ?)"
)
_INSERT_RETURNING = f"{_INSERT} RETURNING {COLUMNS}"


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run to insert, PENDING; a retry is held until its due instant, `scheduled_for_us`."""

    account_id: str
    job_pk: int
    job_slug: str
    environment: str
    trigger: Trigger
    created_at_us: int
    scheduled_for_us: int | None = None
    rerun_of: str | None = None
    retry: RetryOf | None = None

    def values(self) -> tuple[object, ...]:
        """`_INSERT`'s parameters, under a new id."""
        retry = self.retry
        return (
            str(uuid.uuid4()),
            self.account_id,
            self.job_pk,
            self.job_slug,
            self.environment,
            self.trigger.value,
            self.rerun_of,
            self.scheduled_for_us,
            self.created_at_us,
            None if retry is None else retry.original,
            None if retry is None else retry.attempt,
            None if retry is None else retry.previous,
            None if retry is None else self.scheduled_for_us,
        )


def insert(conn: sqlite3.Connection, run: NewRun) -> str | None:
    """Insert the run; its id, or None when its scheduled slot (or its retry attempt) has one."""
    values = run.values()
    cur = conn.execute(_INSERT, values)
    return str(values[0]) if cur.rowcount == 1 else None


def insert_returning(conn: sqlite3.Connection, run: NewRun) -> sqlite3.Row | None:
    """`insert`, the new row (`COLUMNS`) returned by the same statement rather than read
    again (each statement costs the writer GIL hand-overs); None when it was ignored."""
    row: sqlite3.Row | None = conn.execute(_INSERT_RETURNING, run.values()).fetchone()
    return row


def by_id(conn: sqlite3.Connection, run_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        f"SELECT {COLUMNS} FROM runs WHERE id = ?", (run_id,)
    ).fetchone()
    return row


def of_account(
    conn: sqlite3.Connection,
    account_id: str,
    run_id: str,
    environments: Collection[str] | None = None,
) -> sqlite3.Row | None:
    """The run if the account has it and (when given) it ran in one of `environments`."""
    row: sqlite3.Row | None = conn.execute(
        f"SELECT {COLUMNS} FROM runs WHERE id = ? AND account_id = ?", (run_id, account_id)
    ).fetchone()
    if row is not None and environments is not None and row["environment"] not in environments:
        return None
    return row


def start(
    conn: sqlite3.Connection, run_id: str, *, now_us: int, job_version: int, period: str
) -> bool:
    """PENDING -> RUNNING; never for a retry still held (not yet due)."""
    cur = conn.execute(_START, (now_us, job_version, period, run_id))
    return cur.rowcount == 1


_START = (
    f"UPDATE runs SET status = 'RUNNING', started_at_us = {STARTED_AT}, job_version = ?, "
    f"metered_period = ? WHERE id = ? AND {_where_from(RunStatus.RUNNING)} "
    "AND held_until_us IS NULL"
)


def refuse_for_quota(
    conn: sqlite3.Connection,
    run_id: str,
    *,
    now_us: int,
    job_version: int,
    error: str,
) -> bool:
    cur = conn.execute(
        "UPDATE runs SET status = 'FAILED', failure_reason = 'QUOTA_EXCEEDED', error = ?, "
        f"finished_at_us = {FINISHED_AT}, job_version = ? WHERE id = ? AND status = 'PENDING'",
        (
            error,
            now_us,
            job_version,
            run_id,
        ),
    )
    return cur.rowcount == 1


def finish(
    conn: sqlite3.Connection, run_id: str, outcome: Outcome, *, now_us: int
) -> sqlite3.Row | None:
    """RUNNING -> the outcome; the run as it ended (`ENDED_COLUMNS`, and what a retry
    needs: `job_id`, `retry_of`, `retry_attempt`), or None when it was not RUNNING."""
    rows = conn.execute(
        _FINISH[outcome.status],
        (
            outcome.status.value,
            None if outcome.failure_reason is None else outcome.failure_reason.value,
            outcome.error,
            json.dumps(outcome.request),
            None if outcome.result is None else json.dumps(outcome.result),
            now_us,
            run_id,
        ),
    ).fetchall()
    return rows[0] if rows else None


_FINISH = {
    status: f"UPDATE runs SET status = ?, failure_reason = ?, error = ?, request = ?, "
    f"result = ?, finished_at_us = {FINISHED_AT} WHERE id = ? AND {_where_from(status)} "
    f"AND status = 'RUNNING' RETURNING {ENDED_COLUMNS}, job_id, retry_of, retry_attempt"
    for status in RunStatus
}


def cancel(conn: sqlite3.Connection, run_id: str, *, now_us: int, error: str | None = None) -> bool:
    cur = conn.execute(
        f"UPDATE runs SET status = 'CANCELED', finished_at_us = {FINISHED_AT}, "
        "held_until_us = NULL, error = coalesce(?, error) "
        f"WHERE id = ? AND {_where_from(RunStatus.CANCELED)}",
        (now_us, error, run_id),
    )
    return cur.rowcount == 1


def skip(conn: sqlite3.Connection, run_id: str, *, error: str, now_us: int) -> bool:
    """A slot skipped by its overlap policy: PENDING -> CANCELED, saying why."""
    cur = conn.execute(
        f"UPDATE runs SET status = 'CANCELED', finished_at_us = {FINISHED_AT}, error = ? "
        "WHERE id = ? AND status = 'PENDING'",
        (now_us, error, run_id),
    )
    return cur.rowcount == 1


def cancel_pending_of_job(conn: sqlite3.Connection, job_pk: int, *, now_us: int) -> list[str]:
    ids = [
        str(r[0])
        for r in conn.execute(
            "SELECT id FROM runs WHERE job_id = ? AND status = 'PENDING'", (job_pk,)
        )
    ]
    conn.execute(
        f"UPDATE runs SET status = 'CANCELED', finished_at_us = {FINISHED_AT}, "
        f"held_until_us = NULL, error = '{DELETED_BEFORE_START}' "
        "WHERE job_id = ? AND status = 'PENDING'",
        (now_us, job_pk),
    )
    return ids


def mark_lost(
    conn: sqlite3.Connection, run_id: str, *, now_us: int, error: str, request: str | None = None
) -> bool:
    """RUNNING -> FAILED/WORKER_LOST; `request` (JSON), when known, is what was being sent."""
    cur = conn.execute(
        "UPDATE runs SET status = 'FAILED', failure_reason = 'WORKER_LOST', error = ?, "
        f"request = coalesce(?, request), finished_at_us = {FINISHED_AT} "
        "WHERE id = ? AND status = 'RUNNING'",
        (error, request, now_us, run_id),
    )
    return cur.rowcount == 1


def record_request(conn: sqlite3.Connection, run_id: str, request: str) -> bool:
    """The request (JSON) a run canceled while RUNNING was sending, on its record."""
    cur = conn.execute(
        "UPDATE runs SET request = ? WHERE id = ? AND status = 'CANCELED' "
        "AND started_at_us IS NOT NULL AND request IS NULL",
        (request, run_id),
    )
    return cur.rowcount == 1
