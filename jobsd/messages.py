"""Frozen values that cross actor boundaries.

Everything sent on a channel, or handed from the store to the API or an
executor, is one of these: immutable, so no two actors ever share mutable
state, and small, so a full channel costs little memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from jobsd.runs import FailureReason, RunStatus, Trigger

# jobsd's own request headers (run id, job, scheduled instant) start with this;
# a job may not set such a name, so a target never gets two of them.
OWN_HEADER_PREFIX = "X-Jobsd-"


@dataclass(frozen=True, slots=True)
class Header:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """The request a job performs (`JobHttpConfiguration`), values in plaintext."""

    url: str
    method: str = "POST"
    headers: tuple[Header, ...] = ()
    success_status: str = "2xx"
    tls_verify: bool = True
    ca_cert: str | None = None
    body: str | None = None
    timeout_s: int = 30

    def job_headers(self) -> tuple[Header, ...]:
        """The headers a run sends for the job: without any under jobsd's own
        prefix, which a job stored before that rule may still hold."""
        own = OWN_HEADER_PREFIX.lower()
        return tuple(h for h in self.headers if not h.name.lower().startswith(own))

    def payload(self) -> bytes:
        """The body's bytes as sent, and as signed."""
        return (self.body or "").encode("utf-8")


@dataclass(frozen=True, slots=True)
class JobSpec:
    """The writable part of a job, validated; what create and replace take."""

    slug: str
    name: str
    description: str | None
    enabled: bool
    schedule: str
    config: HttpConfig


@dataclass(frozen=True, slots=True)
class Job:
    """A job as stored: its spec plus what the service maintains."""

    pk: int
    account_id: str
    spec: JobSpec
    next_run_at: datetime | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    version: int


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    account_id: str
    job_pk: int
    job_slug: str
    job_version: int | None
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
    """Sent by the store after a commit that changed when a job fires.

    `next_run_at` None means the job no longer fires (paused, deleted, a
    fired one-off): the scheduler forgets it.
    """

    job_pk: int
    schedule: str
    next_run_at: datetime | None
    timezone: str | None = None  # the IANA zone a cron schedule runs in; None: UTC


@dataclass(frozen=True, slots=True)
class RunOrder:
    """A committed PENDING run for the executor pool to claim and perform."""

    run_id: str


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
