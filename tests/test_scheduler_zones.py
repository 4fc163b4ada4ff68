"""The real Scheduler on MockClock through spring-forward and fall-back nights.

Each case starts the clock at local midnight of a change night, lets one job
run until morning, and asserts the exact UTC instants it fired at (worked
out by hand from VERSIONS.md's rule, not from the code), each on its own
instant of the scheduler's clock. Then restarts in the middle of a change:
every slot fires at most once, and the repeated hour is not fired again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import trio
import trio.testing

from tests.test_scheduler import rig

NY, LONDON, LORD_HOWE = "America/New_York", "Europe/London", "Australia/Lord_Howe"


def utc(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def every_30_min(first: datetime, last: datetime) -> list[datetime]:
    return [
        first + timedelta(minutes=30 * i)
        for i in range((last - first) // timedelta(minutes=30) + 1)
    ]


# (zone, night's local midnight in UTC, hours to run, {expression: fires})
NIGHTS = [
    pytest.param(  # 02:00 EST -> 03:00 EDT at 07:00 UTC
        NY,
        utc(2026, 3, 8, 5),
        5,
        {
            "30 2 * * *": [utc(2026, 3, 8, 7)],  # skipped: right after the change
            "0 1-3 * * *": [utc(2026, 3, 8, 6), utc(2026, 3, 8, 7)],  # 02:00 and 03:00 collapse
            "*/30 * * * *": every_30_min(utc(2026, 3, 8, 5, 30), utc(2026, 3, 8, 10)),
            "0 */2 * * *": [utc(2026, 3, 8, 8), utc(2026, 3, 8, 10)],  # no 02:00 that night
        },
        id="new-york-spring-forward",
    ),
    pytest.param(  # 02:00 EDT -> 01:00 EST at 06:00 UTC
        NY,
        utc(2026, 11, 1, 4),
        6,
        {
            "30 2 * * *": [utc(2026, 11, 1, 7, 30)],
            "0 1-3 * * *": [utc(2026, 11, 1, 5), utc(2026, 11, 1, 7), utc(2026, 11, 1, 8)],
            "*/30 * * * *": every_30_min(utc(2026, 11, 1, 4, 30), utc(2026, 11, 1, 10)),
            "0 */2 * * *": [utc(2026, 11, 1, 7), utc(2026, 11, 1, 9)],
        },
        id="new-york-fall-back",
    ),
    pytest.param(  # 01:00 GMT -> 02:00 BST at 01:00 UTC
        LONDON,
        utc(2026, 3, 29, 0),
        5,
        {
            "30 2 * * *": [utc(2026, 3, 29, 1, 30)],  # 02:30 BST exists
            "0 1-3 * * *": [utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)],
            "*/30 * * * *": every_30_min(utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 5)),
            "0 */2 * * *": [utc(2026, 3, 29, 1), utc(2026, 3, 29, 3), utc(2026, 3, 29, 5)],
        },
        id="london-spring-forward",
    ),
    pytest.param(  # 02:00 BST -> 01:00 GMT at 01:00 UTC
        LONDON,
        utc(2026, 10, 24, 23),
        6,
        {
            "30 2 * * *": [utc(2026, 10, 25, 2, 30)],
            "0 1-3 * * *": [utc(2026, 10, 25, 0), utc(2026, 10, 25, 2), utc(2026, 10, 25, 3)],
            "*/30 * * * *": every_30_min(utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 5)),
            "0 */2 * * *": [utc(2026, 10, 25, 2), utc(2026, 10, 25, 4)],
        },
        id="london-fall-back",
    ),
    pytest.param(  # 02:00 +10:30 -> 02:30 +11 at 15:30 UTC
        LORD_HOWE,
        utc(2026, 10, 3, 13, 30),
        4.5,
        {
            "30 2 * * *": [utc(2026, 10, 3, 15, 30)],
            "0 1-3 * * *": [
                utc(2026, 10, 3, 14, 30),
                utc(2026, 10, 3, 15, 30),
                utc(2026, 10, 3, 16),
            ],
            "*/30 * * * *": every_30_min(utc(2026, 10, 3, 14), utc(2026, 10, 3, 18)),
            "0 */2 * * *": [utc(2026, 10, 3, 17)],
        },
        id="lord-howe-spring-forward",
    ),
    pytest.param(  # 02:00 +11 -> 01:30 +10:30 at 15:00 UTC
        LORD_HOWE,
        utc(2026, 4, 4, 13),
        4.5,
        {
            "30 2 * * *": [utc(2026, 4, 4, 16)],
            "0 1-3 * * *": [utc(2026, 4, 4, 14), utc(2026, 4, 4, 15, 30), utc(2026, 4, 4, 16, 30)],
            "*/30 * * * *": every_30_min(utc(2026, 4, 4, 13, 30), utc(2026, 4, 4, 17, 30)),
            "0 */2 * * *": [utc(2026, 4, 4, 15, 30), utc(2026, 4, 4, 17, 30)],
        },
        id="lord-howe-fall-back",
    ),
]


@pytest.mark.parametrize(("zone", "midnight", "hours", "cases"), NIGHTS)
async def test_a_change_night_fires_the_exact_instants(
    autojump_clock: trio.testing.MockClock,
    zone: str,
    midnight: datetime,
    hours: float,
    cases: dict[str, list[datetime]],
) -> None:
    exprs = list(cases)
    async with rig(start=midnight) as r:
        for pk, expr in enumerate(exprs, 1):
            await r.change(pk, expr, timezone=zone)
        await trio.sleep(hours * 3600 + 1)
    for pk, expr in enumerate(exprs, 1):
        fired = [(slot, at) for job, slot, at in r.store.fired if job == pk]
        assert [slot for slot, _ in fired] == cases[expr], expr
        assert all(slot == at for slot, at in fired), expr  # each at its own instant
    assert len(r.orders) == len(r.store.fired)


@pytest.mark.parametrize(
    ("expr", "due", "restart", "fires"),
    [
        # Down from 01:40 EDT to 01:10 EST (06:10 UTC), in the repeated hour: the
        # 01:30 of a wall-clock job was missed beyond the grace and does not come
        # back at 01:30 EST; next is the next night.
        ("30 1 * * *", utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 10), [utc(2026, 11, 2, 6, 30)]),
        # A real-time job fires 01:30 EST: a different instant, its own slot.
        (
            "*/30 * * * *",
            utc(2026, 11, 1, 5, 30),
            utc(2026, 11, 1, 6, 10),
            [utc(2026, 11, 1, 6, 30), utc(2026, 11, 1, 7)],
        ),
        # Back within the grace of 01:00 EDT: it fires late once, then 02:00
        # EST, never 01:00 EST.
        (
            "0 1-3 * * *",
            utc(2026, 11, 1, 5),
            utc(2026, 11, 1, 5) + timedelta(seconds=30),
            [utc(2026, 11, 1, 5), utc(2026, 11, 1, 7), utc(2026, 11, 1, 8)],
        ),
    ],
)
async def test_a_restart_in_the_middle_of_a_change_fires_each_slot_once(
    autojump_clock: trio.testing.MockClock,
    expr: str,
    due: datetime,
    restart: datetime,
    fires: list[datetime],
) -> None:
    async with rig(start=restart, jobs=((1, expr, due),), timezone=NY, grace_s=60) as r:
        await trio.sleep((fires[-1] - restart).total_seconds() + 1)
    assert [slot for _, slot, _ in r.store.fired] == fires
