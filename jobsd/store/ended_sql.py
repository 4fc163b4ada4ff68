"""Runs that ended, as the observer is told of them (`RunEnded`).

The columns, their mapping, and the read by ids that `jobsd.store.ends`
makes inside an ending transaction; a statement that ends a run may
return `ENDED_COLUMNS` itself (`runs_sql.finish`) and spare that read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from jobsd.clock import from_us
from jobsd.messages import RunEnded
from jobsd.runs import FailureReason, RunStatus, Trigger

# What the observer is told of a run that ended (`RunEnded`).
ENDED_COLUMNS = (
    "id, account_id, job_slug, environment, trigger, status, failure_reason, created_at_us, "
    "scheduled_for_us, started_at_us, finished_at_us"
)


# A stored value to its member by a dict lookup, not a call of the Enum (~20x
# cheaper): every run's rows are converted on the writer thread. The columns'
# CHECK constraints hold only these values.
TRIGGERS = {t.value: t for t in Trigger}
STATUSES = {s.value: s for s in RunStatus}
REASONS: dict[str | None, FailureReason | None] = {None: None} | {r.value: r for r in FailureReason}


def to_ended(row: sqlite3.Row) -> RunEnded:
    return RunEnded(
        run_id=row["id"],
        account_id=row["account_id"],
        job_slug=row["job_slug"],
        environment=row["environment"],
        trigger=TRIGGERS[row["trigger"]],
        status=STATUSES[row["status"]],
        failure_reason=REASONS[row["failure_reason"]],
        created_at=from_us(row["created_at_us"]),
        scheduled_for=_opt_time(row["scheduled_for_us"]),
        started_at=_opt_time(row["started_at_us"]),
        finished_at=from_us(row["finished_at_us"]),
    )


def ended(conn: sqlite3.Connection, run_ids: Sequence[str]) -> list[RunEnded]:
    """The runs `run_ids` as `RunEnded`, for the observer; read inside the ending transaction."""
    found: list[RunEnded] = []
    for start in range(0, len(run_ids), 500):
        chunk = run_ids[start : start + 500]
        rows = conn.execute(
            f"SELECT {ENDED_COLUMNS} FROM runs "
            f"WHERE id IN ({', '.join('?' * len(chunk))}) AND finished_at_us IS NOT NULL",
            chunk,
        )
        found += [to_ended(row) for row in rows]
    return found


def _opt_time(us: int | None) -> datetime | None:
    return None if us is None else from_us(us)
