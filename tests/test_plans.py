"""Plan limits: the boundaries and the -1 escape, against the rules written
out plainly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobsd.plans import (
    UNLIMITED,
    default_timeout_s,
    may_enable,
    may_meter,
    may_store,
    timeout_allowed,
)

limits = st.one_of(st.just(UNLIMITED), st.integers(0, 10_000))
counts = st.integers(0, 20_000)


def test_boundaries() -> None:
    assert may_meter(3000, 2999) and not may_meter(3000, 3000) and not may_meter(3000, 3001)
    assert not may_meter(0, 0)
    assert may_meter(UNLIMITED, 10**9)
    assert may_enable(10, 9) and not may_enable(10, 10)
    assert not may_enable(0, 0)
    assert may_enable(UNLIMITED, 10**6)
    assert may_store(100_000, 99_999) and not may_store(100_000, 100_000)
    assert may_store(1, 0) and not may_store(1, 1)
    assert may_store(UNLIMITED, 10**7)
    assert default_timeout_s(30) == 30
    assert default_timeout_s(10) == 10
    assert default_timeout_s(300) == 30
    assert default_timeout_s(UNLIMITED) == 30
    assert timeout_allowed(30, 30) and not timeout_allowed(31, 30)
    assert timeout_allowed(86_400, UNLIMITED)


@given(limits, counts)
def test_may_meter(runs_included: int, runs_used: int) -> None:
    expected = runs_included == -1 or runs_used + 1 <= runs_included
    assert may_meter(runs_included, runs_used) is expected


@given(limits, counts)
def test_may_enable(limit: int, active: int) -> None:
    expected = limit == -1 or active + 1 <= limit
    assert may_enable(limit, active) is expected


@given(st.one_of(st.just(UNLIMITED), st.integers(1, 10_000)), counts)
def test_may_store(max_jobs: int, stored: int) -> None:
    expected = max_jobs == -1 or stored + 1 <= max_jobs
    assert may_store(max_jobs, stored) is expected


@given(limits, st.integers(1, 100_000))
def test_timeouts(max_timeout_s: int, timeout_s: int) -> None:
    default = default_timeout_s(max_timeout_s)
    assert default <= 30
    assert timeout_allowed(default, max_timeout_s)  # the default is always allowed
    expected = max_timeout_s == -1 or timeout_s <= max_timeout_s
    assert timeout_allowed(timeout_s, max_timeout_s) is expected


@pytest.mark.parametrize(
    "call",
    [
        lambda: may_meter(-2, 0),
        lambda: may_meter(10, -1),
        lambda: may_enable(-5, 0),
        lambda: may_enable(10, -1),
        lambda: may_store(0, 0),  # at least one job, or -1: the config refuses 0
        lambda: may_store(-2, 0),
        lambda: may_store(10, -1),
        lambda: default_timeout_s(-2),
        lambda: timeout_allowed(10, -3),
    ],
)
def test_nonsense_limits_are_programming_errors(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]
