"""Start-up recovery: make the record true again after a crash.

Runs left RUNNING were in flight when the process died: nobody knows whether
their request completed, so they become FAILED/WORKER_LOST (never silently
retried, never lost). Runs left PENDING were committed but never started:
they stay PENDING and are executed now (the executor pool's dispatcher
reads them from the store at start, account by account, oldest first:
`jobsd.dispatch`), except those whose job was deleted, which become
CANCELED. Recovery only counts them, so a backlog of any depth costs it no
memory. Missed cron slots and late one-offs need nothing
here: their `next_run_at` is in the past and the scheduler's catch-up rule
(`jobsd.schedule.plan_fire`) decides on the first pass. Nor do retries still
held for their due instant: the scheduler's first pass releases every one
that came due while the daemon was down (`jobsd.store.retries`). A run lost
in flight is never retried, whatever its job's retry policy: nobody knows
whether its request was answered; it is a failure for good, so it alerts
(`jobsd.store.outbox`) in the recovery's transaction. Like every other
ending transaction (`jobsd.store.ends`), recovery tells the observer of the
runs it ended once it has committed, so `jobsd_runs_finished_total` and the
`run finished` lines count a run lost in a crash (the one failure an
operator most wants to see) and a run canceled here.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass

from jobsd.messages import RunEnded
from jobsd.store import ended_sql
from jobsd.store.ends import RunObserver
from jobsd.store.engine import Engine
from jobsd.store.outbox import AlertRecorder
from jobsd.store.outbox_rows import Recorded
from jobsd.store.runs_sql import DELETED_BEFORE_START, FINISHED_AT

log = logging.getLogger("jobsd")

LOST_ERROR = "the daemon stopped while this run's request was in flight (crash or kill)"

# Each statement repeats the partial index `runs_live`'s condition: SQLite uses
# a partial index only for a query that states its condition, and without it
# these read every run ever kept (a scan of `runs` at every start).
_LIVE = "status IN ('PENDING', 'RUNNING')"


@dataclass(frozen=True, slots=True)
class Recovery:
    lost: int
    canceled: int
    pending: int


def recover_tx(
    conn: sqlite3.Connection,
    now_us: int,
    alerts: AlertRecorder | None = None,
    ends: list[RunEnded] | None = None,
) -> tuple[Recovery, Recorded | None]:
    """With `ends`, the runs it ended are appended to it, read in this transaction."""
    lost_ids = [
        str(r[0])
        for r in conn.execute(
            "UPDATE runs SET status = 'FAILED', failure_reason = 'WORKER_LOST', error = ?, "
            f"finished_at_us = {FINISHED_AT} WHERE {_LIVE} AND status = 'RUNNING' RETURNING id",
            (LOST_ERROR, now_us),
        )
    ]
    lost = len(lost_ids)
    recorded = None if alerts is None else alerts.record(conn, lost_ids)
    canceled_ids = [
        str(r[0])
        for r in conn.execute(
            f"UPDATE runs SET status = 'CANCELED', finished_at_us = {FINISHED_AT}, "
            f"held_until_us = NULL, error = '{DELETED_BEFORE_START}' "
            f"WHERE {_LIVE} AND status = 'PENDING' "
            "AND (SELECT deleted_at_us FROM jobs WHERE id = runs.job_id) IS NOT NULL "
            "RETURNING id",
            (now_us,),
        )
    ]
    canceled = len(canceled_ids)
    if ends is not None:
        ends += ended_sql.ended(conn, lost_ids + canceled_ids)
    pending = int(
        conn.execute(f"SELECT count(*) FROM runs WHERE {_LIVE} AND status = 'PENDING'").fetchone()[
            0
        ]
    )
    return Recovery(lost=lost, canceled=canceled, pending=pending), recorded


async def recover(
    engine: Engine,
    now_us: int,
    alerts: AlertRecorder | None = None,
    observer: RunObserver | None = None,
) -> Recovery:
    """With `alerts`, runs lost in flight alert like any failure, in the same transaction;
    with `observer`, it hears of every run recovery ended, after the commit."""
    ends: list[RunEnded] = []
    recovery, recorded = await engine.write(
        lambda conn: recover_tx(conn, now_us, alerts, None if observer is None else ends)
    )
    if observer is not None and ends:
        observer.runs_ended(ends)
    if alerts is not None and recorded is not None:
        alerts.committed(recorded)
    if recovery.lost or recovery.canceled or recovery.pending:
        log.info(
            "recovery: %d runs lost in flight, %d canceled, %d pending to run",
            recovery.lost,
            recovery.canceled,
            recovery.pending,
        )
    return recovery
