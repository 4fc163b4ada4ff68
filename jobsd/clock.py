"""The one time source.

Wall-clock UTC is derived from trio's clock: an anchor pairs one reading of
the system's UTC time with one reading of `trio.current_time()`, and every
later instant is the anchor plus elapsed trio time. The scheduler therefore
runs on exactly the clock tests control with `trio.testing.MockClock`: a
year of cron firing under an autojump clock asserts exact instants, and no
module but this one reads the system time. `perf_s` is the exception that
proves it: real elapsed time for metrics, which decide nothing.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import trio

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def system_utc_now() -> datetime:
    """The system's UTC time, for code that runs outside trio (the CLI)."""
    return datetime.now(UTC)


def perf_s() -> float:
    """A monotonic reading in seconds, only for measuring how long work took
    (metrics); nothing decides what happens, or when, by it."""
    return time.perf_counter()


class Clock:
    """Wall UTC as a function of trio time; see the module note."""

    def __init__(self, wall_anchor: datetime | None = None) -> None:
        if wall_anchor is None:
            wall_anchor = system_utc_now()
        if wall_anchor.tzinfo is None:
            raise ValueError("wall_anchor must be timezone-aware")
        self._wall_anchor = wall_anchor.astimezone(UTC)
        self._trio_anchor = trio.current_time()
        self._moved = trio.Event()
        # Every step back `reanchor` made, summed: the scheduler plans its next
        # fires again by what it has not yet seen of it. Kept here, not only told
        # as news, which a full channel drops (`jobsd.clock_watch.telling`).
        self.stepped_back = timedelta(0)

    def now(self) -> datetime:
        return self.from_trio(trio.current_time())

    def reanchor(self, wall: datetime) -> None:
        """From now on, `now()` reads `wall` plus elapsed trio time: the system's
        clock was stepped, or the machine slept (`jobsd.clock_watch`)."""
        gap = wall - self.now()
        if gap < timedelta(0):
            self.stepped_back += gap
        self._wall_anchor = wall.astimezone(UTC)
        self._trio_anchor = trio.current_time()
        self._moved.set()
        self._moved = trio.Event()

    def moved(self) -> trio.Event:
        """Set by the next `reanchor`: a trio deadline computed from a wall instant
        before it (`to_trio`) no longer falls at that instant, so a waiter wakes and
        computes it afresh (the alert actor; the scheduler hears of it as news)."""
        return self._moved

    def from_trio(self, trio_time: float) -> datetime:
        # Rounded to the microsecond, so that waking at `to_trio(w)` reads
        # exactly `w` again: instants are stored as integer microseconds.
        elapsed_us = round((trio_time - self._trio_anchor) * 1_000_000)
        return self._wall_anchor + timedelta(microseconds=elapsed_us)

    def to_trio(self, wall: datetime) -> float:
        """The trio deadline at which the wall clock reads `wall`."""
        return self._trio_anchor + (wall - self._wall_anchor).total_seconds()


def to_us(instant: datetime) -> int:
    """Microseconds since the Unix epoch: how instants are stored."""
    delta = instant - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def iso(instant: datetime | None) -> str | None:
    """RFC 3339 in UTC with a `Z`; fractions only when there are any."""
    if instant is None:
        return None
    instant = instant.astimezone(UTC)
    spec = "seconds" if instant.microsecond == 0 else "microseconds"
    return instant.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def duration_ms(start: datetime | None, end: datetime | None) -> int | None:
    """Whole milliseconds from `start` to `end`, floored, never negative; None if
    either is unknown."""
    if start is None or end is None:
        return None
    return max(0, (end - start) // _ONE_MS)


def month_of(instant: datetime) -> str:
    """The usage period (`YYYY-MM`, UTC) an instant falls in."""
    utc = instant.astimezone(UTC)
    return f"{utc.year:04d}-{utc.month:02d}"  # strftime costs ~5 us, once per claim
