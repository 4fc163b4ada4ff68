"""Claiming a run: the one transaction that makes a PENDING run an executor's.

PENDING -> RUNNING and the usage meter move together, or the run is refused
for quota (FAILED/QUOTA_EXCEEDED, unmetered), or, when a header value of
its job no longer opens (its key was retired or lost), recorded
FAILED/WORKER_LOST without being sent. A run that is not PENDING, or a
retry still held for its due instant (`jobsd.store.retries`), is not
claimed at all: the conditional updates here are what make a run start at
most once, whoever offers it, however often.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from jobsd.clock import from_us, iso, month_of, to_us
from jobsd.errors import SealError
from jobsd.job_model import OWN_HEADER_PREFIX, HttpConfig
from jobsd.plans import NO_PLAN, UNLIMITED, may_meter
from jobsd.runs import RunStatus
from jobsd.store import environments_sql, jobs_sql, runs_sql, usage_sql
from jobsd.store.keyring import Sealer


@dataclass(frozen=True, slots=True)
class Claim:
    """A run an executor now owns. `config` None: refused for quota, already recorded."""

    run_id: str
    account_id: str
    config: HttpConfig | None
    job_slug: str = ""
    scheduled_for: datetime | None = None
    retry_of: str | None = None
    retry_attempt: int | None = None

    def stamp(self) -> list[tuple[str, str]]:
        """jobsd's own request headers: who sent this, for which run and slot (a
        retry's slot is its due instant), and for a retry, of which run, which attempt."""
        own = OWN_HEADER_PREFIX
        headers = [(f"{own}Run-Id", self.run_id), (f"{own}Job", self.job_slug)]
        if self.scheduled_for is not None:
            headers.append((f"{own}Scheduled-For", iso(self.scheduled_for) or ""))
        if self.retry_of is not None:
            headers.append((f"{own}Retry-Of", self.retry_of))
            headers.append((f"{own}Retry-Attempt", str(self.retry_attempt)))
        return headers


# The run's own columns (named apart from the job's), its job's, and whether its
# environment's row overrides the request (`environments_sql.overrides_request`;
# NULL without a row), in one read: the row itself is read only when it does.
_CLAIM_READ = (
    "SELECT r.status AS run_status, r.held_until_us AS run_held_until_us, "
    "r.job_slug AS run_job_slug, r.environment AS run_environment, "
    "r.scheduled_for_us AS run_scheduled_for_us, r.retry_of AS run_retry_of, "
    "r.retry_attempt AS run_retry_attempt, "
    "e.overlay != '{}' OR e.headers != '[]' AS env_overrides, "
    + ", ".join(f"j.{column.strip()}" for column in jobs_sql.COLUMNS.split(","))
    + " FROM runs AS r JOIN jobs AS j ON j.id = r.job_id "
    "LEFT JOIN job_environments AS e ON e.job_id = r.job_id AND e.environment = r.environment "
    "WHERE r.id = ?"
)


def claim(
    conn: sqlite3.Connection,
    ended: list[str],
    run_id: str,
    *,
    now: datetime,
    keyring: Sealer,
    runs_included_of: Callable[[str], int],
) -> Claim | None:
    """The run, now RUNNING and metered; a Claim without config when refused (and
    recorded, its id in `ended`); None when it is not to be run now.

    The run and its job are read once, together; the environment's row
    beside them (its overrides applied only when it has any); the month's
    usage only when the plan limits it. Header values are opened once.
    """
    row = conn.execute(_CLAIM_READ, (run_id,)).fetchone()
    if row is None or row["run_status"] != RunStatus.PENDING.value:
        return None
    if row["run_held_until_us"] is not None:
        return None  # a retry not yet due: the scheduler releases it when it is
    account_id = str(row["account_id"])  # the job's, which is the run's
    env = None
    if row["env_overrides"]:
        env = environments_sql.env_row(conn, row["id"], row["run_environment"])
    try:
        # A run may reuse a connection its own account's runs kept (`jobsd.keepalive`).
        config = jobs_sql.to_config(row, keyring, strict=True, reuse_scope=account_id)
        if env is not None and environments_sql.overrides_request(env):
            config = environments_sql.to_overlay(env, account_id, keyring, strict=True).apply(
                config
            )
    except SealError as exc:
        _fail_unopenable(conn, run_id, str(exc), now_us=to_us(now), job=row)
        ended.append(run_id)
        return Claim(run_id, account_id, None)
    period = month_of(now)
    included = runs_included_of(account_id)
    if included == NO_PLAN or (
        included != UNLIMITED
        and not may_meter(included, usage_sql.runs_used(conn, account_id, period))
    ):
        runs_sql.refuse_for_quota(
            conn,
            run_id,
            now_us=to_us(now),
            job_version=row["version"],
            error=(
                "this run's account is no longer in jobsd's configuration, so it has no plan"
                " to run under; no request was sent"
                if included == NO_PLAN
                else f"the plan's {included} runs for {period} are used up; no request was sent"
            ),
        )
        ended.append(run_id)
        return Claim(run_id, account_id, None)
    if not runs_sql.start(
        conn, run_id, now_us=to_us(now), job_version=row["version"], period=period
    ):
        return None
    usage_sql.meter(conn, account_id, period)
    scheduled_us = row["run_scheduled_for_us"]
    return Claim(
        run_id,
        account_id,
        config,
        job_slug=str(row["run_job_slug"]),
        scheduled_for=None if scheduled_us is None else from_us(scheduled_us),
        retry_of=row["run_retry_of"],
        retry_attempt=row["run_retry_attempt"],
    )


def _fail_unopenable(
    conn: sqlite3.Connection, run_id: str, why: str, *, now_us: int, job: sqlite3.Row
) -> None:
    error = (
        f"{why}; no request was sent. Set the header again (PUT the job), or put the "
        "missing key back in the key file (`jobsd check-keys` lists such values)"
    )
    conn.execute(
        "UPDATE runs SET status = 'FAILED', failure_reason = 'WORKER_LOST', error = ?, "
        f"finished_at_us = {runs_sql.FINISHED_AT}, job_version = ? "
        "WHERE id = ? AND status = 'PENDING'",
        (error, now_us, job["version"], run_id),
    )
