"""Retry runs in the store: scheduled with the failure they answer, released when due.

`schedule_retry` runs inside the transaction that records a run FAILED
(`RunStore.finish`): the failure and its retry commit together or not at
all, so no crash can leave a failure its policy retries without its retry,
nor a retry without its failure. The policy is the one in force at that
moment: the run's environment's override, else the job's base
`retry_policy` (`jobsd.retry` decides whether and how long to wait). The
retry is a new run, trigger RETRY, PENDING and *held*: `held_until_us` is
its due instant, and nothing hands it to an executor before the scheduler
releases it (`release`, one conditional update per retry: a retry is
released once however often a stale scheduler asks). Its `scheduled_for`
keeps the due instant for good, so its lateness shows as a scheduled
run's does.

A chain ends when a retry succeeds, when the policy says no more (attempts,
failure reasons, statuses), when the account already holds
`MAX_HELD_RETRIES` retries (the failed run's `error` says so), when a retry
is canceled or refused for quota (neither passes through here: only a
finished request is retried), when the job is gone, or when its
environment leaves the account's config (`cancel_held_outside`: nothing
fires in a dormant environment). A run lost in flight (WORKER_LOST) is
never retried.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime

from jobsd.clock import from_us, to_us
from jobsd.messages import Outcome, RetryHeld, RunOrder
from jobsd.retry import retry_delay, should_retry
from jobsd.runs import Trigger
from jobsd.store import environments_sql, jobs_sql, runs_sql
from jobsd.store.pending_counts import MAX_HELD_RETRIES, held_count
from jobsd.store.policies import policy_rules

_NOT_HELD = (
    f"not retried: the account already holds {MAX_HELD_RETRIES} retries waiting for "
    "their instant (the most it may)"
)


def schedule_retry(
    conn: sqlite3.Connection, run: sqlite3.Row, outcome: Outcome, now: datetime
) -> RetryHeld | None:
    """The retry the run's policy asks for after this failure, inserted held; None if none."""
    reason = outcome.failure_reason
    if reason is None:
        return None
    job = jobs_sql.row_by_pk(conn, run["job_id"])
    if job is None or job["deleted_at_us"] is not None:
        return None
    env = environments_sql.env_row(conn, job["id"], run["environment"])
    policy_id = job["retry_policy"]
    if env is not None and env["retry_policy"] is not None:
        policy_id = env["retry_policy"]
    if policy_id is None:
        return None
    rules = policy_rules(conn, run["account_id"], policy_id)
    attempt = (run["retry_attempt"] or 0) + 1
    result = outcome.result or {}
    status = result.get("status")
    http_status = status if isinstance(status, int) else None
    if rules is None or not should_retry(rules, reason, http_status, attempt):
        return None
    if held_count(conn, run["account_id"]) >= MAX_HELD_RETRIES:
        conn.execute(
            "UPDATE runs SET error = coalesce(error || '; ', '') || ? WHERE id = ?",
            (_NOT_HELD, run["id"]),
        )
        return None
    headers = result.get("headers")
    retry_after = headers.get("retry-after") if isinstance(headers, dict) else None
    delay = retry_delay(
        rules,
        attempt,
        retry_after if isinstance(retry_after, str) else None,
        now,
        http_status=http_status,
    )
    due_us = to_us(now + delay)
    run_id = runs_sql.insert(
        conn,
        runs_sql.NewRun(
            account_id=run["account_id"],
            job_pk=run["job_id"],
            job_slug=run["job_slug"],
            environment=run["environment"],
            trigger=Trigger.RETRY,
            created_at_us=to_us(now),
            scheduled_for_us=due_us,
            retry=runs_sql.RetryOf(
                original=run["retry_of"] or run["id"], attempt=attempt, previous=run["id"]
            ),
        ),
    )
    return None if run_id is None else RetryHeld(run_id, from_us(due_us))


def held_before(conn: sqlite3.Connection, until_us: int, limit: int) -> list[RetryHeld]:
    """Retries still held that are due by `until_us`, soonest first (the `runs_held` index)."""
    rows = conn.execute(
        "SELECT id, held_until_us FROM runs WHERE held_until_us <= ? "
        "ORDER BY held_until_us LIMIT ?",
        (until_us, limit),
    ).fetchall()
    return [RetryHeld(str(r[0]), from_us(int(r[1]))) for r in rows]


def shift_held(
    conn: sqlite3.Connection, by_us: int, now_us: int, after: tuple[int, str], limit: int
) -> tuple[int, tuple[int, str] | None]:
    """After the clock stepped back by `-by_us` to `now_us`: each retry held for
    an instant after now (in due order past `after`, `limit` of them) is due
    `by_us` earlier, never before now, so that it still waits its delay from
    its failure (planned on the clock before the step, a 10 s delay waited an
    hour after an hour's step). Returns (how many, where to go on from)."""
    rows = conn.execute(
        "SELECT id, held_until_us FROM runs WHERE held_until_us > ? "
        "AND (held_until_us, id) > (?, ?) ORDER BY held_until_us, id LIMIT ?",
        (now_us, *after, limit),
    ).fetchall()
    for run_id, held_us in rows:  # a shifted one lands before the batch's end: not seen again
        due_us = max(now_us, int(held_us) + by_us)
        conn.execute(
            "UPDATE runs SET held_until_us = ?, scheduled_for_us = ? WHERE id = ? "
            "AND held_until_us = ?",
            (due_us, due_us, run_id, held_us),
        )
    going_on = (int(rows[-1][1]), str(rows[-1][0])) if len(rows) >= limit else None
    return len(rows), going_on


def release(conn: sqlite3.Connection, due: Sequence[RetryHeld]) -> list[RunOrder]:
    """Release each retry still held for exactly its `due`; the orders for those released."""
    orders: list[RunOrder] = []
    for held in due:
        row = conn.execute(
            "UPDATE runs SET held_until_us = NULL WHERE id = ? AND held_until_us = ? "
            "AND status = 'PENDING' RETURNING account_id",
            (held.run_id, to_us(held.due)),
        ).fetchone()
        if row is not None:
            orders.append(RunOrder(held.run_id, str(row[0])))
    return orders


def cancel_held_outside(
    conn: sqlite3.Connection, configured: Mapping[str, Sequence[str]], *, now_us: int
) -> list[str]:
    """Cancel retries held for an instant in an environment their account's config
    (`configured`: account id -> environments) no longer lists: nothing fires
    there. Accounts not named are left alone. Their ids."""
    return cancel_held(conn, held_outside(conn, configured), now_us=now_us)


def held_outside(
    conn: sqlite3.Connection, configured: Mapping[str, Sequence[str]]
) -> list[tuple[str, str]]:
    """(run id, environment) of the retries `cancel_held_outside` cancels: one walk
    of the `runs_held` index (only held retries)."""
    held = conn.execute(
        "SELECT id, account_id, environment FROM runs WHERE held_until_us IS NOT NULL"
    ).fetchall()
    return [
        (str(run_id), str(environment))
        for run_id, account_id, environment in held
        if (listed := configured.get(str(account_id))) is not None and environment not in listed
    ]


def cancel_held(
    conn: sqlite3.Connection, held: Sequence[tuple[str, str]], *, now_us: int
) -> list[str]:
    """Cancel those of `held` (run id, environment) still held; an update each. Their ids."""
    canceled = []
    for run_id, environment in held:
        still = conn.execute(
            "SELECT 1 FROM runs WHERE id = ? AND held_until_us IS NOT NULL", (run_id,)
        ).fetchone()
        error = (
            f"the environment {environment} was removed from the account's config "
            "before this retry was due; nothing fires there"
        )
        if still and runs_sql.cancel(conn, run_id, now_us=now_us, error=error):
            canceled.append(run_id)
    return canceled
