"""Schedules: parse `now` | an ISO-8601 instant | a 5-field cron expression, and
decide when a job fires and what a late wake-up catches up.

Pure: every instant is an argument, so the scheduler's timing policy can be
checked by hypothesis against a minute-by-minute oracle. Cron is evaluated by
the small matcher in `jobsd.cron` rather than by croniter's `get_next`, for two reasons
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
  backwards, except a day-of-week range ending on Sunday, which cronie
  reads as ending on day 7 (`sat-sun`, `5-0`, `fri-sun/2`). A step may
  exceed its range. A `*` may appear inside a list (as in Vixie).
- A cron schedule may carry an IANA time zone (`jobsd.zones`: ISC cron's
  daylight-saving rule); every instant in and out stays UTC.
- Instants: `YYYY-MM-DD[T|t|space]HH:MM[:SS[.fraction]]` then `Z`, `z` or
  `+HH:MM`/`+HHMM`/`+HH`; fractions past microseconds are truncated.
- A text over 1000 characters is refused before any parsing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from jobsd.cron import MACROS, compile_cron, next_slot, prev_slot
from jobsd.errors import ScheduleError, TimezoneError
from jobsd.zones import load_zone, next_zoned_slot, prev_zoned_slot

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
    zone: ZoneInfo | None = None  # None: UTC

    @property
    def timezone(self) -> str | None:
        return None if self.zone is None else self.zone.key


Schedule = NowSchedule | InstantSchedule | CronSchedule


def parse_schedule(text: str, timezone: str | None = None) -> Schedule:
    """Raises ScheduleError whose detail tells a person what to change;
    TimezoneError (a ScheduleError) when `timezone` is what is wrong."""
    parsed = _parse_text(text)
    if timezone is None:
        return parsed
    if not isinstance(parsed, CronSchedule):
        raise TimezoneError(
            "a timezone applies only to a recurring (cron) schedule; leave it null here"
        )
    return CronSchedule(parsed.expr, load_zone(timezone))


def parse_written_schedule(text: str, timezone: str | None = None) -> Schedule:
    """A schedule as a client writes it: `parse_schedule`, where cron's fields are
    separated only as crontab separates them, by spaces and tabs (line ends may
    surround it, not part its fields: that would be two crontab lines).
    `str.split()` splits on any Unicode space, so `0\u00a00 * * *`, four fields
    to the eye, fired as `0 0 * * *`. The check is the API's, not
    `parse_schedule`'s: the scheduler and the store read back schedules stored
    before it, which must go on firing as they did."""
    odd = next((c for c in text.strip(" \t\r\n") if c.isspace() and c not in " \t"), None)
    if odd is not None:
        raise ScheduleError(
            f"schedule contains U+{ord(odd):04X}, a space cron does not read; separate "
            "fields with spaces or tabs"
        )
    return parse_schedule(text, timezone)


def _parse_text(text: str) -> Schedule:
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
        if fields[0] not in MACROS:
            raise ScheduleError(f"unknown macro {fields[0]}; use one of {', '.join(MACROS)}")
        return CronSchedule(MACROS[fields[0]])
    if len(fields) == 1:
        raise ScheduleError(f"'{text}' is not a schedule; {_FORMS}")
    if len(fields) != 5:
        extra = "; there is no seconds or year field" if len(fields) in (6, 7) else ""
        raise ScheduleError(
            f"a cron expression has exactly 5 fields (minute hour day-of-month month "
            f"day-of-week), this one has {len(fields)}{extra}"
        )
    expr = " ".join(fields)
    compile_cron(expr)
    return CronSchedule(expr)


def unreadable_reason(problem: ScheduleError) -> str:
    """`paused_reason` of an environment whose stored cadence this jobsd cannot
    read: a zone the installed `tzdata` no longer (or does not yet) ship, such
    as `US/Pacific-New` after tzdata 2020b, or a schedule written under
    rules since tightened. Such a job cannot fire; paused, it says why."""
    return (
        f"paused by jobsd: its schedule cannot be read here ({problem.detail}); set a "
        "schedule and timezone this jobsd accepts and enable it again"
    )


def is_one_off(s: Schedule) -> bool:
    return not isinstance(s, CronSchedule)


def first_fire(s: Schedule, *, now: datetime) -> datetime:
    """`next_run_at` from scratch: an instant already past still fires (late)."""
    if isinstance(s, NowSchedule):
        return _utc(now)
    if isinstance(s, InstantSchedule):
        return s.at
    slot = _next(s, _utc(now))
    if slot is None:
        raise ScheduleError("the schedule has no slot left before the year 10000")
    return slot


def cron_slots_after(s: CronSchedule, after: datetime) -> Iterator[datetime]:
    """Slots strictly after `after`, ascending (ends only at the year 10000)."""
    slot = _next(s, _utc(after))
    while slot is not None:
        yield slot
        slot = _next(s, slot)


def plan_fire(
    s: Schedule, *, due: datetime, now: datetime, misfire_grace_s: int
) -> tuple[datetime | None, datetime | None]:
    """(slot to fire now, next_run_at after it) for a job whose `due` has come.

    Missed slots get one catch-up run, for the latest of them, if it is within
    the grace (SEMANTICS.md): when slots after `due` are past too, `due` is
    not fired even within the grace, or each next one, already due, would
    fire in turn (a burst of every slot the downtime missed). Either way
    `next_run_at` is after `now`. A `due` slightly after `now` (float rounding
    between trio time and wall time) counts as on time rather than as a
    caller error.
    """
    if misfire_grace_s < 0:
        raise ValueError("misfire_grace_s must be >= 0")
    if not isinstance(s, CronSchedule):
        return due, None  # a one-off fires late rather than never
    due, now = _utc(due), _utc(now)
    grace = _seconds(misfire_grace_s)
    after_due = _next(s, due)
    if after_due is None or after_due > now:  # `due` is the latest slot (the usual case)
        return (due if now - due <= grace else None), after_due
    latest = _prev(s, now)
    fired = latest if latest is not None and now - latest <= grace else None
    return fired, _next(s, fired if fired is not None else now)


def _next(s: CronSchedule, after: datetime) -> datetime | None:
    if s.zone is None:
        return next_slot(compile_cron(s.expr), after)
    return next_zoned_slot(compile_cron(s.expr), s.zone, after)


def _prev(s: CronSchedule, at: datetime) -> datetime | None:
    if s.zone is None:
        return prev_slot(compile_cron(s.expr), at)
    return prev_zoned_slot(compile_cron(s.expr), s.zone, at)


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
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)  # details stay one line
    if m is None and _DATE_ONLY.fullmatch(text):
        raise ScheduleError(f"'{shown}' is a date; add a time and Z, e.g. {shown}T00:00:00Z")
    if m is None:
        raise ScheduleError(
            f"'{shown}' is not an ISO-8601 instant; write it like 2030-01-01T09:00:00Z"
        )
    if m["z"] is None and m["sign"] is None:
        raise ScheduleError(f"'{shown}' has no UTC offset; add Z or an offset such as +02:00")
    year, month, day, hour, minute = (int(g) for g in m.groups()[:5])
    second = int(m[6] or 0)
    micro = int((m[7] or "0")[:6].ljust(6, "0"))
    offset = timedelta(0)
    if m["sign"] is not None:
        off_h, off_m = int(m[10]), int(m[11] or 0)
        if off_h > 23 or off_m > 59:
            raise ScheduleError(f"'{shown}' has an impossible UTC offset")
        offset = timedelta(hours=off_h, minutes=off_m) * (-1 if m["sign"] == "-" else 1)
    try:
        local = datetime(year, month, day, hour, minute, second, micro, timezone(offset))
        return local.astimezone(UTC)
    except ValueError as exc:
        raise ScheduleError(f"'{shown}' is not a real instant: {exc}") from None
    except OverflowError:
        raise ScheduleError(f"'{shown}' is outside the years 1-9999 in UTC") from None


@lru_cache(maxsize=64)
def _seconds(n: int) -> timedelta:
    return timedelta(seconds=n)


def _utc(instant: datetime) -> datetime:
    if instant.tzinfo is None:
        raise ValueError("schedule arithmetic needs timezone-aware datetimes")
    return instant if instant.tzinfo is UTC else instant.astimezone(UTC)
