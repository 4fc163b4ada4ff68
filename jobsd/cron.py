"""Cron expressions, Vixie style: compile once, then find slots fast.

Split from `schedule.py`, which decides *when a job fires*; this module only
answers *which minutes match*. An expression compiles once (cached) to
bitmasks and the sorted minutes of the day it fires at, so the next slot is a
bisect plus, rarely, a walk over days; the previous slot (for catch-up) is
the mirror image. Pure: no clock, no I/O.
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

from jobsd.errors import ScheduleError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MAX_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_NUMBER = re.compile(r"[0-9]+", re.ASCII)
_ONE_DAY = timedelta(days=1)
_MINUTES = tuple(timedelta(minutes=n) for n in range(24 * 60))
_SEARCH_YEARS = 401  # the Gregorian calendar repeats every 400 years


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int  # the largest value one may write
    last: int  # where `*` and `n/step` stop: day-of-week 7 is only an alias of 0
    names: tuple[str, ...] = ()
    first_name: int = 0  # the value of names[0]


_FIELDS = (
    _Field("minute", 0, 59, 59),
    _Field("hour", 0, 23, 23),
    _Field("day-of-month", 1, 31, 31),
    _Field("month", 1, 12, 12, _MONTHS, 1),
    _Field("day-of-week", 0, 7, 6, _DAYS, 0),
)


@dataclass(frozen=True, slots=True)
class Cron:
    minutes: tuple[int, ...]  # minutes of the day (hour * 60 + minute), ascending
    months: int  # bit n set: month n matches
    doms: int
    dows: int  # bit 0 is Sunday (a 7 was folded into it)
    either_day: bool  # Vixie: both day fields restricted, neither starting with *
    wall_clock: bool  # ISC cron: in a zone, keeps local times (minute, hour not starting with *)

    def day_matches(self, d: date) -> bool:
        if not self.months >> d.month & 1:
            return False
        dom = self.doms >> d.day & 1
        dow = self.dows >> (d.isoweekday() % 7) & 1
        return bool(dom | dow) if self.either_day else bool(dom & dow)


@lru_cache(maxsize=4096)
def compile_cron(expr: str) -> Cron:
    texts = expr.lower().split()
    if len(texts) != 5:
        raise ScheduleError(f"cron expression needs exactly 5 fields, got {len(texts)}")
    minute, hour, dom, month, dow = (_expand(t, f) for t, f in zip(texts, _FIELDS, strict=True))
    dow = (dow | dow >> 7) & 0x7F
    either_day = not texts[2].startswith("*") and not texts[4].startswith("*")
    if not either_day and not any(
        month >> m & 1 and dom & ((2 << _MAX_DAYS[m]) - 1) for m in range(1, 13)
    ):
        months = ", ".join(calendar.month_name[m] for m in range(1, 13) if month >> m & 1)
        raise ScheduleError(
            f"day-of-month '{texts[2]}' never occurs in {months}: the schedule would never fire"
        )
    minutes = tuple(
        h * 60 + m for h in range(24) if hour >> h & 1 for m in range(60) if minute >> m & 1
    )
    wall_clock = not texts[0].startswith("*") and not texts[1].startswith("*")
    return Cron(minutes, month, dom, dow, either_day, wall_clock)


def _expand(text: str, f: _Field) -> int:
    """The field as a bitmask; the error names the field and the bad part."""

    def fail(problem: str) -> ScheduleError:
        return ScheduleError(f"{f.name} field '{text}': {problem}")

    def value(token: str) -> int:
        if _NUMBER.fullmatch(token):
            n = int(token)
            if not f.low <= n <= f.high:
                raise fail(f"{token} is outside {f.low}-{f.high}")
            return n
        if token in f.names:
            return f.names.index(token) + f.first_name
        kind = f"a number {f.low}-{f.high}"
        if f.names:
            kind += f" or a name {f.names[0]}-{f.names[-1]}"
        raise fail(f"'{token}' is not {kind}" if token else f"a number is missing ({kind})")

    mask = 0
    for item in text.split(","):
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not _NUMBER.fullmatch(step_text) or int(step_text) == 0:
                raise fail(f"step '{step_text}' must be a whole number of at least 1")
            step = int(step_text)
        if base == "*":
            low, high = f.low, f.last
        elif "-" in base:
            first, _, last = base.partition("-")
            low, high = value(first), value(last)
            if low > high and high == 0 and f.name == "day-of-week":
                high = 7  # cronie: a day-of-week range may end on Sunday (sat-sun, 5-0)
            elif low > high:
                ending = ", or end it on Sunday (sat-sun)" if f.name == "day-of-week" else ""
                raise fail(f"range {base} runs backwards; split it into a list{ending}")
        else:
            low = value(base)
            high = max(f.last, low) if slash else low
        for n in range(low, high + 1, step):
            mask |= 1 << n
    return mask


def _at(d: date, minute_of_day: int) -> datetime:
    return datetime(d.year, d.month, d.day, minute_of_day // 60, minute_of_day % 60, 0, 0, UTC)


def next_slot(cron: Cron, after: datetime) -> datetime | None:
    d, minute_of_day = after.date(), after.hour * 60 + after.minute
    i = bisect_right(cron.minutes, minute_of_day)
    if i < len(cron.minutes) and cron.day_matches(d):
        if after.second or after.microsecond:
            return _at(d, cron.minutes[i])
        # the hot path (slot to slot): add a prebuilt delta, build nothing
        return after + _MINUTES[cron.minutes[i] - minute_of_day]
    limit = d.year + _SEARCH_YEARS
    try:
        d += _ONE_DAY
        while d.year <= limit:
            if cron.day_matches(d):
                return _at(d, cron.minutes[0])
            if cron.months >> d.month & 1:
                d += _ONE_DAY
            else:  # skip the rest of a month that cannot match
                d = d.replace(day=1) + timedelta(days=_MAX_DAYS[d.month])
                d = d.replace(day=1)
    except OverflowError:
        pass
    return None


def prev_slot(cron: Cron, at: datetime) -> datetime | None:
    d, i = at.date(), bisect_right(cron.minutes, at.hour * 60 + at.minute) - 1
    if i >= 0 and cron.day_matches(d):
        return _at(d, cron.minutes[i])
    limit = d.year - _SEARCH_YEARS
    try:
        d -= _ONE_DAY
        while d.year >= limit:
            if cron.day_matches(d):
                return _at(d, cron.minutes[-1])
            if cron.months >> d.month & 1:
                d -= _ONE_DAY
            else:  # the last day of the month before
                d = d.replace(day=1) - _ONE_DAY
    except OverflowError:
        pass
    return None
