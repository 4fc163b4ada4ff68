"""Runs made up for the finding tests, inserted straight into a real store.

Every row keeps the schema's rules (a SCHEDULE run has `scheduled_for`, a
RERUN `rerun_of`, a FAILED run a reason, a terminal run a finish time) and
the store's own (instants never go backwards), so the API sees what a real
daemon could have written. `Made` keeps what was inserted, for the oracles.
"""

from __future__ import annotations

import itertools
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from hypothesis import strategies as st

from jobsd.clock import to_us
from jobsd.run_order import RunKeys
from jobsd.runs import RunStatus

BASE_US = to_us(datetime(2026, 6, 4, 23, 0, tzinfo=UTC))
JOBS = ("alpha", "beta", "gamma")
ENVIRONMENTS = ("production", "staging")
TRIGGERS = ("SCHEDULE", "MANUAL", "RERUN", "RETRY")
REASONS = ("TIMEOUT", "NON_SUCCESS_STATUS")
_SLOTS = itertools.count()


@dataclass(frozen=True)
class Spec:
    job: str
    environment: str
    trigger: str
    status: RunStatus
    created_us: int
    wait_us: int
    run_us: int
    scheduled_offset_us: int


@dataclass(frozen=True)
class Made:
    id: str
    seq: int
    job: str
    environment: str
    trigger: str
    status: str
    created_at_us: int
    started_at_us: int | None
    finished_at_us: int | None
    scheduled_for_us: int | None
    failure_reason: str | None

    def keys(self) -> RunKeys:
        return RunKeys(
            self.seq,
            self.created_at_us,
            self.started_at_us,
            self.finished_at_us,
            self.scheduled_for_us,
            RunStatus(self.status),
            self.job,
        )

    def fields(self) -> dict[str, object]:
        return {
            "job": self.job,
            "status": self.status,
            "trigger": self.trigger,
            "environment": self.environment,
            "created_at_us": self.created_at_us,
            "started_at_us": self.started_at_us,
            "finished_at_us": self.finished_at_us,
            "scheduled_for_us": self.scheduled_for_us,
        }


# Instants cluster on a few minutes (and exact minute edges) so ties, minute
# boundaries and interval bounds are all hit.
instants = st.one_of(
    st.integers(0, 5).map(lambda m: BASE_US + m * 60_000_000),
    st.integers(0, 5 * 60_000_000).map(lambda d: BASE_US + d),
    st.integers(0, 3).map(lambda h: BASE_US + h * 3_600_000_000 + 7),
)
specs = st.builds(
    Spec,
    job=st.sampled_from(JOBS),
    environment=st.sampled_from(ENVIRONMENTS),
    trigger=st.sampled_from(TRIGGERS),
    status=st.sampled_from(list(RunStatus)),
    created_us=instants,
    wait_us=st.sampled_from([0, 1, 999, 1000, 1500, 60_000_000]),
    run_us=st.sampled_from([0, 1, 999, 1000, 2500, 120_000_000]),
    scheduled_offset_us=st.sampled_from([0, 5, 60_000_000]),
)


def insert(conn: sqlite3.Connection, job_pks: dict[str, int], spec: Spec) -> Made:
    status = spec.status
    started = None if status is RunStatus.PENDING else spec.created_us + spec.wait_us
    if status is RunStatus.CANCELED and spec.wait_us == 0:
        started = None  # canceled while PENDING
    finished = None
    if status.terminal:
        finished = (started if started is not None else spec.created_us) + spec.run_us
    scheduled = None
    if spec.trigger == "SCHEDULE":  # a slot fires once: keep slots apart
        scheduled = spec.created_us - spec.scheduled_offset_us - next(_SLOTS)
        while conn.execute(  # two rows' instants and offsets can still meet: step aside
            "SELECT 1 FROM runs WHERE trigger = 'SCHEDULE' AND job_id = ? AND environment = ? "
            "AND scheduled_for_us = ?",
            (job_pks[spec.job], spec.environment, scheduled),
        ).fetchone():
            scheduled -= 1
    retry = (None, None, None)
    if spec.trigger == "RETRY":  # due a while after its failure; a chain of its own
        scheduled = spec.created_us + spec.scheduled_offset_us
        retry = (str(uuid.uuid4()), 1, str(uuid.uuid4()))
    reason = REASONS[spec.run_us % 2] if status is RunStatus.FAILED else None
    run_id = str(uuid.uuid4())
    cur = conn.execute(
        "INSERT INTO runs (id, account_id, job_id, job_slug, environment, trigger, rerun_of, "
        "scheduled_for_us, status, created_at_us, started_at_us, finished_at_us, "
        "failure_reason, retry_of, retry_attempt, retried_run) "
        "VALUES (?, 'acme', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            run_id,
            job_pks[spec.job],
            spec.job,
            spec.environment,
            spec.trigger,
            str(uuid.uuid4()) if spec.trigger == "RERUN" else None,
            scheduled,
            status.value,
            spec.created_us,
            started,
            finished,
            reason,
            *retry,
        ),
    )
    assert cur.lastrowid is not None
    return Made(
        run_id,
        cur.lastrowid,
        spec.job,
        spec.environment,
        spec.trigger,
        status.value,
        spec.created_us,
        started,
        finished,
        scheduled,
        reason,
    )


def job_pks(conn: sqlite3.Connection) -> dict[str, int]:
    return {str(r[1]): int(r[0]) for r in conn.execute("SELECT id, slug FROM jobs")}
