"""Filter value lists and stats buckets: the pure rules the API and store share."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsd.buckets import BUCKETS_US, MAX_BUCKETS, bucket_start_us, buckets_spanned, sizes_that_fit
from jobsd.clock import to_us
from jobsd.intervals import Interval
from jobsd.run_filters import STATUS_CHOICES, TRIGGER_CHOICES, RunFilter, parse_choices
from jobsd.runs import RunStatus, Trigger


def test_the_choices_are_the_specs() -> None:
    assert STATUS_CHOICES == ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED")
    assert TRIGGER_CHOICES == ("SCHEDULE", "MANUAL", "RERUN", "RETRY")
    assert {t.value for t in Trigger} <= set(TRIGGER_CHOICES)
    assert {s.value for s in RunStatus} == set(STATUS_CHOICES)


def test_lists() -> None:
    assert parse_choices("FAILED", STATUS_CHOICES) == {"FAILED"}
    assert parse_choices("SUCCEEDED,FAILED", STATUS_CHOICES) == {"SUCCEEDED", "FAILED"}
    assert parse_choices(" SUCCEEDED , FAILED,FAILED", STATUS_CHOICES) == {"SUCCEEDED", "FAILED"}
    assert parse_choices("SCHEDULE,RETRY", TRIGGER_CHOICES) == {"SCHEDULE", "RETRY"}
    for bad in ["", ",", "FAILED,", "failed", "FAILED;SUCCEEDED", "DONE", "FAILED," * 60]:
        with pytest.raises(ValueError):
            parse_choices(bad, STATUS_CHOICES)
    with pytest.raises(ValueError, match="'DONE'"):
        parse_choices("FAILED,DONE", STATUS_CHOICES)


@settings(max_examples=300)
@given(st.text(max_size=80))
def test_lists_raise_only_value_error(raw: str) -> None:
    try:
        kept = parse_choices(raw, TRIGGER_CHOICES)
    except ValueError:
        return
    assert kept and kept <= set(TRIGGER_CHOICES)


@settings(max_examples=500)
@given(st.integers(-(2**62), 2**62), st.sampled_from(sorted(BUCKETS_US)))
def test_buckets_are_aligned_to_the_epoch(us: int, name: str) -> None:
    size = BUCKETS_US[name]
    start = bucket_start_us(us, size)
    assert start <= us < start + size
    assert start % size == 0


def test_bucket_examples() -> None:
    t = to_us(datetime(2026, 6, 5, 1, 59, 59, 999_999, tzinfo=UTC))
    assert bucket_start_us(t, BUCKETS_US["1h"]) == to_us(datetime(2026, 6, 5, 1, tzinfo=UTC))
    assert bucket_start_us(t, BUCKETS_US["6h"]) == to_us(datetime(2026, 6, 5, 0, tzinfo=UTC))
    assert bucket_start_us(t, BUCKETS_US["15m"]) == to_us(datetime(2026, 6, 5, 1, 45, tzinfo=UTC))
    assert bucket_start_us(t, BUCKETS_US["1d"]) == to_us(datetime(2026, 6, 5, tzinfo=UTC))
    before = to_us(datetime(1969, 12, 31, 23, 59, 30, tzinfo=UTC))
    assert bucket_start_us(before, BUCKETS_US["1m"]) == -60_000_000
    assert buckets_spanned(0, 0, 60_000_000) == 1
    assert buckets_spanned(59_999_999, 60_000_000, 60_000_000) == 2
    assert buckets_spanned(5, 4, 60_000_000) == 0
    week = 7 * 86_400_000_000
    assert buckets_spanned(0, week - 1, 60_000_000) == 10_080 > MAX_BUCKETS
    assert sizes_that_fit(0, week - 1) == ["5m", "15m", "1h", "6h", "1d"]
    assert sizes_that_fit(0, 86_400_000_000 - 1) == list(BUCKETS_US)


def test_exactly_the_most_buckets_still_fit() -> None:
    minute = BUCKETS_US["1m"]
    assert "1m" in sizes_that_fit(0, MAX_BUCKETS * minute - 1)  # 10,000 buckets
    assert "1m" not in sizes_that_fit(0, MAX_BUCKETS * minute)  # 10,001


def test_a_list_of_fifty_values_is_read_and_one_of_fifty_one_is_refused() -> None:
    assert parse_choices(",".join(["FAILED"] * 50), STATUS_CHOICES) == {"FAILED"}
    with pytest.raises(ValueError, match="lists 51 values; at most 50"):
        parse_choices(",".join(["FAILED"] * 51), STATUS_CHOICES)


def test_each_interval_filter_keeps_only_runs_inside_it() -> None:
    run = {
        "job": "j",
        "status": "SUCCEEDED",
        "trigger": "MANUAL",
        "environment": "production",
        "created_at_us": 15,
        "started_at_us": 15,
        "finished_at_us": 15,
        "scheduled_for_us": 15,
    }
    for name in ("created_at", "started_at", "finished_at", "scheduled_for"):
        assert RunFilter(**{name: Interval(10, 20)}).keeps(**run)  # type: ignore[arg-type]
        for outside in (9, 20):
            moved = {**run, f"{name}_us": outside}
            assert not RunFilter(**{name: Interval(10, 20)}).keeps(**moved), (name, outside)  # type: ignore[arg-type]
