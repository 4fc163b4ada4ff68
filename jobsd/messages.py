"""Frozen values that cross actor boundaries.

Everything about runs sent on a channel, or handed from the store to the
API or an executor, is one of these (what a job is lives in
`jobsd.job_model`): immutable, so no two actors ever share mutable state,
and small, so a full channel costs little memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from jobsd.runs import FailureReason, RunStatus, Trigger


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    account_id: str
    job_pk: int
    job_slug: str
    job_version: int | None
    environment: str
    trigger: Trigger
    rerun_of: str | None
    scheduled_for: datetime | None
    status: RunStatus
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    failure_reason: FailureReason | None
    error: str | None
    request: dict[str, object] | None
    result: dict[str, object] | None
    # A RETRY run's place in its chain: the chain's original run, this
    # retry's number (1 for the first), and the run it retries.
    retry_of: str | None = None
    retry_attempt: int | None = None
    retried_run: str | None = None


@dataclass(frozen=True, slots=True)
class RunEnded:
    """A run that reached a terminal state, told once that has committed.

    What metrics and the run's log line need, and no more: no request,
    result or error text, which may carry what a log must not.
    """

    run_id: str
    account_id: str
    job_slug: str
    environment: str
    trigger: Trigger
    status: RunStatus
    failure_reason: FailureReason | None
    created_at: datetime
    scheduled_for: datetime | None
    started_at: datetime | None
    finished_at: datetime


# -- channel messages ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobChanged:
    """Sent by the store after a commit that changed when a job fires in an environment.

    `next_run_at` None means it no longer fires there (paused, deleted, a
    fired one-off, an environment gone from the config).
    `schedule`/`timezone` are the environment's effective ones. The scheduler
    takes the news as naming the unit only and reads the unit back from the
    store: news of one writer batch may arrive out of commit order.
    """

    job_pk: int
    environment: str
    schedule: str | None
    timezone: str | None
    next_run_at: datetime | None


@dataclass(frozen=True, slots=True)
class RetryHeld:
    """Sent by the store after a commit that scheduled a retry: PENDING, held until `due`.

    The scheduler releases it to the executors at `due` (`jobsd.scheduler`).
    """

    run_id: str
    due: datetime


@dataclass(frozen=True, slots=True)
class ClockMoved:
    """Sent by the clock watch after it re-anchored the daemon's clock on the
    system's (`jobsd.clock_watch`): every wake-up computed before is off by
    `by_s`, so the scheduler computes its next one afresh."""

    by_s: float


SchedulerNews = JobChanged | RetryHeld | ClockMoved


@dataclass(frozen=True, slots=True)
class RunOrder:
    """A committed PENDING run for the executor pool to claim and perform.

    `account_id` chooses its lane in the pool's fair queue (`jobsd.fairqueue`).
    """

    run_id: str
    account_id: str


@dataclass(frozen=True, slots=True)
class CancelRun:
    """Abandon a run's request in flight; the store has already recorded it."""

    run_id: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one delivery produced, ready to be recorded on the run."""

    status: RunStatus
    failure_reason: FailureReason | None
    error: str | None
    request: dict[str, object]
    result: dict[str, object] | None
    # False: refused before any request left (no secret to sign with). The claim
    # metered it; a run is metered only once its request starts, so the record
    # takes the meter back (`jobsd.store.usage_sql.unmeter_run`).
    sent: bool = True
