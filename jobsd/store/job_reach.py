"""Where a scoped token's job replace would reach out of its environments.

Split from `jobsd.store.job_writes`: the check that reads what a job does in
each environment, and the runs still waiting there, to judge a scoped
write (`jobsd.store.policy_reach` is its counterpart for retry policies).
"""

from __future__ import annotations

import sqlite3

from jobsd import errors
from jobsd.job_model import Job, JobKind, JobSpec, Overlay
from jobsd.store import environments_sql


def refuse_reaching_out(
    conn: sqlite3.Connection, before: Job, spec: JobSpec, guard: frozenset[str] | None
) -> None:
    """403 when a scoped replace changes what an environment out of its reach does.

    Every environment inherits the base: a token scoped to staging that could
    change the base URL, TLS check, headers, cadence or retries of a job
    enabled in production would send production's own header overrides,
    secrets included, wherever it chose, and as often. So it may change only
    what no such environment sees (its own entries, the job's name and
    description), as it may delete only a job enabled nowhere out of reach.
    A run still going out of reach (a retry held while the job is paused
    there, a run-now of a paused job) reads its request when it starts, and
    its retry, written when it fails, reads it again: so its environment is
    reached too, for what that run sends and how it retries. Nor may it make
    the job manual or a one-off where an entry out of reach, paused or not,
    holds a schedule or time zone override: that drops them, unseen. `guard`
    None: an unscoped token.
    """
    if guard is None:
        return
    waiting = going_environments(conn, before.pk) - guard
    changed = sorted(
        env
        for env, state in before.environments.items()
        if env not in guard
        and (
            (
                state.enabled
                and _conduct(before.spec, state.overlay) != _conduct(spec, state.overlay)
            )
            or (env in waiting and _sent(before.spec, state.overlay) != _sent(spec, state.overlay))
            or _drops_cadence(before.spec, spec, state.overlay)
        )
    )
    changed += sorted(  # going where the job has no entry: the base alone is sent
        env
        for env in waiting - set(before.environments)
        if _sent(before.spec, Overlay()) != _sent(spec, Overlay())
    )
    if changed:
        raise errors.forbidden(
            "environment_scope",
            f"this change would alter what the job does in {', '.join(changed)}, outside "
            "this token's environments (they inherit the job's configuration, schedule, "
            "time zone and retry policy, and a run going there is sent as the job is when "
            "it starts); send those as they are, or use a token that can reach them",
        )


def going_environments(conn: sqlite3.Connection, job_pk: int) -> frozenset[str]:
    """The environments where a run of the job is PENDING (queued, or a held
    retry) or RUNNING (whose retry, if it fails, is sent as the job is then)."""
    rows = conn.execute(
        "SELECT DISTINCT environment FROM runs INDEXED BY runs_going "
        "WHERE job_id = ? AND status IN ('PENDING', 'RUNNING')",
        (job_pk,),
    )
    return frozenset(str(r[0]) for r in rows)


def _drops_cadence(before: JobSpec, spec: JobSpec, overlay: Overlay) -> bool:
    """Whether the replace makes a recurring job manual or a one-off while the entry
    holds a schedule or time zone override, which that drops (they apply to cron only)."""
    if before.kind is not JobKind.RECURRING or spec.kind is JobKind.RECURRING:
        return False
    return overlay.schedule is not None or overlay.timezone is not None


def _sent(spec: JobSpec, overlay: Overlay) -> tuple[object, ...]:
    """What a run of an environment sends when it starts, and how it retries."""
    policy = overlay.retry_policy if overlay.retry_policy is not None else spec.retry_policy
    return (overlay.apply(spec.config), policy)


def _conduct(spec: JobSpec, overlay: Overlay) -> tuple[object, ...]:
    """What an environment sends, when, and how it retries: the base under its overlay."""
    cadence = environments_sql.effective_cadence(spec, overlay)
    return (spec.kind, *_sent(spec, overlay), cadence, spec.overlap_policy)
