"""Retry policies: whether a failed run is retried, and how long it waits.

Pure: no clock, no I/O (`now` comes in, for a `Retry-After` that is a date),
so hypothesis can hold it against a naive oracle. The store and executor
call it when they record a failure; the API builds a `RetryPolicy` and
turns a `RetryPolicyError` into one 422 entry per problem. `NamedRetryPolicy`
is a policy as an account stores it (`jobsd.store.policies`).

The rules (the newer spec's RetryPolicy schema, VERSIONS.md):
- Only TIMEOUT, CONNECTION_ERROR and NON_SUCCESS_STATUS can be retried,
  each only when the policy says so; SSRF_BLOCKED, QUOTA_EXCEEDED and
  WORKER_LOST never are. A status is retried when it matches
  `retry_statuses` and not `retry_statuses_except` (except wins); a pattern
  is an exact code `100`-`599` or a class `1xx`-`5xx`.
- `attempt` is the retry's own number, as in the run's `retry.attempt`: 1
  for the first retry. `max_retries` of 3 allows attempts 1-3.
- Delay: `fixed` waits `delay_seconds`; `exponential` waits `delay_seconds
  * 2^(attempt-1)`, capped by `max_delay_seconds` when set.
- Our extension: a `429` or `503` with a `Retry-After` (delay-seconds or an
  HTTP date) waits the larger of the policy's delay and the header's, the
  header's part capped by `max_delay_seconds` when set and by 24 hours; a
  header that is neither form is ignored.

Decisions where the spec is silent: `delay_seconds` and `max_delay_seconds`
are at most a year (`MAX_POLICY_DELAY_S`), so no policy can schedule a
retry past the calendar; a status list holds at most 100 patterns; a
pattern is written exactly as the spec shows (`5xx`, not `5XX` or ` 500`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum

from jobsd.errors import RetryPolicyError
from jobsd.runs import FailureReason

MAX_RETRIES = 10
MAX_POLICY_DELAY_S = 365 * 86_400
MAX_STATUS_PATTERNS = 100
RETRY_AFTER_CAP = timedelta(hours=24)
RETRY_AFTER_STATUSES = frozenset({429, 503})
STATUS_PATTERN = re.compile(r"[1-5](?:[0-9]{2}|xx)", re.ASCII)
_DELAY_SECONDS = re.compile(r"[0-9]+", re.ASCII)
_MAX_RETRY_AFTER_CHARS = 64


class Backoff(StrEnum):
    FIXED = "fixed"
    EXPONENTIAL = "exponential"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A valid policy: construction refuses anything else (RetryPolicyError)."""

    max_retries: int
    backoff: Backoff
    delay_seconds: int
    max_delay_seconds: int | None = None
    retry_on_timeout: bool = False
    retry_on_connection_error: bool = False
    retry_statuses: tuple[str, ...] = ()
    retry_statuses_except: tuple[str, ...] = ()
    # what the two lists leave retried, worked out once
    retried_statuses: frozenset[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise RetryPolicyError(tuple(problems))
        object.__setattr__(self, "backoff", Backoff(self.backoff))
        allowed = _statuses(self.retry_statuses) - _statuses(self.retry_statuses_except)
        object.__setattr__(self, "retried_statuses", allowed)


def should_retry(
    policy: RetryPolicy | None,
    failure_reason: FailureReason,
    http_status: int | None,
    attempt: int,
) -> bool:
    """Whether retry number `attempt` (1 = the first) follows this failure."""
    if policy is None or not 1 <= attempt <= policy.max_retries:
        return False
    if failure_reason is FailureReason.TIMEOUT:
        return policy.retry_on_timeout
    if failure_reason is FailureReason.CONNECTION_ERROR:
        return policy.retry_on_connection_error
    if failure_reason is FailureReason.NON_SUCCESS_STATUS:
        return http_status is not None and http_status in policy.retried_statuses
    return False  # SSRF_BLOCKED, QUOTA_EXCEEDED, WORKER_LOST


def retry_delay(
    policy: RetryPolicy,
    attempt: int,
    retry_after: str | None,
    now: datetime,
    *,
    http_status: int | None,
) -> timedelta:
    """How long retry number `attempt` waits after the failure at `now`."""
    if attempt < 1:
        raise ValueError("attempt counts retries from 1")
    seconds = policy.delay_seconds
    if policy.backoff is Backoff.EXPONENTIAL:
        # 2^(attempt-1) stops mattering once past the year-long ceiling
        seconds *= 1 << min(attempt - 1, 40)
        if policy.max_delay_seconds is not None:
            seconds = min(seconds, policy.max_delay_seconds)
    delay = timedelta(seconds=min(seconds, MAX_POLICY_DELAY_S))
    if http_status not in RETRY_AFTER_STATUSES or retry_after is None:
        return delay
    asked = retry_after_delay(retry_after, now)
    if asked is None:
        return delay
    cap = RETRY_AFTER_CAP
    if policy.max_delay_seconds is not None:
        cap = min(cap, timedelta(seconds=policy.max_delay_seconds))
    return max(delay, min(asked, cap))


def retry_after_delay(value: str, now: datetime) -> timedelta | None:
    """A `Retry-After` value as a delay from `now` (never negative), or None
    when it is neither delay-seconds nor an HTTP date."""
    value = value.strip()
    if not value or len(value) > _MAX_RETRY_AFTER_CHARS:
        return None
    if _DELAY_SECONDS.fullmatch(value):
        return timedelta(seconds=min(int(value), int(RETRY_AFTER_CAP.total_seconds())))
    if value[0].isdigit() or value[0] in "+-":
        return None  # `5.5`, `-1`, `1e3`: not a number HTTP allows, nor a date
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # `-0000` / asctime: HTTP dates are GMT
    return max(when - now, timedelta(0))


def status_pattern_problem(pattern: str) -> str | None:
    """Why `pattern` is neither an exact code 100-599 nor a class 1xx-5xx."""
    if STATUS_PATTERN.fullmatch(pattern):
        return None
    return (
        f"'{pattern}' is not a status pattern: write an exact code 100-599 (like 429)"
        " or a class 1xx-5xx (like 5xx)"
    )


def _problems(p: RetryPolicy) -> list[tuple[str, str]]:
    """(JSON pointer below the attributes, detail) for each thing wrong."""
    found: list[tuple[str, str]] = []
    if not 0 <= p.max_retries <= MAX_RETRIES:
        found.append(("max_retries", f"max_retries must be 0-{MAX_RETRIES}"))
    if p.backoff not in tuple(Backoff):
        found.append(("backoff", "backoff must be fixed or exponential"))
    if not 1 <= p.delay_seconds <= MAX_POLICY_DELAY_S:
        found.append(("delay_seconds", f"delay_seconds must be 1-{MAX_POLICY_DELAY_S}"))
    if p.max_delay_seconds is not None:
        if p.backoff != Backoff.EXPONENTIAL:
            found.append(
                (
                    "max_delay_seconds",
                    "max_delay_seconds applies only to exponential backoff; omit it with fixed",
                )
            )
        elif not 1 <= p.max_delay_seconds <= MAX_POLICY_DELAY_S:
            found.append(("max_delay_seconds", f"max_delay_seconds must be 1-{MAX_POLICY_DELAY_S}"))
    for name in ("retry_statuses", "retry_statuses_except"):
        patterns: tuple[str, ...] = getattr(p, name)
        if len(patterns) > MAX_STATUS_PATTERNS:
            found.append((name, f"{name} holds at most {MAX_STATUS_PATTERNS} patterns"))
            continue
        for i, pattern in enumerate(patterns):
            problem = status_pattern_problem(pattern)
            if problem is not None:
                found.append((f"{name}/{i}", problem))
    return found


def _statuses(patterns: tuple[str, ...]) -> frozenset[int]:
    codes: set[int] = set()
    for pattern in patterns:
        if pattern.endswith("xx"):
            first = int(pattern[0]) * 100
            codes.update(range(first, first + 100))
        else:
            codes.add(int(pattern))
    return frozenset(codes)


@dataclass(frozen=True, slots=True)
class NamedRetryPolicy:
    """A retry policy as stored: the account's name for it, its rules, its history."""

    id: str
    name: str
    rules: RetryPolicy
    created_at: datetime
    updated_at: datetime
    version: int
