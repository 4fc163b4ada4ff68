"""Jobs in the store's one model, built the way the seed version's API builds them.

Store-level tests create jobs as the 2026-06-04 API does: a base spec plus
`enabled` in the default environment (`production`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jobsd.job_model import (
    EnvironmentSpec,
    HttpConfig,
    Job,
    JobCounting,
    JobKind,
    JobSpec,
    JobWrite,
)
from jobsd.schedule import CronSchedule, parse_schedule
from jobsd.store import Store
from jobsd.store.job_writes import Limit

ENV = "production"


def seed_job(
    slug: str,
    name: str,
    description: str | None,
    enabled: bool,
    schedule: str | None,
    config: HttpConfig,
    environment: str = ENV,
) -> JobWrite:
    """What a 2026-06-04 create of these fields asks the store for."""
    if schedule is None:
        kind = JobKind.MANUAL
    elif isinstance(parse_schedule(schedule), CronSchedule):
        kind = JobKind.RECURRING
    else:
        kind = JobKind.ONE_OFF
    spec = JobSpec(slug, name, description, schedule, config, kind=kind)
    return JobWrite(
        spec,
        {environment: EnvironmentSpec(enabled)},
        owns=frozenset({environment}),
        keep=frozenset({"timezone", "retry_policy"}),
    )


def seed_limit(active_jobs_limit: int, environment: str = ENV, max_jobs: int = -1) -> Limit:
    return Limit(active_jobs_limit, JobCounting(enabled_in=environment), max_jobs)


async def create_job(
    store: Store, account_id: str, write: JobWrite, limit: int = -1, **kw: Any
) -> Job:
    return await store.jobs.create_job(
        account_id,
        write,
        configured=kw.pop("configured", (ENV,)),
        limit=seed_limit(limit),
        **kw,
    )


def enabled(job: Job, environment: str = ENV) -> bool:
    state = job.environments.get(environment)
    return state is not None and state.enabled


def next_run(job: Job, environment: str = ENV) -> datetime | None:
    state = job.environments.get(environment)
    return None if state is None else state.next_run_at
