"""Scheduled slots in the store: what is due, and firing it.

The scheduler's side of the runs table: which (job, environment)s are due
by an instant (with their effective cadence), and the one conditional
update plus insert that fires a slot. The update advances the environment
only if it is still due at the instant the scheduler believes; the unique
`(job, environment, scheduled_for)` index refuses a second run for a slot.

`overlap_policy` SKIP (our extension, Kubernetes CronJob's `Forbid`): a
slot that comes due while a run of the same job and environment is PENDING
or RUNNING, a retry held for its due instant included, sends nothing. It
is still recorded, in the same transaction: a SCHEDULE run for the slot,
CANCELED, never metered, whose `error` begins with `skipped:` and names
the run still going. The job advances as usual, so its next slot fires
normally once that run has ended. A one-off's single slot always fires:
skipping it would mean it never runs.

Under ALLOW a recurring slot's run may overlap a running one, but never
queue behind another slot's run of the same job and environment still
waiting to start: that slot is recorded skipped the same way (`error`
names the run waiting). Scheduled runs are never refused, so without this
an account whose runs could not keep up (targets that hang, on a plan with
no monthly quota to drain them) queued one more run per slot without end,
each sent hours late; now at most one per job and environment waits, as
catch-up gives the slots missed while down one run.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from jobsd.clock import from_us, to_us
from jobsd.errors import ScheduleError
from jobsd.job_model import OverlapPolicy
from jobsd.messages import RunOrder
from jobsd.runs import Trigger
from jobsd.schedule import first_fire, parse_schedule
from jobsd.store import environments_sql, jobs_sql, runs_sql


@dataclass(frozen=True, slots=True)
class DueJob:
    """A job due in one environment, with that environment's effective cadence."""

    job_pk: int
    environment: str
    schedule: str
    timezone: str | None
    next_run_at: datetime


@dataclass(frozen=True, slots=True)
class SlotFiring:
    """The scheduler's decision for one due (job, environment): fire `slot` (or skip), move on."""

    job_pk: int
    environment: str
    due: datetime
    slot: datetime | None
    next_run_at: datetime | None
    # The effective (schedule, timezone) the decision was made with; None: not checked.
    cadence: tuple[str, str | None] | None = None
    # With no slot and no next fire: pause the environment saying why (its
    # cadence cannot be read, `jobsd.scheduler`), rather than end it silently.
    paused_reason: str | None = None


def due_jobs(conn: sqlite3.Connection, until: datetime, limit: int) -> list[DueJob]:
    return [
        DueJob(pk, env, schedule, timezone, from_us(us))
        for pk, env, schedule, timezone, us in environments_sql.due_before(
            conn, to_us(until), limit
        )
        if schedule is not None
    ]


def due_units(conn: sqlite3.Connection, units: Sequence[tuple[int, str]]) -> list[DueJob]:
    """Of `units` (job pk, environment), those enabled with a next fire, as stored now."""
    rows = (environments_sql.due_of(conn, pk, env) for pk, env in units)
    return [
        DueJob(pk, env, schedule, timezone, from_us(us))
        for pk, env, schedule, timezone, us in filter(None, rows)
        if schedule is not None
    ]


_JOB = "(SELECT j.{0} FROM jobs AS j WHERE j.id = job_environments.job_id)"
_EFFECTIVE_SCHEDULE = f"coalesce(schedule, {_JOB.format('schedule')})"
_EFFECTIVE_TIMEZONE = f"coalesce(timezone, {_JOB.format('timezone')})"


def fire(
    conn: sqlite3.Connection, firing: SlotFiring, now_us: int, ended: list[str]
) -> tuple[bool, RunOrder | None]:
    """(whether the job advanced, the order for its new run); a skipped slot's run,
    recorded CANCELED, is appended to `ended`."""
    next_us = None if firing.next_run_at is None else to_us(firing.next_run_at)
    # A deleted job has no environment rows, so liveness needs no join. Being
    # due at the same instant is not enough: a write may have changed the cron
    # and kept that instant (`* * * * *` made `1 * * * *` at 02:00:45 is due at
    # 02:01 either way), and `next_run_at` planned from the old cron would then
    # fire a slot the new one does not have. So the cadence must match too.
    sql = (
        "UPDATE job_environments SET next_run_at_us = ?, enabled = CASE WHEN ? IS NULL THEN 0 "
        "ELSE enabled END, paused_reason = CASE WHEN ? IS NULL THEN paused_reason ELSE ? END "
        "WHERE job_id = ? AND environment = ? AND enabled = 1 AND next_run_at_us = ?"
    )
    reason = firing.paused_reason if next_us is None else None
    args: tuple[object, ...] = (next_us, next_us, reason, reason)
    args += (firing.job_pk, firing.environment, to_us(firing.due))
    if firing.cadence is not None:
        sql += f" AND {_EFFECTIVE_SCHEDULE} IS ? AND {_EFFECTIVE_TIMEZONE} IS ?"
        args += firing.cadence
    cur = conn.execute(sql, args)
    if cur.rowcount != 1:
        return False, None
    if firing.slot is None:
        return True, None
    job = jobs_sql.row_by_pk(conn, firing.job_pk)
    assert job is not None
    going = waiting = None
    if job["overlap_policy"] == OverlapPolicy.SKIP.value and job["kind"] == "recurring":
        going = conn.execute(
            "SELECT id, status FROM runs WHERE job_id = ? AND environment = ? "
            "AND status IN ('PENDING', 'RUNNING') ORDER BY seq LIMIT 1",
            (firing.job_pk, firing.environment),
        ).fetchone()
    elif job["kind"] == "recurring":
        waiting = conn.execute(_WAITING, (firing.job_pk, firing.environment)).fetchone()
    run_id = runs_sql.insert(
        conn,
        runs_sql.NewRun(
            account_id=job["account_id"],
            job_pk=firing.job_pk,
            job_slug=job["slug"],
            environment=firing.environment,
            trigger=Trigger.SCHEDULE,
            created_at_us=now_us,
            scheduled_for_us=to_us(firing.slot),
        ),
    )
    if run_id is None:
        return True, None
    if going is not None:
        error = (
            f"skipped: run {going['id']} of this job in {firing.environment} was still "
            f"{going['status']} when this slot came due (overlap_policy SKIP); no request "
            "was sent"
        )
        runs_sql.skip(conn, run_id, error=error, now_us=now_us)
        ended.append(run_id)
        return True, None
    if waiting is not None:
        error = (
            f"skipped: run {waiting[0]} of this job in {firing.environment}, for an earlier "
            "slot, was still waiting to start when this slot came due (one slot waits at a "
            "time); no request was sent"
        )
        runs_sql.skip(conn, run_id, error=error, now_us=now_us)
        ended.append(run_id)
        return True, None
    return True, RunOrder(run_id, str(job["account_id"]))


# A slot's run not yet started, of the same job and environment (the `runs_going`
# index: its condition stated, only the live runs of that job there are read).
_WAITING = (
    "SELECT id FROM runs WHERE job_id = ? AND environment = ? "
    "AND status IN ('PENDING', 'RUNNING') AND status = 'PENDING' AND trigger = 'SCHEDULE' "
    "AND held_until_us IS NULL LIMIT 1"
)


def rebase(
    conn: sqlite3.Connection, now: datetime, after: tuple[int, str], limit: int
) -> tuple[int, tuple[int, str] | None]:
    """After the clock stepped back to `now`: each enabled recurring environment
    (in key order past `after`, `limit` of them) whose stored next fire is later
    than its cadence's first slot after `now` moves back to that slot. Returns
    (how many moved, where to go on from; None at the end).

    Every `next_run_at` was planned on the clock before the step, so without
    this a step back of a day (a machine that booted a day ahead, NTP's step
    then) left every job silent for that day. A slot that already fired
    before the step is not fired again: the unique `(job, environment,
    scheduled_for)` index refuses its second run when its instant comes.
    """
    rows = conn.execute(
        "SELECT e.job_id, e.environment, coalesce(e.schedule, j.schedule), "
        "coalesce(e.timezone, j.timezone), e.next_run_at_us "
        "FROM job_environments AS e JOIN jobs AS j ON j.id = e.job_id "
        "WHERE (e.job_id, e.environment) > (?, ?) AND e.enabled = 1 "
        "AND e.next_run_at_us > ? AND j.kind = 'recurring' "
        "ORDER BY e.job_id, e.environment LIMIT ?",
        (*after, to_us(now), limit),
    ).fetchall()
    moved = 0
    for pk, env, schedule, timezone, stored_us in rows:
        try:
            slot = first_fire(parse_schedule(schedule, timezone), now=now)
        except ScheduleError:
            continue  # the scheduler pauses it when it comes due (`jobsd.cadences`)
        if to_us(slot) < stored_us:
            moved += conn.execute(
                "UPDATE job_environments SET next_run_at_us = ? WHERE job_id = ? "
                "AND environment = ? AND next_run_at_us = ?",
                (to_us(slot), pk, env, stored_us),
            ).rowcount
    going_on = (int(rows[-1][0]), str(rows[-1][1])) if len(rows) >= limit else None
    return moved, going_on
