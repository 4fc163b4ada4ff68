"""Inside a job write's transaction: the checks it must pass and its environment rows.

Pure decisions and single-connection steps shared by create and replace
(`jobsd.store.jobs`): which retry policies a write may name, that no
unreadable-value marker is written back, the plan's job limits, how a write
merges with the stored environments, and what the scheduler must hear.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from jobsd import errors
from jobsd.clock import to_us
from jobsd.errors import ScheduleError, TimezoneError, pointer_part
from jobsd.job_bounds import stored_job_problem
from jobsd.job_model import Job, JobCounting, JobKind, JobSpec, JobWrite, Overlay
from jobsd.messages import JobChanged
from jobsd.plans import UNLIMITED, may_enable, may_store
from jobsd.schedule import first_fire, parse_schedule
from jobsd.store import environments_sql, listing_sql
from jobsd.store.job_counts import job_count
from jobsd.store.keyring import Sealer, is_unreadable_marker
from jobsd.store.policies import unknown_policies


@dataclass(frozen=True, slots=True)
class Limit:
    """The plan's `active_jobs_limit` and what counts against it (the account's
    version), and its `max_jobs`: the jobs it may store, every kind and state."""

    active_jobs: int
    counting: JobCounting
    max_jobs: int


def next_fire_us(spec: JobSpec, overlay: Overlay, *, enabled: bool, now: datetime) -> int | None:
    """`next_run_at` of an environment from scratch (a manual job never fires)."""
    if not enabled or spec.kind is JobKind.MANUAL:
        return None
    schedule, timezone = environments_sql.effective_cadence(spec, overlay)
    assert schedule is not None
    return to_us(first_fire(parse_schedule(schedule, timezone), now=now))


def merged_spec(write: JobWrite, stored: JobSpec) -> JobSpec:
    spec = write.spec
    if "timezone" in write.keep:
        spec = replace(spec, timezone=stored.timezone)
    if "retry_policy" in write.keep:
        spec = replace(spec, retry_policy=stored.retry_policy)
    if "overlap_policy" in write.keep:
        spec = replace(spec, overlap_policy=stored.overlap_policy)
    if spec.kind is not JobKind.RECURRING:
        spec = replace(spec, timezone=None)  # a time zone applies to cron schedules only
    return spec


def changes_of(job: Job, envs: Mapping[str, object]) -> list[JobChanged]:
    """What the scheduler must hear about `envs` of a job just written."""
    changes = []
    for env in envs:
        state = job.environments.get(env)
        if state is None:
            changes.append(JobChanged(job.pk, env, None, None, None))
            continue
        schedule, timezone = environments_sql.effective_cadence(job.spec, state.overlay)
        changes.append(JobChanged(job.pk, env, schedule, timezone, state.next_run_at))
    return changes


def refuse_unknown_policies(conn: sqlite3.Connection, account_id: str, write: JobWrite) -> None:
    """A job may name only a retry policy the account has (422 at each reference).

    Checked in the write's transaction, as a policy's delete checks that no
    job names it: no job can ever refer to a policy that is gone.
    """
    # What else the reference may be: null is no retries on the job, but in an
    # environment's entry a null leaf inherits the job's policy.
    base_else, entry_else = (
        "or null for no retries",
        "or leave it out (or null) to inherit the job's",
    )
    refs = []
    if write.spec.retry_policy is not None and "retry_policy" not in write.keep:
        refs.append(("/data/attributes/retry_policy", write.spec.retry_policy, base_else))
    for env, entry in write.environments.items():
        if entry.overlay is not None and entry.overlay.retry_policy is not None:
            at = f"/data/attributes/environments/{pointer_part(env)}/retry_policy"
            refs.append((at, entry.overlay.retry_policy, entry_else))
    unknown = unknown_policies(conn, account_id, {name for _, name, _ in refs})
    if unknown:
        raise errors.ValidationFailed(
            [
                errors.invalid(
                    "unknown_retry_policy",
                    at,
                    f"The account has no retry policy {name!r}; name one it has "
                    f"(GET /api/v1/retry-policies), {otherwise}.",
                )
                for at, name, otherwise in refs
                if name in unknown
            ]
        )


def refuse_markers(write: JobWrite) -> None:
    base = "/data/attributes/configuration/headers"
    items = [
        errors.invalid("unreadable_value", f"{base}/{i}/value", _MARKER_DETAIL)
        for i, header in enumerate(write.spec.config.headers)
        if is_unreadable_marker(header.value)
    ]
    for env, entry in write.environments.items():
        if entry.overlay is None:
            continue
        items.extend(
            errors.invalid(
                "unreadable_value",
                f"/data/attributes/environments/{pointer_part(env)}/"
                f"{pointer_part('headers.' + header.name)}",
                _MARKER_DETAIL,
            )
            for header in entry.overlay.headers
            if is_unreadable_marker(header.value)
        )
    if items:
        raise errors.ValidationFailed(items)


_MARKER_DETAIL = (
    "This is the marker jobsd shows for a stored value it cannot open "
    "(its key is no longer in the key file); send the real value instead."
)


def check_store_room(conn: sqlite3.Connection, account_id: str, limit: Limit) -> None:
    """Refuse (403) one more job when the account stores `max_jobs` already.

    Only a create calls this: a replace stores no new job. The count is one
    row kept by triggers (`jobsd.store.job_counts`), read in the create's own
    transaction, so two creates racing for the last place cannot both pass.
    """
    if limit.max_jobs == UNLIMITED or may_store(limit.max_jobs, job_count(conn, account_id)):
        return
    raise errors.forbidden(
        "jobs_limit",
        f"the plan allows {limit.max_jobs} jobs to be stored, of any kind and state, and "
        "the account has reached it: delete a job to make room",
    )


def check_room(
    conn: sqlite3.Connection, account_id: str, limit: Limit, *, replacing: bool = False
) -> None:
    """Refuse (403) one more counted job when the plan's limit is reached; the
    detail says what would free a place for a create, or (`replacing`) for a
    PUT enabling a job that exists, which cannot be created disabled."""
    if limit.active_jobs == UNLIMITED:
        return  # unlimited plans skip the count (a scan)
    if may_enable(limit.active_jobs, listing_sql.count_active(conn, account_id, limit.counting)):
        return
    if limit.counting.enabled_in is None:  # 2026-08-07: paused or not, a permanent job counts
        what = "permanent (recurring and manual) jobs, enabled or not"
        way = "delete one, or make this one a one-off (one-offs do not count)"
    else:
        what = f"jobs enabled in {limit.counting.enabled_in}"
        this = "leave this one disabled" if replacing else "create this one disabled"
        way = f"pause or delete a job, or {this}"
    raise errors.forbidden(
        "active_jobs_limit",
        f"the plan allows {limit.active_jobs} {what} and the account has reached it: {way}",
    )


def apply_environments(
    conn: sqlite3.Connection,
    keyring: Sealer,
    spec: JobSpec,
    before: Job,
    write: JobWrite,
    *,
    configured: Collection[str],
    now: datetime,
) -> None:
    """Write the environment rows of `before` (just stored as `spec`) as `write` says.

    An entry the write sets replaces the stored one (its overlay, when it
    gives one, else the stored overlay is kept); an entry it owns but does
    not set is removed; any other is kept; one it sets with `add` False is
    written only over a stored one. `next_run_at` is kept when the
    environment stays enabled on the same effective cadence, else computed
    from now; an environment the config does not list stays dormant (None).
    Overrides of cadence are dropped from a job that is not recurring.
    """
    pk, account_id = before.pk, before.account_id
    recurring = spec.kind is JobKind.RECURRING
    kept: dict[str, Overlay] = {}
    for env in sorted(set(before.environments) | set(write.environments)):
        old = before.environments.get(env)
        entry = write.environments.get(env)
        if entry is None and env in write.owns:
            environments_sql.delete_environment(conn, pk, env)
            continue
        if entry is not None and old is None and not entry.add:
            continue
        on = entry.enabled if entry is not None else bool(old and old.enabled)
        given = None if entry is None else entry.overlay
        overlay = given or (old.overlay if old is not None else Overlay())
        if not recurring:
            overlay = replace(overlay, schedule=None, timezone=None)
        kept[env] = overlay
        next_us: int | None = None
        if env in configured and on:
            cadence = environments_sql.effective_cadence(spec, overlay)
            if (
                old is not None
                and old.enabled
                and old.next_run_at is not None
                and before.spec.kind is spec.kind
                and environments_sql.effective_cadence(before.spec, old.overlay) == cadence
            ):
                next_us = to_us(old.next_run_at)
            else:
                next_us = _next_fire_us_of(spec, overlay, env, now=now)
        if given is None and old is not None:
            environments_sql.set_environment_state(
                conn, pk, env, enabled=on, next_run_at_us=next_us, keep_cadence=recurring
            )
        else:
            environments_sql.put_environment(
                conn,
                keyring,
                account_id,
                pk,
                env,
                enabled=on,
                next_run_at_us=next_us,
                overlay=overlay,
                paused_reason=None if old is None else old.paused_reason,
            )
    refuse_oversized(spec, kept, write)


def _next_fire_us_of(spec: JobSpec, overlay: Overlay, env: str, *, now: datetime) -> int | None:
    """`next_fire_us` for a write: the write's own cadence was checked by the API,
    but a timezone (or schedule) it kept from the store may no longer load (a
    zone the installed tzdata dropped): 422 at the attribute holding it, not a 500."""
    try:
        return next_fire_us(spec, overlay, enabled=True, now=now)
    except ScheduleError as problem:
        name = "timezone" if isinstance(problem, TimezoneError) else "schedule"
        own = (overlay.timezone if name == "timezone" else overlay.schedule) is not None
        at = f"/data/attributes/environments/{pointer_part(env)}/{name}" if own else None
        code = f"invalid_{name}"
        raise errors.ValidationFailed(
            [errors.invalid(code, at or f"/data/attributes/{name}", problem.detail)]
        ) from None


def refuse_oversized(spec: JobSpec, overlays: Mapping[str, Overlay], write: JobWrite) -> None:
    """The job as it would be stored, every environment's overrides merged,
    within the bounds on one job (`jobsd.job_bounds`); else 422 and the
    whole write rolls back. The pointer names an environment the write set
    overrides for, else the configuration: the base this write sent is what
    pushed another environment's request, or the whole job, past its bound."""
    found = stored_job_problem(spec.config, overlays)
    if found is None:
        return
    env, detail = found
    entry = write.environments.get(env)
    if env and entry is not None and entry.overlay not in (None, Overlay()):
        item = errors.invalid(
            "configuration_too_large", f"/data/attributes/environments/{pointer_part(env)}", detail
        )
    else:
        code = "configuration_too_large" if env else "job_too_large"
        item = errors.invalid(code, "/data/attributes/configuration", detail)
    raise errors.ValidationFailed([item])
