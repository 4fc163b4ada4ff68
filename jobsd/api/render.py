"""Resources out as 2026-06-04 renders them, and the parts both versions share.

Pure functions from the frozen values in messages.py to plain dicts ready for
`json.dumps`; the routes wrap them in `{"data": ...}`. Every attribute of the
schema is always present (`null` where unset, `[]` for no headers), so a client
never has to tell "absent" from "null". Header values go out in plaintext: the
spec promises that a GET -> edit -> PUT round-trip keeps them.

A job is shown as the seed version sees it: its base, with `enabled` and
`next_run_at` of the default environment (`environment`); one without a row
there is not enabled. A manual job has no seed form and never reaches here.

Durations are derived here rather than stored, so they can never disagree with
the instants they come from. Decisions where the spec is silent:
- Each duration is null when either of its ends is missing: a run canceled
  while PENDING (or refused for quota) has `finished_at` but no `started_at`,
  so `pending_duration_ms` and `run_duration_ms` are null and
  `total_duration_ms` is set.
- Durations are whole milliseconds rounded down, and never negative (a wall
  clock stepped back between a restart and a finish reads as 0, not -5).
"""

from __future__ import annotations

from jobsd.clock import duration_ms, iso
from jobsd.messages import HttpConfig, Job, Run
from jobsd.runs import Trigger


def configuration(config: HttpConfig, headers: object) -> dict[str, object]:
    """`configuration` with `headers` already in the version's form."""
    return {
        "method": config.method,
        "url": config.url,
        "headers": headers,
        "success_status": config.success_status,
        "tls_verify": config.tls_verify,
        "ca_cert": config.ca_cert,
        "body": config.body,
        "timeout": config.timeout_s,
    }


def render_job(job: Job, environment: str) -> dict[str, object]:
    spec, config = job.spec, job.spec.config
    state = job.environments.get(environment)
    return {
        "id": spec.slug,
        "type": "job",
        "attributes": {
            "name": spec.name,
            "description": spec.description,
            "enabled": state is not None and state.enabled,
            "type": "http",
            "schedule": spec.schedule,
            "timezone": spec.timezone,
            "configuration": configuration(
                config, [{"name": h.name, "value": h.value} for h in config.headers]
            ),
            "concurrency_policy": "ALLOW",
            "retry_policy": spec.retry_policy,
            "kind": spec.kind.value,
            "overlap_policy": spec.overlap_policy.value,
            "next_run_at": None if state is None else iso(state.next_run_at),
            "created_at": iso(job.created_at),
            "updated_at": iso(job.updated_at),
            "deleted_at": iso(job.deleted_at),
            "version": job.version,
        },
    }


def render_run(run: Run) -> dict[str, object]:
    """A run as the seed shows it. Its `trigger` enum has no RETRY (VERSIONS.md):
    a retry shows as a RERUN of the run it retries, with no `scheduled_for`
    ("null for manual / rerun runs"), so the seed's schema holds."""
    attributes = run_attributes(run)
    if run.trigger is Trigger.RETRY:
        attributes.update(trigger=Trigger.RERUN.value, rerun_of=run.retried_run, scheduled_for=None)
    return {
        "id": run.id,
        "type": "run",
        "attributes": attributes,
    }


def run_attributes(run: Run) -> dict[str, object]:
    """The attributes both versions give a run, `request` as stored (headers an array)."""
    return {
        "job": run.job_slug,
        "job_version": run.job_version,
        "trigger": run.trigger.value,
        "rerun_of": run.rerun_of,
        "scheduled_for": iso(run.scheduled_for),
        "status": run.status.value,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "pending_duration_ms": duration_ms(run.created_at, run.started_at),
        "run_duration_ms": duration_ms(run.started_at, run.finished_at),
        "total_duration_ms": duration_ms(run.created_at, run.finished_at),
        "failure_reason": None if run.failure_reason is None else run.failure_reason.value,
        "error": run.error,
        "request": run.request,
        "result": run.result,
    }


def render_usage(
    *,
    period: str,
    runs_used: int,
    runs_included: int,
    active_jobs: int,
    active_jobs_limit: int,
    resource_id: str,
) -> dict[str, object]:
    return {
        "id": resource_id,
        "type": "usage",
        "attributes": {
            "period": period,
            "runs_used": runs_used,
            "runs_included": runs_included,
            "active_jobs": active_jobs,
            "active_jobs_limit": active_jobs_limit,
        },
    }
