"""Quota and limit arithmetic from an account's plan (SEMANTICS "Limits from
the plan").

The rules are a handful of comparisons, but each has a boundary (is the
3000th run allowed? the 10th enabled job? the 100,000th stored one?) and
the `-1` = unlimited escape, so they live here once, with the boundaries
tested, instead of inline in the store and the API where an off-by-one
would hide. Pure: counts are arguments.

Decisions where the spec is silent: `-1` also means "no maximum" for
`max_timeout` (an omitted timeout then defaults to 30); any other negative
limit or count is a programming error (the config refuses it at start).
"""

from __future__ import annotations

UNLIMITED = -1
# What the executors' view of quotas answers for an account no longer in the
# config (a reload removed it): it has no plan, so none of its runs may start.
NO_PLAN = -2
DEFAULT_TIMEOUT_S = 30


def _check_limit(name: str, limit: int) -> None:
    if limit < UNLIMITED:
        raise ValueError(f"{name} must be >= 0 or {UNLIMITED} (unlimited), got {limit}")


def _check_count(name: str, count: int) -> None:
    if count < 0:
        raise ValueError(f"{name} must be >= 0, got {count}")


def may_meter(runs_included: int, runs_used: int) -> bool:
    """Whether one more run may start this month: False once the quota is used up."""
    _check_limit("runs_included", runs_included)
    _check_count("runs_used", runs_used)
    return runs_included == UNLIMITED or runs_used < runs_included


def may_enable(active_jobs_limit: int, active_jobs: int) -> bool:
    """Whether one more job may be enabled while `active_jobs` already are."""
    _check_limit("active_jobs_limit", active_jobs_limit)
    _check_count("active_jobs", active_jobs)
    return active_jobs_limit == UNLIMITED or active_jobs < active_jobs_limit


def may_store(max_jobs: int, stored_jobs: int) -> bool:
    """Whether one more job may be stored while `stored_jobs` already are.

    Every job counts, of any kind and state: this bounds the disk an account
    may fill, which `active_jobs_limit` (enabled or permanent jobs only) does
    not. At least 1: a plan that may store no job is a config mistake.
    """
    if max_jobs < 1 and max_jobs != UNLIMITED:
        raise ValueError(f"max_jobs must be >= 1 or {UNLIMITED} (unlimited), got {max_jobs}")
    _check_count("stored_jobs", stored_jobs)
    return max_jobs == UNLIMITED or stored_jobs < max_jobs


def default_timeout_s(max_timeout_s: int) -> int:
    """The timeout of a job that names none: 30, or the plan's maximum if lower."""
    _check_limit("max_timeout_s", max_timeout_s)
    if max_timeout_s == UNLIMITED:
        return DEFAULT_TIMEOUT_S
    return min(DEFAULT_TIMEOUT_S, max_timeout_s)


def timeout_allowed(timeout_s: int, max_timeout_s: int) -> bool:
    """The plan's ceiling only; `timeout >= 1` is the request schema's rule."""
    _check_limit("max_timeout_s", max_timeout_s)
    return max_timeout_s == UNLIMITED or timeout_s <= max_timeout_s
