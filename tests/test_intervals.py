"""The interval grammar against an exact oracle (fractions of a second)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsd.clock import from_us, iso, to_us
from jobsd.intervals import Interval, IntervalError, parse_instant_ns, parse_interval

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
instants_us = st.integers(
    to_us(datetime(1900, 1, 2, tzinfo=UTC)), to_us(datetime(2200, 1, 1, tzinfo=UTC))
)


@st.composite
def written_instants(draw: st.DrawFn) -> tuple[str, Fraction]:
    """An instant as a client might write it, and its exact value in seconds."""
    us = draw(instants_us)
    extra_digits = draw(st.integers(0, 3))
    sub_us = draw(st.integers(0, 10**extra_digits - 1))
    minutes = draw(st.integers(-23 * 60 - 59, 23 * 60 + 59))
    offset = timedelta(minutes=minutes)
    local = from_us(us).astimezone(timezone(offset))
    exact = Fraction(us, 10**6) + Fraction(sub_us, 10 ** (6 + extra_digits))
    digits = f"{local.microsecond:06d}" + (f"{sub_us:0{extra_digits}d}" if extra_digits else "")
    digits = digits.rstrip("0") if draw(st.booleans()) else digits
    frac = f".{digits}" if digits else ""
    if minutes == 0 and draw(st.booleans()):
        zone = draw(st.sampled_from(["Z", "z"]))
    else:
        sign = "-" if minutes < 0 else draw(st.sampled_from(["+", " "]))  # space: a decoded '+'
        zone = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    text = local.strftime("%Y-%m-%d") + draw(st.sampled_from("Tt")) + local.strftime("%H:%M:%S")
    return text + frac + zone, exact


@settings(max_examples=500)
@given(written_instants())
def test_instants_are_read_exactly(written: tuple[str, Fraction]) -> None:
    text, exact = written
    assert Fraction(parse_instant_ns(text), 10**9) == exact


def oracle_keeps(
    t_us: int, opening: str, start: Fraction | None, end: Fraction | None, closing: str
) -> bool:
    t = Fraction(t_us, 10**6)
    low_ok = start is None or (t >= start if opening == "[" else t > start)
    high_ok = end is None or (t <= end if closing == "]" else t < end)
    return low_ok and high_ok


@settings(max_examples=500)
@given(
    start=st.one_of(st.none(), written_instants()),
    end=st.one_of(st.none(), written_instants()),
    opening=st.sampled_from("[("),
    closing=st.sampled_from("])"),
    probes=st.lists(instants_us, max_size=5),
    spaces=st.booleans(),
)
def test_intervals_keep_what_the_oracle_keeps(
    start: tuple[str, Fraction] | None,
    end: tuple[str, Fraction] | None,
    opening: str,
    closing: str,
    probes: list[int],
    spaces: bool,
) -> None:
    pad = " " if spaces else ""
    low, high = (start[0] if start else "*"), (end[0] if end else "*")
    text = f"{opening}{pad}{low}{pad},{pad}{high}{pad}{closing}"
    s = None if start is None else start[1]
    e = None if end is None else end[1]
    if s is not None and e is not None and s > e:
        with pytest.raises(IntervalError, match="after its end"):
            parse_interval(text)
        return
    interval = parse_interval(text)
    # Probe the given instants and the microseconds around each bound.
    edges = [int(b * 10**6) + d for b in (s, e) if b is not None for d in (-1, 0, 1, 2)]
    for t in [*probes, *edges]:
        assert (t in interval) == oracle_keeps(t, opening, s, e, closing), (text, t)


@settings(max_examples=300)
@given(instants_us)
def test_a_bound_copied_from_a_response_is_exact(us: int) -> None:
    shown = iso(from_us(us))
    assert shown is not None
    only = parse_interval(f"[{shown},{shown}]")
    assert [t for t in (us - 1, us, us + 1) if t in only] == [us]
    assert us not in parse_interval(f"[{shown},{shown})")
    after = parse_interval(f"({shown},*)")
    assert us not in after and us + 1 in after
    before = parse_interval(f"(*,{shown})")
    assert us not in before and us - 1 in before


def test_examples_from_the_spec() -> None:
    week = parse_interval("[2026-06-01T00:00:00Z,2026-06-08T00:00:00Z)")
    june1 = to_us(datetime(2026, 6, 1, tzinfo=UTC))
    june8 = to_us(datetime(2026, 6, 8, tzinfo=UTC))
    assert week == Interval(june1, june8)
    assert parse_interval("[2026-06-01T00:00:00Z,*)") == Interval(june1, None)
    assert parse_interval("(*,*)").is_open
    assert parse_interval("[2026-06-01T02:00:00+02:00,*)") == Interval(june1, None)
    assert parse_interval("[2026-06-01T02:00:00 02:00,*)") == Interval(june1, None)
    assert parse_interval("(2026-06-01T00:00:00.0000001Z,*)").lo == june1 + 1
    assert parse_interval("[2026-06-01T00:00:00.0000001Z,*)").lo == june1 + 1
    assert parse_interval("[*,2026-06-01T00:00:00.0000001Z]").hi == june1 + 1
    assert parse_interval("[*,2026-06-01T00:00:00.0000001Z)").hi == june1 + 1
    assert None not in week  # an unset instant is in no interval


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[",
        "2026-06-01T00:00:00Z",
        "[2026-06-01T00:00:00Z]",
        "[2026-06-01T00:00:00Z,2026-06-08T00:00:00Z",
        "2026-06-01T00:00:00Z,2026-06-08T00:00:00Z)",
        "{2026-06-01T00:00:00Z,*)",
        "[2026-06-01T00:00:00Z,*,*)",
        "[2026-06-01,*)",
        "[2026-06-01T00:00:00,*)",  # no offset: which zone?
        "[2026-06-01 00:00:00Z,*)",
        "[2026-13-01T00:00:00Z,*)",
        "[2026-02-30T00:00:00Z,*)",
        "[2026-06-01T24:00:00Z,*)",
        "[2026-06-01T00:00:60Z,*)",
        "[2026-06-01T00:00:00+24:00,*)",
        "[2026-06-01T00:00:00+00:60,*)",  # not +01:00 spelled otherwise
        "[,*)",  # an empty bound is not an open one
        "[*,)",
        "[" + " " * 200 + "2026-06-01T00:00:00Z,*)",  # readable, but past the length bound
        "[2026-06-01T00:00:00.1234567890Z,*)",
        "[0001-01-01T00:00:00+01:00,*)",
        "[**,*)",
        "[now,*)",
        "[2026-06-08T00:00:00Z,2026-06-01T00:00:00Z)",
        "[2026-06-01T00:00:00.000001Z,2026-06-01T00:00:00Z]",
        "[" + "9" * 300 + ",*)",
        "[\uff12\uff10\uff12\uff16-06-01T00:00:00Z,*)",  # fullwidth digits
    ],
)
def test_what_is_refused(text: str) -> None:
    with pytest.raises(IntervalError):
        parse_interval(text)


@settings(max_examples=500)
@given(st.text(alphabet="[](),*-:.0123456789TZ+ ", max_size=60) | st.text(max_size=60))
def test_anything_else_raises_only_interval_error(text: str) -> None:
    try:
        interval = parse_interval(text)
    except IntervalError:
        return
    assert interval.lo is None or interval.hi is None or interval.lo <= interval.hi + 1
