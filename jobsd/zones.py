"""Cron in a time zone: ISC cron's daylight-saving rule, and zone names.

Split from `cron.py`, which matches minutes on a calendar and knows nothing
of offsets, and from `schedule.py`, which decides when a job fires. Local
wall-clock time is handled as a datetime tagged UTC (`wall = instant +
offset`), so the UTC matcher finds the next local match unchanged and
`wall - offset` is the instant again.

The rule (VERSIONS.md; ISC cron as cronsim implements it):
- wall-clock jobs (`Cron.wall_clock`: neither minute nor hour starts with
  `*`) fire at matching local times. A local time skipped by a forward
  change fires at the first whole minute after the change, and every match
  skipped by that change collapses into that one fire; a repeated local
  time fires at its first occurrence only.
- real-time jobs fire at every real minute whose local time matches: in a
  forward change their skipped minutes do not exist, in a backward change
  the repeated ones occur twice.
Either way a job's slots are a fixed set of instants. `next_zoned_slot`
returns the least one strictly after `after` and `prev_zoned_slot` the
greatest at or before `at`, so the next fire depends only on the last slot
and always increases: a restart in the middle of a change neither repeats
nor loses a slot.

zoneinfo gives the offset at an instant or at a wall time but not where it
changes. So this module relies on properties of the time-zone database,
which the tests check for every zone shipped: no offset reaches `_REACH`
(25 h) from UTC, no single change moves the clock by `_REACH`, no two
offsets of one zone differ by `_WINDOW` (48 h), and two changes are more
than `2 * _REACH + _WINDOW` apart. Then equal offsets at both ends of a
window mean no change inside it, and a change is found by bisection to the
second (changes fall on whole seconds). The same property gives the hot
path its speed: when the wall-clock offsets a `_REACH` either side agree,
the offset is known from them at once (zoneinfo's lookup by wall time costs
tens of nanoseconds, against hundreds for a conversion or a `fold=1` copy).

Zones load from the `tzdata` package, never from the host's files, so a
schedule means the same on every machine running the same jobsd.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from functools import lru_cache
from importlib import resources
from zoneinfo import ZoneInfo

from jobsd.cron import Cron, next_slot, prev_slot
from jobsd.errors import TimezoneError

MAX_TIMEZONE_CHARS = 64  # the longest IANA name is 32
_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*", re.ASCII)
_WINDOW = timedelta(hours=48)
_REACH = timedelta(hours=25)
_SECOND = timedelta(seconds=1)
_MICRO = timedelta(microseconds=1)
_MINUTE = timedelta(minutes=1)


@lru_cache(maxsize=1)
def _known_names() -> dict[str, str]:
    """Every zone tzdata ships, keyed by its lower-case form for hints."""
    listing = resources.files("tzdata").joinpath("zones").read_text(encoding="ascii")
    return {name.lower(): name for name in listing.split()}


def timezone_problem(name: str) -> str | None:
    """Why `name` is not a time zone jobsd accepts, for a 422 detail; None if it is."""
    if not name:
        return "timezone is empty; use an IANA name such as Europe/Paris, or null for UTC"
    if len(name) > MAX_TIMEZONE_CHARS:
        return f"timezone is longer than {MAX_TIMEZONE_CHARS} characters"
    if not _NAME.fullmatch(name):
        return f"'{name}' is not an IANA time zone name (like Europe/Paris)"
    known = _known_names()
    if name in known.values():
        return None
    hint = known.get(name.lower())
    if hint is not None:
        return f"unknown time zone '{name}'; names are case-sensitive: {hint}"
    return f"unknown time zone '{name}'; use an IANA name such as America/New_York"


@lru_cache(maxsize=1024)  # bounded anyway: only tzdata's ~600 names get this far
def load_zone(name: str) -> ZoneInfo:
    problem = timezone_problem(name)
    if problem is not None:
        raise TimezoneError(problem)
    path = resources.files("tzdata.zoneinfo").joinpath(*name.split("/"))
    with path.open("rb") as data:
        return ZoneInfo.from_file(data, key=name)


def next_zoned_slot(cron: Cron, zone: ZoneInfo, after: datetime) -> datetime | None:
    """The first slot strictly after the UTC instant `after` (None past the year 9999)."""
    try:
        if cron.wall_clock:
            return _next_wall(cron, zone, after)
        return _next_real(cron, zone, after)
    except OverflowError:
        return None


def prev_zoned_slot(cron: Cron, zone: ZoneInfo, at: datetime) -> datetime | None:
    """The last slot at or before the UTC instant `at` (None before the year 1)."""
    try:
        if cron.wall_clock:
            return _prev_wall(cron, zone, at)
        return _prev_real(cron, zone, at)
    except OverflowError:
        return None


# -- wall-clock jobs: slots are local times mapped to instants, in order ----------


def _next_wall(cron: Cron, zone: ZoneInfo, after: datetime) -> datetime | None:
    wall = after + _offset_at(zone, after)
    while True:
        match = next_slot(cron, wall)
        if match is None:
            return None
        slot = _first_instant(zone, match)
        if slot > after:
            return slot
        wall = match  # repeated, and its first occurrence is already past


def _prev_wall(cron: Cron, zone: ZoneInfo, at: datetime) -> datetime | None:
    offset = _offset_at(zone, at)
    wall = at + offset
    # In the second run of a repeated hour, the first runs of the rest of it
    # are past too: look from the end of the repetition.
    wall += max(_wall_offset(zone, wall) - offset, timedelta(0))
    match = prev_slot(cron, wall)
    while match is not None:
        slot = _first_instant(zone, match)
        if slot <= at:
            return slot
        match = prev_slot(cron, match - _MICRO)
    return None


def _first_instant(zone: ZoneInfo, wall: datetime) -> datetime:
    """The instant a wall-clock job fires for the local time `wall`.

    Mapping every local match this way is non-decreasing in the local time,
    which is what lets both walks stop at the first slot past their bound.
    """
    earlier = _wall_offset(zone, wall)  # fold 0: the offset before any change
    if _wall_offset(zone, wall - _REACH) == earlier == _wall_offset(zone, wall + _REACH):
        return wall - earlier  # no change within reach: `wall` occurs once
    later = _wall_offset(zone, wall.replace(fold=1))
    if earlier >= later:  # unique, or repeated: the first occurrence
        return wall - earlier
    # Skipped: the first whole local minute after the change.
    change = _change_between(zone, wall - later, wall - earlier, earlier)
    first = change + later
    if first.second or first.microsecond:
        first = first.replace(second=0, microsecond=0) + _MINUTE
    return first - later


# -- real-time jobs: walk stretches of one offset ---------------------------------


def _next_real(cron: Cron, zone: ZoneInfo, after: datetime) -> datetime | None:
    t, offset = after, _offset_at(zone, after + _MICRO)  # offset just after t
    while True:
        match = next_slot(cron, t + offset)
        if match is None:
            return None
        slot = match - offset
        end = min(slot, t + _WINDOW)
        if _offset_at(zone, end) != offset:
            change = _change_between(zone, t, end, offset)
            t, offset = change - _MICRO, _offset_at(zone, change)
        elif end == slot:
            return slot
        else:
            # No slot can lie in (t, slot - window]: local time there is
            # between t's and the match's, where nothing matches.
            t = slot - _WINDOW
            offset = _offset_at(zone, t + _MICRO)


def _prev_real(cron: Cron, zone: ZoneInfo, at: datetime) -> datetime | None:
    t, offset = at, _offset_at(zone, at)
    while True:
        match = prev_slot(cron, t + offset)
        if match is None:
            return None
        slot = match - offset
        start = max(slot, t - _WINDOW)
        start_offset = _offset_at(zone, start)
        if start_offset != offset:
            change = _change_between(zone, start, t, start_offset)
            t = change - _MICRO
            offset = start_offset
        elif start == slot:
            return slot
        else:  # the mirror image of _next_real's jump
            t = slot + _WINDOW
            offset = _offset_at(zone, t)


def _change_between(zone: ZoneInfo, low: datetime, high: datetime, old: timedelta) -> datetime:
    """The instant in (low, high] where the offset stops being `old` (there is one)."""
    low = low.replace(microsecond=0)  # still `old`: changes fall on whole seconds
    while high - low > _SECOND:
        mid = low + _SECOND * ((high - low) // _SECOND // 2)
        if _offset_at(zone, mid) == old:
            low = mid
        else:
            high = mid
    return low + _SECOND


def _offset_at(zone: ZoneInfo, instant: datetime) -> timedelta:
    """The zone's offset at a UTC instant."""
    early = _wall_offset(zone, instant - _REACH)
    if early == _wall_offset(zone, instant + _REACH):
        return early  # no change within reach of the instant's local time
    return instant.astimezone(zone).utcoffset()  # type: ignore[return-value]


def _wall_offset(zone: ZoneInfo, wall: datetime) -> timedelta:
    """The offset of a local time (fold 0: before a change, in a gap or a repeat).

    zoneinfo reads only the fields and `fold` of its argument, so a wall time
    tagged UTC serves as it is (a ZoneInfo always has an offset; the stubs
    allow None for tzinfo in general).
    """
    return zone.utcoffset(wall)  # type: ignore[return-value]
