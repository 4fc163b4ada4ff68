"""Schedules: parse `now` | an ISO-8601 instant | a 5-field cron expression, and
decide when a job fires and what a late wake-up catches up.

Pure: every instant is an argument, so the scheduler's timing policy can be
checked by hypothesis against a minute-by-minute oracle. Cron is evaluated by
the small matcher below rather than by croniter's `get_next`, for two reasons
measured on croniter 7: a `get_next` costs 75-110 us (a year of `*/5` is
105,120 fires), and croniter departs from Vixie cron where users would notice
(`5-5` means every minute; `*/2` in day-of-month counts as restricted unless
`implement_cron_bug=True`; it accepts L, W, #, H, ?, seconds and years).
croniter is kept as a second oracle in the tests. An expression compiles once
(cached) to bitmasks and the sorted minutes of the day it fires at, so the
next slot is a bisect plus, rarely, a walk over days.

Decisions where the spec is silent:
- Surrounding whitespace is ignored; cron fields are separated by any run of
  whitespace; the normalized expression is lower case, one space apart.
- `now`, macros, and month/day names are accepted in any case.
- Vixie rule for days: when day-of-month and day-of-week are both restricted
  and neither field starts with `*`, a day matches if either matches;
  otherwise both must (so `0 0 */2 * 1` is odd-numbered Mondays, as in
  Vixie). `n/step` means `n-last/step`, where the last day of the week is
  6 (Saturday; `7` is only another name for Sunday). A range must not run
  backwards (`sat-sun` is refused; write `sat,sun`). A step may exceed its
  range. A `*` may appear inside a list (as in Vixie).
- Instants: `YYYY-MM-DD[T|t|space]HH:MM[:SS[.fraction]]` then `Z`, `z` or
  `+HH:MM`/`+HHMM`/`+HH`; fractions past microseconds are truncated.
- A text over 1000 characters is refused before any parsing.
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from functools import lru_cache

from jobsd.errors import ScheduleError

MAX_SCHEDULE_CHARS = 1000
_FORMS = "use now, an ISO-8601 instant such as 2030-01-01T09:00:00Z, or 5 cron fields"


@dataclass(frozen=True, slots=True)
class NowSchedule:
    pass


@dataclass(frozen=True, slots=True)
class InstantSchedule:
    at: datetime

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("InstantSchedule needs a timezone-aware datetime")
        object.__setattr__(self, "at", self.at.astimezone(UTC))


@dataclass(frozen=True, slots=True)
class CronSchedule:
    expr: str


Schedule = NowSchedule | InstantSchedule | CronSchedule


def parse_schedule(text: str) -> Schedule:
    """Raises ScheduleError whose detail tells a person what to change."""
    if len(text) > MAX_SCHEDULE_CHARS:
        raise ScheduleError(f"schedule is longer than {MAX_SCHEDULE_CHARS} characters")
    text = text.strip()
    if not text:
        raise ScheduleError(f"schedule is empty; {_FORMS}")
    if text.lower() == "now":
        return NowSchedule()
    if _LOOKS_LIKE_INSTANT.match(text):
        return InstantSchedule(_parse_instant(text))
    fields = text.lower().split()
    if fields[0].startswith("@"):
        if len(fields) > 1:
            raise ScheduleError(f"{fields[0]} must stand alone, without other fields")
        if fields[0] == "@reboot":
            raise ScheduleError("@reboot is not supported: jobs fire on the clock, not at start")
        if fields[0] not in _MACROS:
            raise ScheduleError(f"unknown macro {fields[0]}; use one of {', '.join(_MACROS)}")
        return CronSchedule(_MACROS[fields[0]])
    if len(fields) == 1:
        raise ScheduleError(f"'{text}' is not a schedule; {_FORMS}")
    if len(fields) != 5:
        extra = "; there is no seconds or year field" if len(fields) in (6, 7) else ""
        raise ScheduleError(
            f"a cron expression has exactly 5 fields (minute hour day-of-month month "
            f"day-of-week), this one has {len(fields)}{extra}"
        )
    expr = " ".join(fields)
    _compiled(expr)
    return CronSchedule(expr)


def is_one_off(s: Schedule) -> bool:
    return not isinstance(s, CronSchedule)


def first_fire(s: Schedule, *, now: datetime) -> datetime:
    """`next_run_at` from scratch: an instant already past still fires (late)."""
    if isinstance(s, NowSchedule):
        return _utc(now)
    if isinstance(s, InstantSchedule):
        return s.at
    slot = _next_slot(_compiled(s.expr), _utc(now))
    if slot is None:
        raise ScheduleError("the schedule has no slot left before the year 10000")
    return slot


def cron_slots_after(s: CronSchedule, after: datetime) -> Iterator[datetime]:
    """Slots strictly after `after`, ascending (ends only at the year 10000)."""
    cron = _compiled(s.expr)
    slot = _next_slot(cron, _utc(after))
    while slot is not None:
        yield slot
        slot = _next_slot(cron, slot)


def plan_fire(
    s: Schedule, *, due: datetime, now: datetime, misfire_grace_s: int
) -> tuple[datetime | None, datetime | None]:
    """(slot to fire now, next_run_at after it) for a job whose `due` has come.

    A `due` slightly after `now` (float rounding between trio time and wall
    time) counts as on time rather than as a caller error.
    """
    if misfire_grace_s < 0:
        raise ValueError("misfire_grace_s must be >= 0")
    if not isinstance(s, CronSchedule):
        return due, None  # a one-off fires late rather than never
    cron, due, now = _compiled(s.expr), _utc(due), _utc(now)
    grace = _seconds(misfire_grace_s)
    fired: datetime | None = due
    if now - due > grace:
        latest = _prev_slot(cron, now)
        fired = latest if latest is not None and now - latest <= grace else None
    return fired, _next_slot(cron, fired if fired is not None else now)


# -- instants -------------------------------------------------------------------

_LOOKS_LIKE_INSTANT = re.compile(r"[0-9]{4}-|[0-9]{8}[Tt]", re.ASCII)
_DATE_ONLY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_INSTANT = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2})"
    r"(?::([0-9]{2})(?:[.,]([0-9]{1,9}))?)?"
    r"(?:(?P<z>[Zz])|(?P<sign>[+-])([0-9]{2})(?::?([0-9]{2}))?)?",
    re.ASCII,
)


def _parse_instant(text: str) -> datetime:
    m = _INSTANT.fullmatch(text)
    if m is None and _DATE_ONLY.fullmatch(text):
        raise ScheduleError(f"'{text}' is a date; add a time and Z, e.g. {text}T00:00:00Z")
    if m is None:
        raise ScheduleError(
            f"'{text}' is not an ISO-8601 instant; write it like 2030-01-01T09:00:00Z"
        )
    if m["z"] is None and m["sign"] is None:
        raise ScheduleError(f"'{text}' has no UTC offset; add Z or an offset such as +02:00")
    year, month, day, hour, minute = (int(g) for g in m.groups()[:5])
    second = int(m[6] or 0)
    micro = int((m[7] or "0")[:6].ljust(6, "0"))
    offset = timedelta(0)
    if m["sign"] is not None:
        off_h, off_m = int(m[10]), int(m[11] or 0)
        if off_h > 23 or off_m > 59:
            raise ScheduleError(f"'{text}' has an impossible UTC offset")
        offset = timedelta(hours=off_h, minutes=off_m) * (-1 if m["sign"] == "-" else 1)
    try:
        local = datetime(year, month, day, hour, minute, second, micro, timezone(offset))
        return local.astimezone(UTC)
    except ValueError as exc:
        raise ScheduleError(f"'{text}' is not a real instant: {exc}") from None
    except OverflowError:
        raise ScheduleError(f"'{text}' is outside the years 1-9999 in UTC") from None


@lru_cache(maxsize=64)
def _seconds(n: int) -> timedelta:
    return timedelta(seconds=n)


def _utc(instant: datetime) -> datetime:
    if instant.tzinfo is None:
        raise ValueError("schedule arithmetic needs timezone-aware datetimes")
    return instant if instant.tzinfo is UTC else instant.astimezone(UTC)


# -- cron -----------------------------------------------------------------------

_MACROS = {
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
class _Cron:
    minutes: tuple[int, ...]  # minutes of the day (hour * 60 + minute), ascending
    months: int  # bit n set: month n matches
    doms: int
    dows: int  # bit 0 is Sunday (a 7 was folded into it)
    either_day: bool  # Vixie: both day fields restricted, neither starting with *

    def day_matches(self, d: date) -> bool:
        if not self.months >> d.month & 1:
            return False
        dom = self.doms >> d.day & 1
        dow = self.dows >> (d.isoweekday() % 7) & 1
        return bool(dom | dow) if self.either_day else bool(dom & dow)


@lru_cache(maxsize=4096)
def _compiled(expr: str) -> _Cron:
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
    return _Cron(minutes, month, dom, dow, either_day)


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
            if low > high:
                raise fail(f"range {base} runs backwards; split it into a list")
        else:
            low = value(base)
            high = max(f.last, low) if slash else low
        for n in range(low, high + 1, step):
            mask |= 1 << n
    return mask


def _at(d: date, minute_of_day: int) -> datetime:
    return datetime(d.year, d.month, d.day, minute_of_day // 60, minute_of_day % 60, 0, 0, UTC)


def _next_slot(cron: _Cron, after: datetime) -> datetime | None:
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


def _prev_slot(cron: _Cron, at: datetime) -> datetime | None:
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
