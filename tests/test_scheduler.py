"""The scheduler on trio's MockClock: exact instants, a year in milliseconds.

The slot store here is an in-memory stand-in with the real store's
contract (advance only if still due at `due`; one run per slot), so the
scheduler's timing can be asserted to the microsecond without SQLite's
threads letting the autojump clock run ahead. The real store's side of the
contract is proven in test_store.py; the two meet in test_daemon.py.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import trio
import trio.testing

from jobsd.clock import Clock
from jobsd.messages import JobChanged, RetryHeld, RunOrder, SchedulerNews
from jobsd.schedule import first_fire, is_one_off, parse_schedule
from jobsd.scheduler import FIRE_BATCH, Scheduler
from jobsd.store.slots import DueJob, SlotFiring
from tests.conftest import RecordedIntake

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


ENV = "production"
Unit = tuple[int, str]


@dataclass
class MemorySlots:
    """(job, environment) -> (schedule, next_run_at); `fired` lists (job, slot, at)."""

    clock: Clock
    jobs: dict[Unit, tuple[str, datetime | None]] = field(default_factory=dict)
    zones: dict[Unit, str | None] = field(default_factory=dict)
    fired: list[tuple[int, datetime, datetime]] = field(default_factory=list)
    fired_in: list[str] = field(default_factory=list)  # the environment of each of `fired`
    slots: set[tuple[int, str, datetime]] = field(default_factory=set)
    refills: int = 0
    transactions: int = 0
    held: dict[str, datetime] = field(default_factory=dict)  # retry run id -> due
    released: list[tuple[str, datetime, datetime]] = field(default_factory=list)  # id, due, at
    held_refills: int = 0

    def hold(self, run_id: str, due: datetime) -> RetryHeld:
        self.held[run_id] = due
        return RetryHeld(run_id, due)

    async def held_retries_before(self, until: datetime, limit: int) -> list[RetryHeld]:
        self.held_refills += 1
        due = sorted((d, r) for r, d in self.held.items() if d <= until)
        return [RetryHeld(r, d) for d, r in due[:limit]]

    async def release_retries(self, due: Sequence[RetryHeld]) -> list[RunOrder]:
        """The real store's contract: released once, and only for its own instant."""
        orders = []
        for retry in due:
            if self.held.get(retry.run_id) == retry.due:
                del self.held[retry.run_id]
                self.released.append((retry.run_id, retry.due, self.clock.now()))
                orders.append(RunOrder(retry.run_id, "acme"))
        return orders

    async def rebase_slots(self, now: datetime, after: Unit, limit: int) -> tuple[int, Unit | None]:
        """The real store's contract: a recurring next fire later than its first
        slot after `now` moves back to it (in one batch here)."""
        moved = 0
        for unit, (schedule, nxt) in sorted(self.jobs.items()):
            parsed = parse_schedule(schedule, self.zones.get(unit))
            if unit > after and nxt is not None and nxt > now and not is_one_off(parsed):
                slot = first_fire(parsed, now=now)
                if slot < nxt:
                    self.jobs[unit], moved = (schedule, slot), moved + 1
        return moved, None

    async def shift_held_retries(
        self, by: timedelta, now: datetime, after: tuple[int, str], limit: int
    ) -> tuple[int, tuple[int, str] | None]:
        """The real store's contract: each held after `now` is due `by` earlier,
        never before `now` (in one batch here)."""
        later = {r: d for r, d in self.held.items() if d > now}
        self.held.update({r: max(now, d + by) for r, d in later.items()})
        return len(later), None

    def put(
        self,
        pk: int,
        schedule: str,
        next_run_at: datetime | None,
        timezone: str | None = None,
        env: str = ENV,
    ) -> JobChanged:
        self.jobs[(pk, env)] = (schedule, next_run_at)
        self.zones[(pk, env)] = timezone
        return JobChanged(pk, env, schedule, timezone, next_run_at)

    async def due_before(self, until: datetime, limit: int) -> list[DueJob]:
        self.refills += 1
        due = sorted(
            (
                DueJob(pk, env, s, self.zones.get((pk, env)), n)
                for (pk, env), (s, n) in self.jobs.items()
                if n is not None and n <= until
            ),
            key=lambda d: d.next_run_at,
        )
        return due[:limit]

    async def due_units(self, units: Sequence[Unit]) -> list[DueJob]:
        """The real store's: those enabled with a next fire (None here: disabled)."""
        found = []
        for unit in units:
            schedule, nxt = self.jobs.get(unit, ("", None))
            if nxt is not None:
                found.append(DueJob(*unit, schedule, self.zones.get(unit), nxt))
        return found

    async def fire_slots(self, firings: Sequence[SlotFiring]) -> list[tuple[bool, RunOrder | None]]:
        self.transactions += 1
        return [self.fire(f) for f in firings]

    def fire(self, f: SlotFiring) -> tuple[bool, RunOrder | None]:
        unit = (f.job_pk, f.environment)
        schedule, current = self.jobs.get(unit, ("", None))
        if current != f.due or f.cadence not in (None, (schedule, self.zones.get(unit))):
            return False, None
        self.jobs[unit] = (schedule, f.next_run_at)
        if f.slot is None or (*unit, f.slot) in self.slots:
            return True, None
        self.slots.add((*unit, f.slot))
        self.fired.append((f.job_pk, f.slot, self.clock.now()))
        self.fired_in.append(f.environment)
        return True, RunOrder(f"run-{len(self.fired)}", "acme")


@dataclass
class Rig:
    store: MemorySlots
    scheduler: Scheduler
    changes: trio.MemorySendChannel[SchedulerNews]
    orders: list[RunOrder]
    clock: Clock
    lags: list[float]  # what the scheduler told `fired_late`

    async def change(
        self,
        pk: int,
        schedule: str,
        enabled: bool = True,
        timezone: str | None = None,
        env: str = ENV,
    ) -> None:
        parsed = parse_schedule(schedule, timezone)
        nxt = first_fire(parsed, now=self.clock.now()) if enabled else None
        await self.changes.send(self.store.put(pk, schedule, nxt, timezone, env))


@asynccontextmanager
async def rig(
    *,
    grace_s: int = 60,
    horizon_s: float = 3600.0,
    limit: int = 10_000,
    jobs: tuple[tuple[int, str, datetime], ...] = (),
    start: datetime = T0,
    timezone: str | None = None,
    news_buffer: int = 100,
) -> AsyncIterator[Rig]:
    """A scheduler over `MemorySlots` from `start`; `jobs` (in `timezone`) are
    in the store before it starts."""
    clock = Clock(start)
    store = MemorySlots(clock)
    for pk, schedule, next_run_at in jobs:
        store.put(pk, schedule, next_run_at, timezone)
    changes_tx, changes_rx = trio.open_memory_channel[SchedulerNews](news_buffer)
    intake = RecordedIntake()
    lags: list[float] = []
    scheduler = Scheduler(
        store,
        clock,
        intake,
        changes_rx,
        misfire_grace_s=grace_s,
        horizon_s=horizon_s,
        refill_limit=limit,
        fired_late=lags.append,
    )

    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        yield Rig(store, scheduler, changes_tx, intake.orders, clock, lags)
        nursery.cancel_scope.cancel()


async def _fire_for(schedule: str, seconds: float) -> tuple[list[datetime], float]:
    started = time.perf_counter()
    async with rig() as r:
        await r.change(1, schedule)
        await trio.sleep(seconds)
    elapsed = time.perf_counter() - started
    # Each fired at exactly its instant on the scheduler's clock.
    assert all(at == slot for _, slot, at in r.store.fired)
    assert len(r.orders) == len(r.store.fired)
    return [slot for _, slot, _ in r.store.fired], elapsed


async def test_four_weeks_of_every_five_minutes(autojump_clock: trio.testing.MockClock) -> None:
    slots, elapsed = await _fire_for("*/5 * * * *", 28 * 86_400 + 1)
    assert slots == [T0 + timedelta(minutes=5 * (i + 1)) for i in range(28 * 288)]
    print(f"4 weeks of */5: {len(slots)} fires in {elapsed:.2f} s real time")


async def test_a_year_hourly_across_every_month(autojump_clock: trio.testing.MockClock) -> None:
    slots, _ = await _fire_for("0 * * * *", 365 * 86_400 + 1)
    assert slots == [T0 + timedelta(hours=i + 1) for i in range(365 * 24)]


@pytest.mark.slow
async def test_a_year_of_every_five_minutes(autojump_clock: trio.testing.MockClock) -> None:
    slots, elapsed = await _fire_for("*/5 * * * *", 365 * 86_400 + 1)
    assert len(slots) == 105_120
    assert slots == [T0 + timedelta(minutes=5 * (i + 1)) for i in range(105_120)]
    print(f"a year of */5: {len(slots)} fires in {elapsed:.2f} s real time")


async def test_one_off_fires_once(autojump_clock: trio.testing.MockClock) -> None:
    async with rig() as r:
        await r.change(1, "2026-01-01T00:10:00Z")
        await r.change(2, "now")
        await r.change(3, "2025-12-31T23:00:00Z")  # past: as soon as possible
        await trio.sleep(86_400)
    by_job = {pk: (slot, at) for pk, slot, at in r.store.fired}
    assert len(r.store.fired) == 3
    assert by_job[1] == (T0 + timedelta(minutes=10),) * 2
    assert by_job[2] == (T0, T0)
    assert by_job[3][0] == datetime(2025, 12, 31, 23, tzinfo=UTC) and by_job[3][1] == T0
    assert all(n is None for _, n in r.store.jobs.values())


async def test_pause_resume_edit_delete_take_effect_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with rig() as r:
        await r.change(1, "* * * * *")
        await trio.sleep(3 * 60 + 30)  # fires at 00:01, 00:02, 00:03
        assert len(r.store.fired) == 3
        await r.change(1, "* * * * *", enabled=False)  # pause
        await trio.sleep(10 * 60)
        assert len(r.store.fired) == 3
        await r.change(1, "* * * * *")  # resume at 00:13:30: next 00:14, no catch-up
        await trio.sleep(60)
        assert [s for _, s, _ in r.store.fired][-1] == T0 + timedelta(minutes=14)
        assert len(r.store.fired) == 4
        await r.change(1, "0 * * * *")  # edit: next at 01:00
        await trio.sleep(3600)
        assert [s for _, s, _ in r.store.fired][-1] == T0 + timedelta(hours=1)
        r.store.jobs.pop((1, ENV))  # delete
        await r.changes.send(JobChanged(1, ENV, None, None, None))
        await trio.sleep(5 * 3600)
        assert len(r.store.fired) == 5
        assert r.scheduler.tracked == 0


async def test_far_jobs_are_not_held(autojump_clock: trio.testing.MockClock) -> None:
    far = tuple((pk, "0 0 1 1 *", datetime(2027, 1, 1, tzinfo=UTC)) for pk in range(1, 1001))
    near = ((5000, "*/1 * * * *", T0 + timedelta(minutes=1)),)
    async with rig(horizon_s=60, jobs=far + near) as r:
        await trio.sleep(30)
        # Only the one due within the horizon lives in memory.
        assert r.scheduler.tracked <= 1
        await trio.sleep(120)
        assert len(r.store.fired) == 2


async def test_refill_limit_bounds_memory(autojump_clock: trio.testing.MockClock) -> None:
    jobs = tuple((pk, "* * * * *", T0 + timedelta(seconds=30 + pk // 10)) for pk in range(1, 501))
    async with rig(limit=50, jobs=jobs) as r:
        await trio.sleep(1)
        assert r.scheduler.tracked <= 50
        await trio.sleep(100)
        # every job fired its slot, none twice
        assert len({pk for pk, _, _ in r.store.fired}) == 500
        assert len(r.store.slots) == len(r.store.fired)


async def test_missed_slots_catch_up_within_grace(autojump_clock: trio.testing.MockClock) -> None:
    # Down since 23:00: job 1 missed 23:30 (too old) and 00:00 (now); job 2 missed
    # 23:59 by exactly the grace.
    jobs = (
        (1, "*/30 * * * *", datetime(2025, 12, 31, 23, 30, tzinfo=UTC)),
        (2, "59 23 * * *", datetime(2025, 12, 31, 23, 59, tzinfo=UTC)),
    )
    async with rig(grace_s=60, jobs=jobs) as r:
        await trio.sleep(1)
        fired = {pk: slot for pk, slot, _ in r.store.fired}
        # job 1: latest missed slot is 00:00 == now: fires it (its intended instant)
        assert fired[1] == T0
        # job 2: missed by 60 s, exactly the grace: one catch-up run
        assert fired[2] == datetime(2025, 12, 31, 23, 59, tzinfo=UTC)
        assert r.store.jobs[(2, ENV)][1] == datetime(2026, 1, 1, 23, 59, tzinfo=UTC)


async def test_slots_missed_within_the_grace_are_caught_up_by_one_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Down from 23:55:30 to 00:00:30 with a grace of 10 minutes: an every-minute
    job missed 23:56-00:00, every one within the grace. SEMANTICS.md: one
    catch-up run, for the latest missed slot (00:00), then on time again."""
    jobs = ((1, "* * * * *", datetime(2025, 12, 31, 23, 56, tzinfo=UTC)),)
    start = T0 + timedelta(seconds=30)
    async with rig(grace_s=600, jobs=jobs, start=start) as r:
        await trio.sleep(60)
    assert [slot for _, slot, _ in r.store.fired] == [T0, T0 + timedelta(minutes=1)]


async def test_missed_beyond_grace_skips(autojump_clock: trio.testing.MockClock) -> None:
    jobs = ((1, "0 12 * * *", datetime(2025, 12, 31, 12, tzinfo=UTC)),)
    async with rig(grace_s=60, jobs=jobs) as r:
        await trio.sleep(1)
        assert r.store.fired == []
        assert r.store.jobs[(1, ENV)][1] == datetime(2026, 1, 1, 12, tzinfo=UTC)


async def test_with_no_grace_for_missed_slots_on_time_slots_still_fire() -> None:
    """`misfire_grace_s = 0` (no catch-up after downtime), on trio's real clock:
    the scheduler wakes a little after each deadline (the loop's timer
    resolution), and that is not a missed slot."""
    start = T0 - timedelta(seconds=0.5)
    async with rig(grace_s=0, jobs=((1, "* * * * *", T0),), start=start) as r:
        await trio.sleep(1.6)
        assert [slot for _, slot, _ in r.store.fired] == [T0]
        assert r.store.jobs[(1, ENV)][1] == T0 + timedelta(minutes=1)
    # A slot missed while down is still not caught up.
    async with rig(grace_s=0, jobs=((1, "* * * * *", T0),), start=T0 + timedelta(seconds=5)) as r:
        await trio.sleep(0.1)
        assert r.store.fired == []
        assert r.store.jobs[(1, ENV)][1] == T0 + timedelta(minutes=1)


async def test_a_crowd_due_at_once_fires_in_few_transactions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    at = T0 + timedelta(minutes=1)
    jobs = tuple((pk, "2026-01-01T00:01:00Z", at) for pk in range(1, 2001))
    async with rig(jobs=jobs) as r:
        await trio.sleep(120)
    assert len(r.store.fired) == 2000
    assert {slot for _, slot, _ in r.store.fired} == {at}
    assert all(fired_at == at for _, _, fired_at in r.store.fired)
    assert r.store.transactions == -(-2000 // FIRE_BATCH)


async def test_each_environment_fires_on_its_own_cadence(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The unit is (job, environment): one job, two environments, two cadences,
    each slot once per environment; pausing one leaves the other firing."""
    async with rig() as r:
        await r.change(1, "*/10 * * * *", env="production")
        await r.change(1, "*/15 * * * *", env="staging")
        await trio.sleep(3600 + 1)
        assert r.scheduler.tracked == 2
        await r.change(1, "*/15 * * * *", enabled=False, env="staging")
        await trio.sleep(1800)
    fired = list(zip(r.store.fired_in, (slot for _, slot, _ in r.store.fired), strict=True))
    production = [slot for env, slot in fired if env == "production"]
    staging = [slot for env, slot in fired if env == "staging"]
    assert production == [T0 + timedelta(minutes=10 * (i + 1)) for i in range(9)]
    assert staging == [T0 + timedelta(minutes=15 * (i + 1)) for i in range(4)]
    # 00:00 and 00:30 are slots of both: each environment fired its own.
    assert (T0 + timedelta(minutes=30)) in production and (T0 + timedelta(minutes=30)) in staging
    assert len(r.store.slots) == len(r.store.fired)


# -- retries held for their due instant ------------------------------------------------


async def test_retries_are_released_at_their_exact_instants(
    autojump_clock: trio.testing.MockClock,
) -> None:
    late: list[float] = []
    async with rig(horizon_s=600) as r:
        r.scheduler._fired_late = late.append
        soon, later, far = (
            T0 + timedelta(seconds=7),
            T0 + timedelta(seconds=90),
            T0 + timedelta(hours=2),
        )
        for run_id, due in (("soon", soon), ("later", later), ("far", far)):
            await r.changes.send(r.store.hold(run_id, due))
        await trio.sleep(3 * 3600)
    # Each at exactly its instant; the far one (beyond the horizon when it was
    # announced) by a refill; each released once and handed over.
    assert r.store.released == [("soon", soon, soon), ("later", later, later), ("far", far, far)]
    assert [o.run_id for o in r.orders] == ["soon", "later", "far"]
    assert late == [0.0, 0.0, 0.0]


async def test_retries_due_while_down_are_released_by_the_first_pass(
    autojump_clock: trio.testing.MockClock,
) -> None:
    start = T0 + timedelta(minutes=30)
    clock = Clock(start)
    store = MemorySlots(clock)
    store.hold("overdue", T0 + timedelta(minutes=1))
    store.hold("ahead", start + timedelta(seconds=5))
    changes_tx, changes_rx = trio.open_memory_channel[SchedulerNews](10)
    intake = RecordedIntake()
    scheduler = Scheduler(store, clock, intake, changes_rx, misfire_grace_s=60)
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert store.released == [
        ("overdue", T0 + timedelta(minutes=1), start),
        ("ahead", start + timedelta(seconds=5), start + timedelta(seconds=5)),
    ]
    del changes_tx


async def test_a_retry_whose_news_was_dropped_is_still_released_on_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The store never waits to tell the scheduler of a retry: on a full channel
    the news is dropped, and the scheduler, seeing it full, reads them back."""
    async with rig(news_buffer=1) as r:
        await trio.sleep(1)
        filler = JobChanged(99, ENV, None, None, None)
        r.changes.send_nowait(filler)  # handed straight to the waiting scheduler
        r.changes.send_nowait(filler)  # fills the buffer
        due = T0 + timedelta(seconds=42)
        news = r.store.hold("dropped", due)
        with pytest.raises(trio.WouldBlock):
            r.changes.send_nowait(news)
        await trio.sleep(60)
    assert r.store.released == [("dropped", due, due)]
    assert r.store.held_refills >= 2


async def test_a_job_change_dropped_for_a_full_channel_still_fires_on_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Job news is dropped, never waited on, when the channel is full (the store
    tells the scheduler without a checkpoint after its commit); the scheduler
    then reads the jobs due soon back at once, not at its next refill."""
    async with rig(news_buffer=2) as r:
        await trio.sleep(1)
        refills = r.store.refills
        filler = JobChanged(99, ENV, None, None, None)
        r.changes.send_nowait(filler)  # handed straight to the waiting scheduler
        r.changes.send_nowait(filler)
        r.changes.send_nowait(filler)  # the buffer is full
        due = T0 + timedelta(seconds=42)
        news = r.store.put(7, "2026-01-01T00:00:42Z", due)
        with pytest.raises(trio.WouldBlock):
            r.changes.send_nowait(news)
        await trio.sleep(60)
    assert r.store.fired == [(7, due, due)]
    assert r.store.refills == refills + 1


@dataclass
class SlowReadBack(MemorySlots):
    """Its unit reads take a second: the scheduler is busy, not waiting on its news."""

    async def due_units(self, units: Sequence[Unit]) -> list[DueJob]:
        await trio.sleep(1)
        return await super().due_units(units)


async def test_news_dropped_while_the_scheduler_was_busy_is_still_read_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The channel filled while the scheduler was reading a unit back, so its next
    receive takes from a full buffer and leaves one place free: news was dropped
    all the same, and the jobs due soon are read back."""
    clock = Clock(T0)
    store = SlowReadBack(clock)
    changes_tx, changes_rx = trio.open_memory_channel[SchedulerNews](2)
    scheduler = Scheduler(store, clock, RecordedIntake(), changes_rx, misfire_grace_s=60)
    filler = JobChanged(99, ENV, None, None, None)
    due = T0 + timedelta(seconds=42)
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        changes_tx.send_nowait(filler)  # taken at once: unit 99 is read back for 1 s
        await trio.sleep(0.5)
        changes_tx.send_nowait(filler)
        changes_tx.send_nowait(filler)  # the buffer is full
        with pytest.raises(trio.WouldBlock):
            changes_tx.send_nowait(store.put(7, "2026-01-01T00:00:42Z", due))
        await trio.sleep(60)
        nursery.cancel_scope.cancel()
    assert store.fired == [(7, due, due)]


async def test_a_firing_the_store_refused_is_no_lateness_sample(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """`fired_late` hears of slots fired: a unit whose store row changed before
    its news came (the firing found it no longer due) fired nothing then."""
    async with rig(jobs=((1, "* * * * *", T0 + MINUTE),)) as r:
        await trio.sleep(30)
        news = r.store.put(1, "*/5 * * * *", T0 + 5 * MINUTE)  # committed, not yet told
        await trio.sleep(60)  # 00:01 passes: the firing finds it no longer due
        r.changes.send_nowait(news)
        await trio.sleep(5 * 60)
    assert [slot for _, slot, _ in r.store.fired] == [T0 + 5 * MINUTE]
    assert r.lags == [0.0]


async def test_news_told_out_of_commit_order_loses_no_slot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Writes the store's writer commits in one batch wake their tasks in one
    batch of trio's run queue, which trio runs in either order: their news
    may reach the scheduler in the reverse of their commit order. The store
    holds the last commit's state, and that is what fires."""
    async with rig() as r:
        await trio.sleep(1)
        paused = r.store.put(1, "* * * * *", None)  # committed first
        resumed = r.store.put(1, "* * * * *", T0 + timedelta(minutes=1))
        hourly = r.store.put(2, "0 * * * *", T0 + timedelta(hours=1))  # committed first
        minutely = r.store.put(2, "* * * * *", T0 + timedelta(minutes=1))
        for news in (resumed, paused, minutely, hourly):  # told newest first
            r.changes.send_nowait(news)
        await trio.sleep(3 * 60)
    slots = [T0 + timedelta(minutes=m) for m in (1, 2, 3)]
    assert sorted(s for pk, s, _ in r.store.fired if pk == 1) == slots
    assert sorted(s for pk, s, _ in r.store.fired if pk == 2) == slots


async def test_news_through_a_channel_with_room_reads_nothing_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The refill is for dropped news only: a channel never full costs no refill
    (each change costs the read of its own unit)."""
    async with rig(news_buffer=100) as r:
        await trio.sleep(1)
        refills, held_refills = r.store.refills, r.store.held_refills
        for pk in range(50):
            await r.change(pk, "*/5 * * * *")
        await trio.sleep(1)
    assert (r.store.refills, r.store.held_refills) == (refills, held_refills)


async def test_a_retry_canceled_while_held_is_not_handed_over(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with rig() as r:
        due = T0 + timedelta(seconds=5)
        await r.changes.send(r.store.hold("canceled", due))
        del r.store.held["canceled"]  # canceled in the store: release matches nothing
        await trio.sleep(10)
    assert r.store.released == [] and r.orders == []
    assert r.lags == []  # nothing released: no lateness sample


async def test_news_of_a_job_due_beyond_the_horizon_is_not_held_in_memory(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with rig(horizon_s=60) as r:
        await r.change(1, "0 * * * *")  # next at 01:00, past the minute's horizon
        await trio.sleep(1)
        assert r.scheduler.tracked == 0
        await trio.sleep(3600)
    assert [slot for _, slot, _ in r.store.fired] == [T0 + timedelta(hours=1)]


async def test_more_held_retries_than_the_refill_limit_are_each_released_on_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Past the limit the refill covers only up to the last retry it loaded, and
    loads again from there: the ones it left out are not an hour late."""
    clock = Clock(T0)
    store = MemorySlots(clock)
    dues = [T0 + timedelta(seconds=s) for s in (10, 20, 30, 40, 50)]
    for n, due in enumerate(dues):
        store.hold(f"retry-{n}", due)
    changes_tx, changes_rx = trio.open_memory_channel[SchedulerNews](10)
    scheduler = Scheduler(
        store, clock, RecordedIntake(), changes_rx, misfire_grace_s=60, refill_limit=2
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        await trio.sleep(60)
        nursery.cancel_scope.cancel()
    assert [(due, at) for _, due, at in store.released] == [(due, due) for due in dues]
    del changes_tx
