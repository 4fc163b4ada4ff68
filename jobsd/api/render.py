"""Resources out as 2026-06-04 renders them, and the parts both versions share.

Pure functions from the frozen values in messages.py to plain dicts ready for
`json.dumps`; the routes wrap them in `{"data": ...}`. Every attribute of the
schema is always present (`null` where unset, `[]` for no headers), so a client
never has to tell "absent" from "null". Header values go out in plaintext: the
spec promises that a GET -> edit -> PUT round-trip keeps them.

A job is shown as the seed version sees it: its base, with `enabled` and
`next_run_at` of the default environment (`environment`); one without a row
there is not enabled. A manual job has no seed form and never reaches here.

A run's attributes, shared with the other version and with alerts, are
`jobsd.run_attributes`' (where durations are derived). jobsd's own
read-only `paused_reason` says why the default environment was auto-paused
(null when it was not).
"""

from __future__ import annotations

from jobsd.clock import iso
from jobsd.job_model import HttpConfig, Job
from jobsd.messages import Run
from jobsd.run_attributes import run_attributes
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
            "paused_reason": None if state is None else state.paused_reason,
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
