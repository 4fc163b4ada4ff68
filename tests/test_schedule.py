"""Schedules: examples from SEMANTICS.md, then hypothesis against a naive
oracle that knows Vixie cron's rules and walks the calendar minute by minute.
"""

from __future__ import annotations

import itertools
import string
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from croniter import croniter
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from jobsd.clock import iso
from jobsd.cron import compile_cron, prev_slot
from jobsd.errors import ScheduleError
from jobsd.schedule import (
    MAX_SCHEDULE_CHARS,
    CronSchedule,
    InstantSchedule,
    NowSchedule,
    cron_slots_after,
    first_fire,
    is_one_off,
    parse_schedule,
    plan_fire,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, us, tzinfo=UTC)


def slots(expr: str, after: datetime, n: int) -> list[datetime]:
    return list(itertools.islice(cron_slots_after(CronSchedule(expr), after), n))


# -- parsing ----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["now", "NOW", "Now", "  now\n", "\tnow "])
def test_now_any_case_and_surrounding_whitespace(text: str) -> None:
    assert parse_schedule(text) == NowSchedule()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2030-01-01T09:00:00Z", utc(2030, 1, 1, 9)),
        ("2030-01-01t09:00:00z", utc(2030, 1, 1, 9)),
        ("2030-01-01 09:00Z", utc(2030, 1, 1, 9)),
        ("2030-01-01T09:00:00+02:00", utc(2030, 1, 1, 7)),
        ("2030-01-01T09:00:00+0200", utc(2030, 1, 1, 7)),
        ("2030-01-01T09:00:00-05", utc(2030, 1, 1, 14)),
        ("2030-01-01T00:30:00+01:00", utc(2029, 12, 31, 23, 30)),
        ("2030-01-01T09:00:00.5Z", utc(2030, 1, 1, 9, 0, 0, 500_000)),
        ("2030-01-01T09:00:00,123456789Z", utc(2030, 1, 1, 9, 0, 0, 123_456)),
        (" 2030-01-01T09:00:00Z\n", utc(2030, 1, 1, 9)),
    ],
)
def test_instants_become_utc(text: str, expected: datetime) -> None:
    parsed = parse_schedule(text)
    assert parsed == InstantSchedule(expected)
    assert isinstance(parsed, InstantSchedule)
    assert parsed.at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("text", "expr"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@ANNUALLY", "0 0 1 1 *"),
        ("@Monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("  */5   *\t* *  * ", "*/5 * * * *"),
        ("0 9 * JAN-Mar MON-fri", "0 9 * jan-mar mon-fri"),
    ],
)
def test_cron_is_normalized(text: str, expr: str) -> None:
    assert parse_schedule(text) == CronSchedule(expr)
    assert parse_schedule(expr) == CronSchedule(expr)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", ["empty"]),
        ("   ", ["empty"]),
        ("tomorrow", ["not a schedule"]),
        ("2030-01-01T09:00:00", ["no UTC offset", "add Z"]),
        ("2030-01-01 09:00", ["no UTC offset"]),
        ("2030-01-01", ["is a date", "add a time"]),
        ("2030-02-30T00:00:00Z", ["not a real instant"]),
        ("2030-01-01T24:00:00Z", ["not a real instant"]),
        ("2030-01-01T09:00:00+24:00", ["impossible UTC offset"]),
        ("0001-01-01T00:00:00+01:00", ["outside the years"]),
        ("9999-12-31T23:00:00-01:00", ["outside the years"]),
        ("2030-W01-1T09:00Z", ["not an ISO-8601 instant"]),
        ("20300101T090000Z", ["not an ISO-8601 instant"]),
        ("2030-01-01T09:00:00Z extra", ["not an ISO-8601 instant"]),
        ("@reboot", ["@reboot", "not supported"]),
        ("@every 5m", ["must stand alone"]),
        ("@fortnightly", ["unknown macro", "@hourly"]),
        ("* * * * * *", ["exactly 5 fields", "6", "no seconds"]),
        ("0 * * * * * 2030", ["exactly 5 fields", "7"]),
        ("* * * *", ["exactly 5 fields", "4"]),
        ("60 * * * *", ["minute field", "60"]),
        ("* 24 * * *", ["hour field", "24"]),
        ("* * 0 * *", ["day-of-month field", "0"]),
        ("* * 32 * *", ["day-of-month field", "32"]),
        ("* * * 13 *", ["month field", "13"]),
        ("* * * 0 *", ["month field", "0"]),
        ("* * * * 8", ["day-of-week field", "8"]),
        ("* * * jam *", ["month field", "'jam'", "jan-dec"]),
        ("* * * * monday", ["day-of-week field", "sun-sat"]),
        ("*/0 * * * *", ["minute field", "step"]),
        ("*/x * * * *", ["minute field", "step"]),
        ("1-2-3 * * * *", ["minute field"]),
        ("-5 * * * *", ["minute field", "missing"]),
        ("1,,2 * * * *", ["minute field", "missing"]),
        ("5, * * * *", ["minute field", "missing"]),
        ("30-10 * * * *", ["minute field", "backwards"]),
        ("0 0 * * sat-mon", ["day-of-week field", "backwards", "end it on Sunday"]),
        ("0 0 * * 6-1", ["day-of-week field", "backwards"]),
        ("0 0 * * 7-1", ["day-of-week field", "backwards"]),
        ("0 0 L * *", ["day-of-month field"]),
        ("0 0 15W * *", ["day-of-month field"]),
        ("0 0 * * 1#2", ["day-of-week field"]),
        ("? * * * *", ["minute field"]),
        ("H * * * *", ["minute field"]),
        ("\uff15 * * * *", ["minute field"]),  # a fullwidth 5 is not a digit here
        ("0 0 30 2 *", ["never", "February"]),
        ("0 0 31 4,6 *", ["never", "April", "June"]),
        ("0 0 30,31 2 */2", ["never", "February"]),
        ("x" * (MAX_SCHEDULE_CHARS + 1), ["longer than"]),
    ],
)
def test_refusals_say_what_is_wrong(text: str, words: list[str]) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_schedule(text)
    for word in words:
        assert word in info.value.detail


@pytest.mark.parametrize("text", ["0000-\n0", "2030-01-01\n09:00Z", "2030-01-01T09:00\x00Z"])
def test_a_refused_instant_is_shown_on_one_line(text: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_schedule(text)
    assert "\n" not in info.value.detail and "\x00" not in info.value.detail
    assert "\\n" in info.value.detail or "\\x00" in info.value.detail


def test_feb_29_is_valid_and_skips_the_century_that_is_not_leap() -> None:
    s = parse_schedule("0 0 29 2 *")
    assert isinstance(s, CronSchedule)
    assert slots(s.expr, utc(2096, 3, 1), 2) == [utc(2104, 2, 29), utc(2108, 2, 29)]
    assert slots(s.expr, utc(2024, 2, 29), 1) == [utc(2028, 2, 29)]


def test_a_slot_decades_away_is_still_found_both_ways() -> None:
    # Feb 29 that is a Sunday ("*/7" keeps the day fields intersecting): 2088,
    # then 2128, 40 years on since 2100 is not leap. The search must reach that far.
    cron = compile_cron("0 0 29 2 */7")
    assert slots("0 0 29 2 */7", utc(2088, 3, 1), 2) == [utc(2128, 2, 29), utc(2156, 2, 29)]
    assert prev_slot(cron, utc(2128, 2, 28)) == utc(2088, 2, 29)


def test_day_of_month_impossible_only_in_some_listed_months_still_fires() -> None:
    assert slots("0 0 31 2,3 *", T0, 2) == [utc(2025, 3, 31), utc(2026, 3, 31)]


# -- Vixie semantics, and where croniter differs ----------------------------------


def test_both_day_fields_restricted_means_either() -> None:
    # Friday the 13th in Vixie cron is "the 13th, or any Friday"
    assert slots("0 0 13 * 5", T0, 4) == [
        utc(2025, 1, 3),
        utc(2025, 1, 10),
        utc(2025, 1, 13),
        utc(2025, 1, 17),
    ]


def test_a_day_field_starting_with_star_means_both() -> None:
    # Vixie sets DOM_STAR for "*/2", so the days intersect: odd-numbered Mondays.
    # croniter's default (day_or=True) unions here; only implement_cron_bug agrees.
    assert slots("0 0 */2 * 1", T0, 3) == [utc(2025, 1, 13), utc(2025, 1, 27), utc(2025, 2, 3)]
    assert slots("0 0 1 * */1", T0, 2) == [utc(2025, 2, 1), utc(2025, 3, 1)]
    assert slots("0 0 1-31 * 1", T0, 2) == [utc(2025, 1, 2), utc(2025, 1, 3)]


def test_single_value_ranges_are_that_value() -> None:
    # croniter 7 expands "5-5" to the whole field (every minute); Vixie means :05
    assert slots("5-5 * * * *", T0, 2) == [utc(2025, 1, 1, 0, 5), utc(2025, 1, 1, 1, 5)]
    assert slots("0 0 * jan-jan *", T0, 2) == [utc(2025, 1, 2), utc(2025, 1, 3)]


@pytest.mark.parametrize("dow", ["0", "7", "sun", "SUN", "7-7", "0,7", "*/7", "6/1,0"])
def test_sunday_is_both_0_and_7(dow: str) -> None:
    got = slots(f"0 0 * * {dow}", T0, 2)
    if dow == "6/1,0":
        assert got == [utc(2025, 1, 4), utc(2025, 1, 5)]
    else:
        assert got == [utc(2025, 1, 5), utc(2025, 1, 12)]


@pytest.mark.parametrize(
    ("dow", "days"),
    [
        # cronie: a backward day-of-week range ending on Sunday ends on day 7
        ("sat-sun", [4, 5, 11, 12]),
        ("6-0", [4, 5, 11, 12]),
        ("5-0", [3, 4, 5, 10]),
        ("fri-sun", [3, 4, 5, 10]),
        ("FRI-SUN", [3, 4, 5, 10]),
        ("5-0/2", [3, 5, 10, 12]),  # fri, sun
        ("7-0", [5, 12, 19, 26]),  # 7-7: Sunday
        ("1-0", [2, 3, 4, 5]),  # mon-sun: every day
        ("sat-sun,wed", [4, 5, 8, 11]),
        ("0-0", [5, 12, 19, 26]),  # not backwards: Sunday alone
    ],
)
def test_backward_day_of_week_ranges_ending_on_sunday(dow: str, days: list[int]) -> None:
    assert slots(f"0 0 * * {dow}", T0, 4) == [utc(2025, 1, d) for d in days]
    assert parse_schedule(f"0 0 * * {dow}") == CronSchedule(f"0 0 * * {dow.lower()}")


def test_sat_sun_as_in_cronies_own_example() -> None:
    """cronie-crond/cronie#200: `0 0 * * sat-sun` in a CET crontab, read with
    cronnext on Thursday 2025-03-13, fires next at 1741993200 (Sat 00:00 CET)."""
    s = parse_schedule("0 0 * * sat-sun", "Europe/Prague")
    assert first_fire(s, now=utc(2025, 3, 13, 12)).timestamp() == 1741993200


def test_start_with_step_runs_to_the_end_of_the_field() -> None:
    assert slots("50/5 * * * *", T0, 3) == [
        utc(2025, 1, 1, 0, 50),
        utc(2025, 1, 1, 0, 55),
        utc(2025, 1, 1, 1, 50),
    ]
    assert slots("0 0 * * 5/1", T0, 3) == [utc(2025, 1, 3), utc(2025, 1, 4), utc(2025, 1, 10)]


# -- first_fire and plan_fire ------------------------------------------------------


def test_first_fire() -> None:
    now = utc(2025, 6, 1, 12, 0, 30)
    assert first_fire(NowSchedule(), now=now) == now
    past = InstantSchedule(utc(2020, 1, 1))
    assert first_fire(past, now=now) == utc(2020, 1, 1)
    assert first_fire(CronSchedule("*/5 * * * *"), now=now) == utc(2025, 6, 1, 12, 5)
    # strictly after: a `now` exactly on a slot gets the next one
    assert first_fire(CronSchedule("0 * * * *"), now=utc(2025, 6, 1, 12)) == utc(2025, 6, 1, 13)
    with pytest.raises(ValueError):
        first_fire(CronSchedule("* * * * *"), now=datetime(2025, 1, 1))


def test_one_offs_fire_late_rather_than_never() -> None:
    assert is_one_off(NowSchedule()) and is_one_off(InstantSchedule(T0))
    assert not is_one_off(CronSchedule("* * * * *"))
    for s in (NowSchedule(), InstantSchedule(T0)):
        late = T0 + timedelta(days=400)
        assert plan_fire(s, due=T0, now=late, misfire_grace_s=60) == (T0, None)


HOURLY = CronSchedule("0 * * * *")


@pytest.mark.parametrize(
    ("due", "now", "expected"),
    [
        # on time
        (utc(2025, 1, 1, 10), utc(2025, 1, 1, 10), (utc(2025, 1, 1, 10), utc(2025, 1, 1, 11))),
        # late within the grace: the due slot fires
        (
            utc(2025, 1, 1, 10),
            utc(2025, 1, 1, 10, 1),
            (utc(2025, 1, 1, 10), utc(2025, 1, 1, 11)),
        ),
        # late past the grace, and the latest missed slot too: nothing, next slot
        (utc(2025, 1, 1, 10), utc(2025, 1, 1, 10, 2), (None, utc(2025, 1, 1, 11))),
        # down for days; the latest missed slot is within the grace: that one fires
        (
            utc(2025, 1, 1, 10),
            utc(2025, 1, 3, 7, 0, 59),
            (utc(2025, 1, 3, 7), utc(2025, 1, 3, 8)),
        ),
        (utc(2025, 1, 1, 10), utc(2025, 1, 3, 7, 1, 1), (None, utc(2025, 1, 3, 8))),
        # a due a hair after now (float rounding) is on time
        (
            utc(2025, 1, 1, 10),
            utc(2025, 1, 1, 9, 59, 59, 999_999),
            (utc(2025, 1, 1, 10), utc(2025, 1, 1, 11)),
        ),
    ],
)
def test_plan_fire_catch_up(
    due: datetime, now: datetime, expected: tuple[datetime | None, datetime | None]
) -> None:
    assert plan_fire(HOURLY, due=due, now=now, misfire_grace_s=60) == expected


def test_a_slot_falling_exactly_on_now_is_the_one_that_fires() -> None:
    # due 10:00, now exactly 11:00: 11:00 is the latest slot, so it fires (not
    # 10:00), and next_run_at is after now, not now itself
    due, now = utc(2025, 1, 1, 10), utc(2025, 1, 1, 11)
    assert plan_fire(HOURLY, due=due, now=now, misfire_grace_s=7200) == (now, utc(2025, 1, 1, 12))


def test_first_fire_of_now_is_in_utc() -> None:
    now = datetime(2025, 6, 1, 14, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    fired = first_fire(NowSchedule(), now=now)
    assert fired == now and fired.tzinfo is UTC


def test_plan_fire_grace_boundary_is_inclusive() -> None:
    due = utc(2025, 1, 1, 10)
    edge = due + timedelta(seconds=60)
    assert plan_fire(HOURLY, due=due, now=edge, misfire_grace_s=60)[0] == due
    after = edge + timedelta(microseconds=1)
    assert plan_fire(HOURLY, due=due, now=after, misfire_grace_s=60)[0] is None


def test_catch_up_within_the_grace_is_one_run_for_the_latest_missed_slot() -> None:
    """SEMANTICS.md: "a cron job fires one catch-up run for its latest missed
    slot". Down from 10:00 to 10:03:30 with a grace of 10 minutes, an
    every-minute job missed 10:00-10:03, all within the grace: only 10:03
    fires, and the next is 10:04 (the first due slot fired, then each next one
    already due, four runs in a burst)."""
    every_minute = CronSchedule("* * * * *")
    due, now = utc(2025, 1, 1, 10), utc(2025, 1, 1, 10, 3, 30)
    assert plan_fire(every_minute, due=due, now=now, misfire_grace_s=600) == (
        utc(2025, 1, 1, 10, 3),
        utc(2025, 1, 1, 10, 4),
    )


def test_plan_fire_refuses_negative_grace() -> None:
    with pytest.raises(ValueError):
        plan_fire(HOURLY, due=T0, now=T0, misfire_grace_s=-1)


def test_a_year_of_every_five_minutes_is_fast() -> None:
    s = CronSchedule("*/5 * * * *")
    due, fired = T0, 0
    for _ in range(105_120):
        slot, nxt = plan_fire(s, due=due, now=due, misfire_grace_s=60)
        assert slot == due and nxt is not None
        due, fired = nxt, fired + 1
    assert due == utc(2026, 1, 1)  # the timing is measured in the report, not asserted


# -- the oracle -------------------------------------------------------------------

FIELD_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


@dataclass(frozen=True)
class Oracle:
    """Field sets computed from the generator's structure, not from the text."""

    sets: tuple[frozenset[int], ...]
    starred: tuple[bool, ...]

    def day_ok(self, d: date) -> bool:
        _, _, doms, months, dows = self.sets
        if d.month not in months:
            return False
        dom_ok = d.day in doms
        dow_ok = (d.isoweekday() % 7) in dows
        if self.starred[2] or self.starred[4]:
            return dom_ok and dow_ok
        return dom_ok or dow_ok

    def matches(self, t: datetime) -> bool:
        return t.minute in self.sets[0] and t.hour in self.sets[1] and self.day_ok(t.date())

    def next_slots(self, after: datetime, n: int, days: int) -> list[datetime]:
        """Walk minute by minute (skipping days that cannot match) for `days`."""
        t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
        end, found = after + timedelta(days=days), list[datetime]()
        while t < end and len(found) < n:
            if not self.day_ok(t.date()):
                t = datetime.combine(t.date() + timedelta(days=1), datetime.min.time(), UTC)
                continue
            if self.matches(t):
                found.append(t)
            t += timedelta(minutes=1)
        return found

    def prev_slot(self, at: datetime, days: int) -> datetime | None:
        t, end = at.replace(second=0, microsecond=0), at - timedelta(days=days)
        while t > end:
            if not self.day_ok(t.date()):
                t = datetime.combine(t.date(), datetime.min.time(), UTC) - timedelta(minutes=1)
                continue
            if self.matches(t):
                return t
            t -= timedelta(minutes=1)
        return None

    def can_fire(self) -> bool:
        if not (self.starred[2] or self.starred[4]):
            return True
        longest = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31}
        longest |= {11: 30, 12: 31}
        return any(d <= longest[m] for m in self.sets[3] for d in self.sets[2])


@st.composite
def cron_field(draw: st.DrawFn, index: int, safe: bool) -> tuple[str, frozenset[int], bool]:
    """One field's text, its values, and whether it starts with `*`.

    `safe` leaves out what croniter 7 gets wrong (see the croniter test).
    """
    low, high = FIELD_RANGES[index]
    last = 6 if index == 4 else high  # where `*` and `n/step` stop
    names = MONTH_NAMES if index == 3 else DAY_NAMES if index == 4 else None

    def render(v: int) -> str:
        if names is None or not draw(st.booleans()) or (index == 4 and v == 7):
            return str(v).zfill(draw(st.sampled_from([1, 1, 1, 2])))
        name = names[v - low]
        return draw(st.sampled_from([name, name.upper(), name.title()]))

    parts, values = [], set()
    for i in range(draw(st.integers(1, 3))):
        kinds = ["*", "*/s", "v", "a-b", "a-b/s", "a/s"]
        kind = draw(st.sampled_from(kinds[2:] if safe and i > 0 else kinds))
        step = draw(st.integers(1, high + 2))
        if kind in ("*", "*/s"):
            part = "*" if kind == "*" else f"*/{step}"
            values |= set(range(low, last + 1, 1 if kind == "*" else step))
        elif kind == "v":
            v = draw(st.integers(low, high))
            part, values = render(v), values | {v}
        elif kind == "a/s":
            a = draw(st.integers(low, last if safe else high))
            part, values = f"{render(a)}/{step}", values | set(range(a, max(a, last) + 1, step))
        elif safe:  # a proper range, whose ends differ even as days of the week
            a = draw(st.integers(low, high - 1))
            b = draw(st.integers(a + 1, 6 if index == 4 and a == 0 else high))
            part = f"{render(a)}-{render(b)}" + ("" if kind == "a-b" else f"/{step}")
            values |= set(range(a, b + 1, 1 if kind == "a-b" else step))
        else:
            a = draw(st.integers(low, high))
            b = draw(st.integers(a, high))
            s = 1 if kind == "a-b" else step
            part = f"{render(a)}-{render(b)}" + ("" if kind == "a-b" else f"/{step}")
            values |= set(range(a, b + 1, s))
        parts.append(part)
    if index == 4 and 7 in values:
        values = (values - {7}) | {0}
    return ",".join(parts), frozenset(values), parts[0].startswith("*")


@st.composite
def cron_exprs(draw: st.DrawFn, safe: bool = False) -> tuple[str, Oracle]:
    fields = [draw(cron_field(i, safe)) for i in range(5)]
    text = " ".join(f[0] for f in fields)
    return text, Oracle(tuple(f[1] for f in fields), tuple(f[2] for f in fields))


instants = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=150, deadline=None)
@given(cron_exprs(), instants)
def test_cron_matches_the_vixie_oracle(case: tuple[str, Oracle], after: datetime) -> None:
    text, oracle = case
    if not oracle.can_fire():
        with pytest.raises(ScheduleError):
            parse_schedule(text)
        return
    s = parse_schedule(text)
    assert isinstance(s, CronSchedule)
    window = 800
    expected = oracle.next_slots(after, 5, window)
    end = after + timedelta(days=window)
    got = list(
        itertools.islice(itertools.takewhile(lambda t: t < end, cron_slots_after(s, after)), 5)
    )
    assert got == expected


def _missed(case: tuple[str, Oracle], now: datetime) -> tuple[CronSchedule, Oracle, datetime]:
    """A cron that can fire, and its latest slot at or before `now`."""
    text, oracle = case
    assume(oracle.can_fire())
    s = parse_schedule(text)
    assert isinstance(s, CronSchedule)
    latest = oracle.prev_slot(now, 800)
    assume(latest is not None)
    assert latest is not None
    return s, oracle, latest


@settings(max_examples=100, deadline=None)
@given(cron_exprs(), instants, st.integers(0, 3 * 86_400))
def test_catch_up_fires_the_latest_missed_slot_within_grace(
    case: tuple[str, Oracle], now: datetime, grace_s: int
) -> None:
    s, oracle, latest = _missed(case, now)
    due = latest - timedelta(days=1000)  # long before: only the catch-up rule decides
    fired, nxt = plan_fire(s, due=due, now=now, misfire_grace_s=grace_s)
    assert fired == (latest if now - latest <= timedelta(seconds=grace_s) else None)
    assert nxt == next(cron_slots_after(s, fired or now))
    assert nxt is not None and nxt > (fired or now) and oracle.matches(nxt)


@settings(max_examples=100, deadline=None)
@given(cron_exprs(), instants, st.integers(0, 3 * 86_400), st.integers(0, 3 * 86_400))
def test_catch_up_from_any_missed_slot_is_the_latest_within_grace(
    case: tuple[str, Oracle], now: datetime, grace_s: int, back_s: int
) -> None:
    """Whichever missed slot is due (the first after the daemon stopped, however
    recent), one run: the latest slot at or before now, when within the grace."""
    s, oracle, latest = _missed(case, now)
    due = oracle.prev_slot(latest - timedelta(seconds=back_s), 800)
    assume(due is not None)
    assert due is not None
    fired, nxt = plan_fire(s, due=due, now=now, misfire_grace_s=grace_s)
    assert fired == (latest if now - latest <= timedelta(seconds=grace_s) else None)
    assert nxt == next(cron_slots_after(s, now))


@settings(max_examples=60, deadline=None)
@given(
    cron_exprs(safe=True),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1)),
)
def test_agrees_with_croniter_in_vixie_mode(case: tuple[str, Oracle], after: datetime) -> None:
    """croniter with implement_cron_bug=True, on expressions that avoid what
    croniter 7 gets wrong (found by this test): an equal range (`5-5`) means
    the whole field; a `*` later in a list confuses it (`1,*` matches only
    the 1st; a full `0,*/1` day-of-week collapses to `*` when day-of-month
    holds a `*` anywhere); day-of-week `7/2` wraps to 0,2,4,6 (ours: Sunday
    alone; Vixie has no `n/step` at all)."""
    text, oracle = case
    assume(oracle.can_fire())
    s = parse_schedule(text)
    assert isinstance(s, CronSchedule)
    ours = slots(s.expr, after.replace(tzinfo=UTC), 3)
    it = croniter(text, after.replace(tzinfo=UTC), ret_type=datetime, implement_cron_bug=True)
    assert ours == [it.get_next() for _ in ours]


@settings(max_examples=100, deadline=None)
@given(
    st.sets(st.integers(27, 31), min_size=1),
    st.sets(st.integers(1, 12), min_size=1),
    st.sampled_from(["*", "*/2", "*/7"]),
    instants,
)
def test_never_firing_is_refused_and_anything_else_fires(
    doms: set[int], months: set[int], dow: str, after: datetime
) -> None:
    text = f"0 0 {','.join(map(str, sorted(doms)))} {','.join(map(str, sorted(months)))} {dow}"
    longest = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    if not any(d <= longest[m] for d in doms for m in months):
        with pytest.raises(ScheduleError, match="never"):
            parse_schedule(text)
        return
    slot = next(cron_slots_after(CronSchedule(text), after))
    assert slot.day in doms and slot.month in months and slot > after


# -- robustness and round trips ---------------------------------------------------

cronish = st.text(alphabet=string.digits + "*/-, @#?LWHjanmonsu\t \u00a0\uff15Z:T+.", max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=60), cronish, st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}.*")))
def test_parse_raises_only_schedule_error(text: str) -> None:
    try:
        parsed = parse_schedule(text)
    except ScheduleError as exc:
        assert exc.detail and "\n" not in exc.detail[:200]
        return
    if isinstance(parsed, CronSchedule):
        assert parse_schedule(parsed.expr) == parsed
        first_fire(parsed, now=T0)


fixed_offsets = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-23 * 60 - 59, 23 * 60 + 59)
)


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1000, 1, 2), max_value=datetime(9998, 12, 30), timezones=fixed_offsets
    )
)
def test_instants_round_trip(instant: datetime) -> None:
    expected = InstantSchedule(instant)
    assert parse_schedule(instant.isoformat()) == expected
    assert parse_schedule(instant.isoformat(sep=" ")) == expected
    assert parse_schedule(iso(expected.at) or "") == expected
    assert expected.at.tzinfo is UTC
