"""A run's attributes as both API versions give them, and as alerts carry them.

Pure: from the frozen `Run` to a plain dict ready for `json.dumps`. It lives
outside `jobsd.api` because the API is not the only reader: an alert's body
(`jobsd.alert_body`) carries the run too, and only the daemon's wiring may
import the API. Each version adds what it alone shows
(`jobsd.api.render`, `jobsd.api.v2026_08_07.render`).

Durations are derived here rather than stored, so they can never disagree
with the instants they come from. Decisions where the spec is silent:
- Each duration is null when either of its ends is missing: a run canceled
  while PENDING (or refused for quota) has `finished_at` but no `started_at`,
  so `pending_duration_ms` and `run_duration_ms` are null and
  `total_duration_ms` is set.
- Durations are whole milliseconds rounded down, and never negative (a wall
  clock stepped back between a restart and a finish reads as 0, not -5).
"""

from __future__ import annotations

from jobsd.clock import duration_ms, iso
from jobsd.messages import Run


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


def retry_attribute(run: Run) -> dict[str, object] | None:
    """2026-08-07's `retry`: where a RETRY run sits in its chain, else null."""
    return None if run.retry_of is None else {"of": run.retry_of, "attempt": run.retry_attempt}
