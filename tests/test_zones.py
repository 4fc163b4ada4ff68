"""Cron in a time zone, against two oracles, across a decade of transitions.

cronsim (the implementation VERSIONS.md names) is the oracle for every
wall-clock job and for real-time jobs in zones that change by whole hours.
Real-time jobs are also checked against the definition itself, a walk over
every real minute asking whether its local time matches; that walk is the
only oracle for real-time jobs in Australia/Lord_Howe, where cronsim 2.8
drops real minutes after a 30-minute change (it steps hours by 3600 s from
a minute it has set to 0, so `*/15 0 * * *` skips 00:00 and 00:15 on the
night after: see test_cronsim_drops_minutes_after_a_half_hour_change).
"""

from __future__ import annotations

import itertools
import zoneinfo._zoneinfo as pure_zoneinfo
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from functools import cache
from importlib import resources

import pytest
from cronsim import CronSim
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsd.cron import compile_cron
from jobsd.errors import ScheduleError, TimezoneError
from jobsd.schedule import CronSchedule, cron_slots_after, first_fire, parse_schedule, plan_fire
from jobsd.zones import (
    _REACH,
    _WINDOW,
    MAX_TIMEZONE_CHARS,
    load_zone,
    next_zoned_slot,
    prev_zoned_slot,
    timezone_problem,
)

DECADE = (2016, 2026)
ORACLE_ZONES = (
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",  # +10:30 / +11: a 30-minute change
    "Asia/Kathmandu",  # +05:45, no change in the decade
    "America/Sao_Paulo",  # changed at midnight until it abolished DST in 2019
    "Europe/Istanbul",  # abolished DST in 2016
)
HALF_HOUR_ZONES = {"Australia/Lord_Howe"}
PICKED = (
    "30 2 * * *",
    "0 1-3 * * *",
    "*/30 * * * *",
    "0 */2 * * *",
    "15,45 1 * * *",
    "0 0 * * *",
    "59 1 * * *",
    "0 2 * * *",
    "30 1 * * *",
    "*/15 2 * * *",
    "0 * * * *",
    "0,30 0-3 * * *",
    "45 23 * * *",
    "* 2 * * *",
    "0-59/7 1-3 * * *",
    "*/20 1 * * *",
    "*/10 23 * * *",
    "15 */3 * * *",
    "0 0 * * 0",
    "30 0 1 * *",
)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


@cache
def changes(name: str) -> tuple[datetime, ...]:
    """The instants (to the minute) the zone's offset changes in the decade."""
    zone, found = load_zone(name), list[datetime]()
    day = utc(DECADE[0], 1, 1, 12)
    before = day.astimezone(zone).utcoffset()
    while day.year <= DECADE[1]:
        nxt = day + timedelta(days=1)
        after = nxt.astimezone(zone).utcoffset()
        if after != before:
            t = day
            while t.astimezone(zone).utcoffset() == before:
                t += timedelta(minutes=1)
            found.append(t)
        day, before = nxt, after
    return tuple(found)


def ours(expr: str, name: str, start: datetime, end: datetime) -> list[datetime]:
    slots = cron_slots_after(parse_schedule(expr, name), start)
    return list(itertools.takewhile(lambda t: t <= end, slots))


def by_cronsim(expr: str, name: str, start: datetime, end: datetime) -> list[datetime]:
    """cronsim's fires in (start, end]. From an instant in the second run of a
    repeated hour cronsim starts at the first run (it keeps the local time):
    those earlier instants are left out, as they are before `start`."""
    found = []
    for local in CronSim(expr, start.astimezone(load_zone(name))):
        t = local.astimezone(UTC)
        if t > end:
            break
        if t > start:
            found.append(t)
    return found


def by_minutes(expr: str, name: str, start: datetime, end: datetime) -> list[datetime]:
    """Real time by definition: every real minute whose local time matches."""
    parsed = parse_schedule(expr)
    assert isinstance(parsed, CronSchedule)
    cron, zone = compile_cron(parsed.expr), load_zone(name)
    minutes = frozenset(cron.minutes)
    t = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    found = []
    while t <= end:
        local = t.astimezone(zone)
        if local.hour * 60 + local.minute in minutes and cron.day_matches(local.date()):
            found.append(t)
        t += timedelta(minutes=1)
    return found


def _midnight_gap_end(t: datetime, name: str) -> bool:
    """Whether `t` ends a spring-forward gap over local midnight (São Paulo's, until 2019).

    cronsim starts each new day at 00:00; where that does not exist it normalises it to the
    gap's end and fires there, even for a real-time job, whose minutes in a gap never happen
    (found by hypothesis: `* */2 */3 * *`, 2016-10-16). The real-minute walk is the oracle
    there; the cross-check leaves that one instant out on both sides."""
    zone = load_zone(name)
    before = (t - timedelta(minutes=1)).astimezone(zone)
    return before.date() != t.astimezone(zone).date() and t.astimezone(zone).hour > 0


def expected(expr: str, name: str, start: datetime, end: datetime) -> list[datetime]:
    parsed = parse_schedule(expr)
    assert isinstance(parsed, CronSchedule)
    if not compile_cron(parsed.expr).wall_clock:
        walked = by_minutes(expr, name, start, end)
        if name not in HALF_HOUR_ZONES:
            theirs = [
                t for t in by_cronsim(expr, name, start, end) if not _midnight_gap_end(t, name)
            ]
            assert [t for t in walked if not _midnight_gap_end(t, name)] == theirs, (
                "the two oracles disagree"
            )
        return walked
    return by_cronsim(expr, name, start, end)


# -- names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("", ["empty"]),
        ("Mars/Olympus_Mons", ["unknown time zone"]),
        ("europe/london", ["case-sensitive", "Europe/London"]),
        ("../../etc/passwd", ["not an IANA"]),
        ("/usr/share/zoneinfo/UTC", ["not an IANA"]),
        ("Europe/./London", ["not an IANA"]),
        ("Europe//London", ["not an IANA"]),
        ("Europe\\London", ["not an IANA"]),
        ("Europe/London\x00", ["not an IANA"]),
        (" Europe/London", ["not an IANA"]),
        ("America", ["unknown time zone"]),  # a directory of tzdata, not a zone
        ("A" * (MAX_TIMEZONE_CHARS + 1), ["longer than"]),
        ("+05:45", ["not an IANA"]),
        ("EST5EDT,M3.2.0,M11.1.0", ["not an IANA"]),
    ],
)
def test_timezone_problems_say_what_is_wrong(name: str, words: list[str]) -> None:
    problem = timezone_problem(name)
    assert problem is not None
    for word in words:
        assert word in problem
    with pytest.raises(TimezoneError):
        load_zone(name)
    with pytest.raises(TimezoneError) as info:
        parse_schedule("0 9 * * *", name)
    assert info.value.detail == problem


@pytest.mark.parametrize(
    "name", ["UTC", "Europe/London", "America/Argentina/Buenos_Aires", "Etc/GMT+5", "US/Eastern"]
)
def test_iana_names_load_from_the_tzdata_package(name: str) -> None:
    assert timezone_problem(name) is None
    zone = load_zone(name)
    assert zone is load_zone(name) and zone.key == name
    s = parse_schedule("0 9 * * *", name)
    assert s == CronSchedule("0 9 * * *", zone) and isinstance(s, CronSchedule)
    assert s.timezone == name


def test_every_zone_tzdata_ships_is_accepted() -> None:
    names = resources.files("tzdata").joinpath("zones").read_text().split()
    assert len(names) > 500
    for name in names:
        assert timezone_problem(name) is None, name


@pytest.mark.parametrize("text", ["now", "2030-01-01T09:00:00Z"])
def test_a_zone_on_a_one_off_is_refused(text: str) -> None:
    with pytest.raises(TimezoneError, match="only to a recurring"):
        parse_schedule(text, "Europe/London")
    assert parse_schedule(text, None) == parse_schedule(text)


def test_a_bad_expression_is_still_a_schedule_error_with_a_zone() -> None:
    with pytest.raises(ScheduleError) as info:
        parse_schedule("61 * * * *", "Europe/London")
    assert not isinstance(info.value, TimezoneError)


# -- what the engine assumes of the database, checked for every zone shipped --------


def test_the_database_keeps_the_engines_assumptions() -> None:
    """No offset reaches _REACH, no change moves the clock by _REACH, a zone's
    offsets span less than _WINDOW, and two changes are more than
    2 * _REACH + _WINDOW apart (with a day to spare for the sampling), from
    the first record on. The records come from the pure-Python zoneinfo (its
    `_trans_utc`); the yearly rule after them is the same every year, so nine
    years of it are sampled daily (weekdays repeat within them)."""
    names = resources.files("tzdata").joinpath("zones").read_text().split()
    for name in names:
        with resources.files("tzdata.zoneinfo").joinpath(*name.split("/")).open("rb") as f:
            records = pure_zoneinfo.ZoneInfo.from_file(f, key=name)
        zone = load_zone(name)
        found = []
        for seconds in records._trans_utc:  # type: ignore[attr-defined]
            t = datetime.fromtimestamp(seconds, UTC)
            found.append((t, _offset(t - timedelta(seconds=1), zone), _offset(t, zone)))
        if isinstance(records._tz_after, pure_zoneinfo._TZStr):  # type: ignore[attr-defined]
            day = max([utc(1970, 1, 1), *(t for t, _, _ in found)]) + timedelta(days=1)
            before, stop = _offset(day, zone), day + timedelta(days=9 * 366)
            while day < stop:
                day += timedelta(days=1)
                now = _offset(day, zone)
                found.append((day, before, now))
                before = now
        found = [c for c in found if c[1] != c[2]]
        offsets = {o for _, a, b in found for o in (a, b)} | {_offset(utc(2000, 1, 1), zone)}
        assert all(abs(o) < _REACH for o in offsets), name
        assert max(offsets) - min(offsets) < _WINDOW, name
        for (t1, a, b), (t2, _, _) in itertools.pairwise(found):
            assert abs(b - a) < _REACH, (name, t1)
            assert t2 - t1 > 2 * _REACH + _WINDOW + timedelta(days=1), (name, t1, t2)


def _offset(t: datetime, zone: tzinfo) -> timedelta:
    offset = t.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


# -- the oracles, around every change of the decade -----------------------------------


def test_the_decade_has_the_changes_it_should() -> None:
    assert len(changes("America/New_York")) == 22
    assert len(changes("Europe/London")) == 22
    assert len(changes("Australia/Lord_Howe")) == 22
    assert changes("Asia/Kathmandu") == ()
    sao_paulo = changes("America/Sao_Paulo")
    assert len(sao_paulo) == 7 and sao_paulo[-1].year == 2019  # DST abolished in 2019
    assert [t.year for t in changes("Europe/Istanbul")] == [2016]  # +03 all year since


@pytest.mark.parametrize("name", ORACLE_ZONES)
def test_picked_expressions_around_every_change_of_the_decade(name: str) -> None:
    windows = [(t - timedelta(hours=30), t + timedelta(hours=30)) for t in changes(name)]
    if not windows:  # Kathmandu: a year of plain days
        windows = [(utc(2020, 1, 1), utc(2020, 1, 3)), (utc(2024, 2, 28), utc(2024, 3, 2))]
    for (start, end), expr in itertools.product(windows, PICKED):
        assert ours(expr, name, start, end) == expected(expr, name, start, end), (expr, start)


@st.composite
def cron_fields(draw: st.DrawFn) -> str:
    def field(low: int, high: int, star_ok: bool = True) -> str:
        kind = draw(st.sampled_from(["*", "*/k", "v", "a-b", "a-b/k", "v,w"] if star_ok else ["v"]))
        a = draw(st.integers(low, high - 1))
        b = draw(st.integers(a + 1, high))  # cronsim reads `5-5/1` as `5/1`, to the end
        k = draw(st.integers(1, max(1, (high - low) // 2)))
        return {
            "*": "*",
            "*/k": f"*/{k}",
            "v": str(a),
            "a-b": f"{a}-{b}",
            "a-b/k": f"{a}-{b}/{k}",
            "v,w": f"{a},{b}",
        }[kind]

    dom = draw(st.sampled_from(["*", "*", "*", f"{draw(st.integers(1, 28))}", "*/3", "1-15"]))
    month = draw(st.sampled_from(["*", "*", "3-4,10-11", "*/2"]))
    dow = draw(st.sampled_from(["*", "*", "*", "0", "1-5", "6,0", "sat-sun"]))
    return f"{field(0, 59)} {field(0, 23)} {dom} {month} {dow}"


@st.composite
def near_changes(draw: st.DrawFn) -> tuple[str, datetime]:
    name = draw(st.sampled_from(ORACLE_ZONES))
    found = changes(name)
    if found and draw(st.booleans()):
        base = draw(st.sampled_from(found))
        return name, base + timedelta(seconds=draw(st.integers(-30 * 3600, 30 * 3600)))
    seconds = draw(st.integers(0, (DECADE[1] - DECADE[0]) * 365 * 86_400))
    return name, utc(DECADE[0], 1, 1) + timedelta(seconds=seconds)


@settings(max_examples=150, deadline=None)
@given(cron_fields(), near_changes())
def test_generated_expressions_agree_with_the_oracles(
    expr: str, where: tuple[str, datetime]
) -> None:
    name, start = where
    end = start + timedelta(days=2)
    # cronsim has no backward ranges: give it the forward form of sat-sun
    oracle_expr = expr.replace("sat-sun", "6-7")
    assert ours(expr, name, start, end) == expected(oracle_expr, name, start, end)


def test_cronsim_drops_minutes_after_a_half_hour_change() -> None:
    """Why cronsim is not the oracle for real-time jobs in Lord Howe."""
    start = utc(2015, 10, 3, 14, 30)  # 2015-10-04 01:00 +10:30, before the change at 02:00
    end = start + timedelta(days=2)
    by_definition = by_minutes("*/15 0 * * *", "Australia/Lord_Howe", start, end)
    assert by_definition[:2] == [utc(2015, 10, 4, 13), utc(2015, 10, 4, 13, 15)]  # 00:00, 00:15 +11
    assert ours("*/15 0 * * *", "Australia/Lord_Howe", start, end) == by_definition
    assert by_cronsim("*/15 0 * * *", "Australia/Lord_Howe", start, end)[0] == utc(
        2015, 10, 4, 13, 30
    )


# -- the rule, spelled out ---------------------------------------------------------------

NY, LONDON, LORD_HOWE = "America/New_York", "Europe/London", "Australia/Lord_Howe"


@pytest.mark.parametrize(
    ("expr", "name", "start", "fires"),
    [
        # New York springs forward 2025-03-09 02:00 EST -> 03:00 EDT (07:00 UTC)
        ("30 2 * * *", NY, utc(2025, 3, 8, 12), [utc(2025, 3, 9, 7), utc(2025, 3, 10, 6, 30)]),
        ("0 1-3 * * *", NY, utc(2025, 3, 9, 5), [utc(2025, 3, 9, 6), utc(2025, 3, 9, 7)]),
        ("0,30 2 * * *", NY, utc(2025, 3, 9, 5), [utc(2025, 3, 9, 7), utc(2025, 3, 10, 6)]),
        # ... and falls back 2025-11-02 02:00 EDT -> 01:00 EST (06:00 UTC)
        ("30 1 * * *", NY, utc(2025, 11, 2, 4), [utc(2025, 11, 2, 5, 30), utc(2025, 11, 3, 6, 30)]),
        ("0 1-3 * * *", NY, utc(2025, 11, 2, 4), [utc(2025, 11, 2, 5), utc(2025, 11, 2, 7)]),
        ("0 * * * *", NY, utc(2025, 11, 2, 4, 30), [utc(2025, 11, 2, 5), utc(2025, 11, 2, 6)]),
        ("0 */2 * * *", NY, utc(2025, 3, 9, 4, 30), [utc(2025, 3, 9, 5), utc(2025, 3, 9, 8)]),
        # London springs forward 2025-03-30 01:00 GMT -> 02:00 BST
        ("30 1 * * *", LONDON, utc(2025, 3, 30), [utc(2025, 3, 30, 1), utc(2025, 3, 31, 0, 30)]),
        # Lord Howe: 2025-10-05 02:00 +10:30 -> 02:30 +11; 2025-04-06 02:00 +11 -> 01:30 +10:30
        ("15 2 * * *", LORD_HOWE, utc(2025, 10, 4, 14), [utc(2025, 10, 4, 15, 30)]),
        ("45 1 * * *", LORD_HOWE, utc(2025, 4, 5, 14), [utc(2025, 4, 5, 14, 45)]),
        (
            "*/20 1 * * *",
            LORD_HOWE,
            utc(2025, 4, 5, 13, 50),
            [
                utc(2025, 4, 5, 14),
                utc(2025, 4, 5, 14, 20),
                utc(2025, 4, 5, 14, 40),
                utc(2025, 4, 5, 15, 10),  # 01:40 again, at +10:30: real time
            ],
        ),
    ],
)
def test_the_rule_at_the_changes(
    expr: str, name: str, start: datetime, fires: list[datetime]
) -> None:
    s = parse_schedule(expr, name)
    assert list(itertools.islice(cron_slots_after(s, start), len(fires))) == fires


def test_a_midnight_that_does_not_exist_fires_at_one() -> None:
    # Sao Paulo 2018-11-04: 00:00 -03 became 01:00 -02 (03:00 UTC)
    s = parse_schedule("0 0 * * *", "America/Sao_Paulo")
    assert first_fire(s, now=utc(2018, 11, 3, 12)) == utc(2018, 11, 4, 3)
    assert first_fire(s, now=utc(2018, 11, 4, 3)) == utc(2018, 11, 5, 2)


# -- every slot once, also across a restart in the middle of a change --------------


@settings(max_examples=150, deadline=None)
@given(cron_fields(), near_changes(), st.integers(0, 24 * 3600 * 1_000_000))
def test_next_is_deterministic_from_any_instant_and_increasing(
    expr: str, where: tuple[str, datetime], micros: int
) -> None:
    """Starting over from any instant (a restart) yields exactly the slots of
    the uninterrupted sequence after it, and prev is its mirror image."""
    name, start = where
    s = parse_schedule(expr, name)
    assert isinstance(s, CronSchedule) and s.zone is not None
    cron = compile_cron(s.expr)
    sequence = ours(expr, name, start, start + timedelta(days=3))
    assert all(a < b for a, b in itertools.pairwise(sequence))
    restart = start + timedelta(microseconds=micros)
    later = [t for t in sequence if t > restart]
    if later:
        assert next_zoned_slot(cron, s.zone, restart) == later[0]
    earlier = [t for t in sequence if t <= restart]
    if earlier:
        assert prev_zoned_slot(cron, s.zone, restart) == earlier[-1]
        assert prev_zoned_slot(cron, s.zone, earlier[-1]) == earlier[-1]


@settings(max_examples=100, deadline=None)
@given(cron_fields(), near_changes(), st.integers(0, 86_400))
def test_catch_up_in_a_zone_fires_the_latest_missed_slot_within_grace(
    expr: str, where: tuple[str, datetime], grace_s: int
) -> None:
    name, now = where
    s = parse_schedule(expr, name)
    missed = ours(expr, name, now - timedelta(days=2), now)
    due = now - timedelta(days=3)
    fired, nxt = plan_fire(s, due=due, now=now, misfire_grace_s=grace_s)
    within = [t for t in missed if now - t <= timedelta(seconds=grace_s)]
    assert fired == (within[-1] if within else None)
    assert nxt == first_fire(s, now=fired or now)


def slots_between(s: CronSchedule, start: datetime, n: int) -> Iterator[datetime]:
    return itertools.islice(cron_slots_after(s, start), n)


def test_the_edges_of_time_end_quietly() -> None:
    s = parse_schedule("0 0 * * *", "Pacific/Kiritimati")
    assert isinstance(s, CronSchedule)
    with pytest.raises(ScheduleError, match="no slot left"):
        first_fire(s, now=datetime(9999, 12, 31, tzinfo=UTC))
    # local midnights of 9999-12-30 and -31 at +14; the last may be lost to
    # the year 10000 lying within reach of its checks, never invented
    last = list(slots_between(s, datetime(9999, 12, 29, tzinfo=UTC), 5))
    assert last in (
        [datetime(9999, 12, 29, 10, tzinfo=UTC)],
        [datetime(9999, 12, 29, 10, tzinfo=UTC), datetime(9999, 12, 30, 10, tzinfo=UTC)],
    )


# -- edges that mutation testing found unpinned --------------------------------------


def test_prev_of_an_instant_exactly_on_a_wall_clock_slot_is_that_slot() -> None:
    paris = load_zone("Europe/Paris")
    at = datetime(2026, 6, 1, 7, 30, tzinfo=UTC)  # 09:30 in Paris
    assert prev_zoned_slot(compile_cron("30 9 * * *"), paris, at) == at


def test_prev_in_the_second_run_of_a_repeated_hour_sees_its_first_run() -> None:
    # Paris repeats 02:00-03:00 on 2026-10-25; 02:30 fired first at 00:30Z. At
    # 01:15Z (the second 02:15) that fire is the latest, not yesterday's.
    paris = load_zone("Europe/Paris")
    at = datetime(2026, 10, 25, 1, 15, tzinfo=UTC)
    assert prev_zoned_slot(compile_cron("30 2 * * *"), paris, at) == datetime(
        2026, 10, 25, 0, 30, tzinfo=UTC
    )


def test_a_skip_ending_between_minutes_fires_at_the_next_whole_minute() -> None:
    # Monrovia went from -00:44:30 to UTC at 00:44:30 local on 1972-01-07: 00:15
    # was skipped and fires at 00:45, the first whole minute after the change
    monrovia = load_zone("Africa/Monrovia")
    after = datetime(1972, 1, 6, tzinfo=UTC)
    assert next_zoned_slot(compile_cron("15 0 7 1 *"), monrovia, after) == datetime(
        1972, 1, 7, 0, 45, tzinfo=UTC
    )
