"""The interval filters of `GET /runs` and `GET /run_stats`: `[start,end)` text to a range.

The spec's grammar: a leading `[` (start included) or `(` (excluded), two
bounds separated by a comma, a trailing `]` (end included) or `)`
(excluded); a bound is an ISO-8601 instant or `*` for "open". We read an
instant as RFC 3339 does (`2026-06-01T00:00:00Z`, `...T00:00:00.5+02:00`;
`T` and `Z` in either case), with a fraction of up to nine digits. A space
where the offset's sign would be is read as `+`, because an unencoded `+`
in a query string arrives as a space.

Every interval becomes a half-open range of whole microseconds, `lo <= t <
hi`, which is how instants are stored and the finest the API renders. The
conversion is exact, so a bound copied from a response matches that run
and none of its neighbours: `[x` keeps `t >= x`, `(x` keeps `t > x`, and a
finer bound than a microsecond rounds the way that keeps exactly the stored
instants on its side. A start after its end is refused rather than read as
empty; an equal start and end is a legitimate (possibly empty) interval.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from jobsd.clock import to_us

_NS_PER_US = 1_000
_MAX_TEXT = 200  # two instants and the brackets fit in well under this

_INSTANT = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+\- ])(\d{2}):(\d{2}))",
    re.ASCII,
)
_SHAPE = re.compile(r"\s*([\[(])\s*([^,]*?)\s*,\s*([^,]*?)\s*([\])])\s*", re.ASCII)

EXAMPLE = "[2026-06-01T00:00:00Z,2026-06-08T00:00:00Z)"


class IntervalError(ValueError):
    """Why a text is not an interval; the API puts it in a 400 naming the parameter."""


@dataclass(frozen=True, slots=True)
class Interval:
    """Instants `t` (microseconds since the epoch) with `lo <= t < hi`; None is open."""

    lo: int | None = None
    hi: int | None = None

    def __contains__(self, us: int | None) -> bool:
        if us is None:
            return False  # an unset instant is in no interval
        return (self.lo is None or us >= self.lo) and (self.hi is None or us < self.hi)

    @property
    def is_open(self) -> bool:
        return self.lo is None and self.hi is None


def parse_interval(text: str) -> Interval:
    if len(text) > _MAX_TEXT:
        raise IntervalError(f"is {len(text)} characters long; an interval is at most {_MAX_TEXT}")
    shape = _SHAPE.fullmatch(text)
    if shape is None:
        raise IntervalError(
            f"'{text}' is not an interval: write a bracket, start, comma, end and a bracket, "
            f"such as {EXAMPLE} ([ or ( before, ] or ) after, * for an open end)"
        )
    opening, start_text, end_text, closing = shape.groups()
    start = None if start_text == "*" else parse_instant_ns(start_text)
    end = None if end_text == "*" else parse_instant_ns(end_text)
    if start is not None and end is not None and start > end:
        raise IntervalError(f"starts at {start_text}, after its end {end_text}")
    lo = None
    if start is not None:
        lo = _ceil_us(start) if opening == "[" else start // _NS_PER_US + 1
    hi = None
    if end is not None:
        hi = end // _NS_PER_US + 1 if closing == "]" else _ceil_us(end)
    return Interval(lo, hi)


def parse_instant_ns(text: str) -> int:
    """An RFC 3339 instant as nanoseconds since the epoch (exact)."""
    m = _INSTANT.fullmatch(text)
    if m is None:
        raise IntervalError(
            f"'{text}' is not an instant: write it as 2026-06-01T00:00:00Z "
            "(a fraction of up to 9 digits and an offset such as +02:00 are allowed), or *"
        )
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction, zulu, sign, off_h, off_m = m.group(7, 8, 9, 10, 11)
    offset = timedelta(0)
    if not zulu:
        if int(off_h) > 23 or int(off_m) > 59:
            raise IntervalError(f"'{text}' has an offset out of range")
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        if sign == "-":
            offset = -offset
    try:
        instant = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
        whole_us = to_us(instant.astimezone(UTC))
    except (ValueError, OverflowError):
        raise IntervalError(f"'{text}' is not a date and time that exists") from None
    fraction_ns = int((fraction or "0").ljust(9, "0"))
    return whole_us * _NS_PER_US + fraction_ns


def _ceil_us(ns: int) -> int:
    return -(-ns // _NS_PER_US)
