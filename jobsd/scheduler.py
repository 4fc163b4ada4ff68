"""The scheduler actor: fires each job, in each environment it is enabled in,
at each of its instants, and releases each retry at its due instant.

Its unit is (job, environment): every enabled environment of a job has its
own `next_run_at` and cadence. It keeps a timer (`TimerWheel`) over only the
ones due within a short
horizon, refilled from the store's `next_run_at` index every half horizon,
so memory grows with the jobs due soon, not with all jobs. Job changes
arrive over a channel after they commit, each naming its unit, which is
read back from the store (news may come out of commit order); a missed
change is healed by the next refill, and a firing that finds its unit no
longer due reads it back too, because the store, not this actor's memory,
decides whether a slot fires: `fire_slot`
advances the job only if it is still due at the instant the scheduler
believes, on the cadence it planned with, and the unique
`(job, environment, scheduled_for)` index makes a slot fire at most once
even across crashes.

Lateness policy (catch-up after downtime, one-offs fire late rather than
never) lives in `jobsd.schedule.plan_fire`; this module only applies it.
`fired_late(seconds)` hears how late each due job was acted on (the
scheduler lag metric). `orders` is the executor pool's intake (`jobsd.dispatch`): handing a run
over never waits, so slots are committed on time however deep any
account's backlog is, and runs wait as PENDING where it shows
(`pending_duration_ms`), each account in its own lane.

Retries (`jobsd.store.retries`): a failed run's retry is committed with its
failure, PENDING and held until its due instant. The scheduler keeps a
second timer over the held retries due within the horizon, refilled from
the store's `runs_held` index like the jobs, and told of new ones by the
store after they commit (`RetryHeld`, on the same channel as job changes).
At the instant it releases them, a batch per transaction, and hands them
over like fired slots. The store never waits to tell it (an executor must
not wait on the scheduler, and a request must not be cancelled between its
commit and its news): when the channel is full, news is dropped, and the
scheduler, finding after a receive that the channel was full, reads both
the jobs due soon and the held retries back from the store. The check
follows each receive, because only this actor drains the channel: if a
sender found it full, it is still full at this actor's next receive. A
release is a conditional update, so a retry is released once, and its
claim (PENDING -> RUNNING) once, across crashes too: one held when the
daemon died is released by the first pass after the start, late, its
lateness in its own `started_at`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import trio

from jobsd.cadences import Cadences, Unit
from jobsd.clock import Clock, from_us, to_us
from jobsd.dispatch import RunIntake
from jobsd.messages import ClockMoved, RetryHeld, SchedulerNews
from jobsd.schedule import plan_fire
from jobsd.slot_store import SlotStore, replan
from jobsd.store.slots import SlotFiring
from jobsd.timerwheel import TimerWheel

log = logging.getLogger("jobsd.scheduler")

# Due jobs fired per store transaction: big enough that thousands of jobs due
# at one instant cost a handful of commits, small enough that the first runs
# reach the executors without waiting for the last to be written.
FIRE_BATCH = 256

# A slot acted on within this many seconds of its instant is on time, whatever
# `misfire_grace_s` says: the loop wakes a little after each deadline (its
# timer's resolution, the batches fired before), and that is no missed slot.
# So a grace of 0 means "no catch-up after downtime", not "nothing fires".
ON_TIME_S = 1


class Scheduler:
    def __init__(
        self,
        store: SlotStore,
        clock: Clock,
        orders: RunIntake,
        changes: trio.MemoryReceiveChannel[SchedulerNews],
        *,
        misfire_grace_s: int,
        horizon_s: float = 3600.0,
        refill_limit: int = 10_000,
        fired_late: Callable[[float], None] | None = None,
    ) -> None:
        self._store = store
        self._fired_late = fired_late
        self._clock = clock
        self._orders = orders
        self._changes = changes
        self._grace_s = max(misfire_grace_s, ON_TIME_S)
        self._horizon = timedelta(seconds=horizon_s)
        self._refill_limit = refill_limit
        self._wheel: TimerWheel[Unit] = TimerWheel()
        self._cadences = Cadences()  # each tracked unit's cadence, parsed
        self._covered_until = from_us(0)
        self._refill_at = self._covered_until
        # Retries held for their due instant, by run id, on the same horizon.
        self._held: TimerWheel[str] = TimerWheel()
        self._held_covered_until = from_us(0)
        self._held_refill_at = self._held_covered_until
        self._held_stale = False  # news may have been dropped: read them back
        self._jobs_stale = False  # likewise for job changes
        # The clock's steps back already planned for (`Clock.stepped_back`).
        self._back_seen = clock.stepped_back

    @property
    def tracked(self) -> int:
        """Jobs and held retries in memory: bounded by those due within the horizon."""
        return len(self._wheel) + len(self._held)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        now = self._clock.now()
        await self._refill(now)
        await self._refill_held(now)
        task_status.started()
        while True:
            now = self._clock.now()
            due = self._wheel.pop_due(to_us(now))
            for start in range(0, len(due), FIRE_BATCH):
                await self._fire(due[start : start + FIRE_BATCH], now)
            held = self._held.pop_due(to_us(now))
            for start in range(0, len(held), FIRE_BATCH):
                await self._release(held[start : start + FIRE_BATCH], now)
            if self._clock.stepped_back != self._back_seen:  # fires planned on the clock before
                back = self._clock.stepped_back - self._back_seen
                self._back_seen = self._clock.stepped_back
                self._jobs_stale = self._held_stale = True
                await replan(self._store, now, back)
            if now >= self._refill_at or self._jobs_stale:
                await self._refill(now)
                continue
            if now >= self._held_refill_at or self._held_stale:
                await self._refill_held(now)
                continue
            await self._wait_for_work()

    async def _wait_for_work(self) -> None:
        wake = min(self._refill_at, self._held_refill_at)
        for wheel in (self._wheel, self._held):
            deadline_us = wheel.next_deadline()
            if deadline_us is not None:
                wake = min(wake, from_us(deadline_us))
        changed: dict[Unit, None] = {}
        with trio.move_on_at(self._clock.to_trio(wake)):
            try:
                news = await self._changes.receive()
            except trio.EndOfChannel:
                await trio.sleep_forever()
            self._note_if_was_full()
            self._apply(news, changed)
            while True:
                try:
                    news = self._changes.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                self._note_if_was_full()
                self._apply(news, changed)
        if changed:
            await self._read_back(list(changed))

    def _note_if_was_full(self) -> None:
        """Just after a receive: was the channel full before it? Then a sender
        may have dropped news (they never wait): read the store back."""
        stats = self._changes.statistics()
        if stats.current_buffer_used + 1 >= stats.max_buffer_size:
            self._held_stale = True
            self._jobs_stale = True

    def _apply(self, news: SchedulerNews, changed: dict[Unit, None]) -> None:
        """A retry is tracked as told; a job change only names its unit (`_read_back`)."""
        if isinstance(news, ClockMoved):  # woken: the loop reads the clock (and its steps) again
            return
        if isinstance(news, RetryHeld):
            if news.due <= self._held_covered_until:
                self._held.add(news.run_id, to_us(news.due))
            return
        changed[(news.job_pk, news.environment)] = None

    async def _read_back(self, units: list[Unit]) -> None:
        """Track the changed units as the store has them now, not as their news says.

        News of writes the store's writer commits in one batch is sent by their
        tasks, which trio wakes in one batch of its run queue and runs in either
        order: a change may be told after a later one of the same unit, or after
        the scheduler fired the slot it names. A read made after the news came
        is at least as new as the write that sent it, whatever the order.
        """
        current = {(d.job_pk, d.environment): d for d in await self._store.due_units(units)}
        for unit in units:
            item = current.get(unit)
            if item is None or item.next_run_at > self._covered_until:
                self._forget(unit)
            else:
                self._track(unit, item.schedule, item.timezone, item.next_run_at)
        await self._pause_unreadable()

    def _track(self, unit: Unit, schedule: str, timezone: str | None, due: datetime) -> None:
        if self._cadences.read(unit, schedule, timezone, due):
            self._wheel.add(unit, to_us(due))
        else:
            self._wheel.remove(unit)  # paused by `_pause_unreadable`, unless written since

    async def _pause_unreadable(self) -> None:
        await self._cadences.pause_unreadable(self._store.fire_slots)

    def _forget(self, unit: Unit) -> None:
        self._wheel.remove(unit)
        self._cadences.forget(unit)

    async def _refill(self, now: datetime) -> None:
        self._jobs_stale = False
        until = now + self._horizon
        due = await self._store.due_before(until, self._refill_limit)
        full = len(due) >= self._refill_limit
        if full:
            # Too many to hold: cover only up to the last one loaded, and
            # load again as soon as that instant is reached.
            until = due[-1].next_run_at
        for item in due:
            self._track(
                (item.job_pk, item.environment), item.schedule, item.timezone, item.next_run_at
            )
        self._covered_until = until if not full else until - timedelta(microseconds=1)
        self._refill_at = until
        await self._pause_unreadable()

    async def _refill_held(self, now: datetime) -> None:
        """Track the retries held for an instant within the horizon (as `_refill` jobs)."""
        self._held_stale = False
        until = now + self._horizon
        held = await self._store.held_retries_before(until, self._refill_limit)
        full = len(held) >= self._refill_limit
        if full:
            until = held[-1].due
        for retry in held:
            self._held.add(retry.run_id, to_us(retry.due))
        self._held_covered_until = until if not full else until - timedelta(microseconds=1)
        self._held_refill_at = until

    async def _release(self, due: list[tuple[str, int]], now: datetime) -> None:
        """Release a batch of due retries in one store transaction, then hand them over."""
        orders = await self._store.release_retries([RetryHeld(r, from_us(us)) for r, us in due])
        if self._fired_late is not None:
            released = {order.run_id for order in orders}
            for run_id, due_us in due:
                if run_id in released:
                    self._fired_late((now - from_us(due_us)).total_seconds())
        for order in orders:
            self._orders.offer(order)

    async def _fire(self, due: list[tuple[Unit, int]], now: datetime) -> None:
        """Fire a batch of due units in one store transaction, then hand over the runs."""
        firings: list[SlotFiring] = []
        for unit, due_us in due:
            tracked = self._cadences.get(unit)
            if tracked is None:
                continue
            cadence, schedule = tracked
            at = from_us(due_us)
            slot, next_run_at = plan_fire(
                schedule, due=at, now=max(now, at), misfire_grace_s=self._grace_s
            )
            # The store fires it only on this cadence (news of a change may lag).
            firings.append(SlotFiring(unit[0], unit[1], at, slot, next_run_at, cadence))
        if not firings:
            return
        results = await self._store.fire_slots(firings)
        stale: list[Unit] = []
        for firing, (advanced, order) in zip(firings, results, strict=True):
            if advanced and self._fired_late is not None:
                self._fired_late((now - firing.due).total_seconds())
            nxt = firing.next_run_at
            unit = (firing.job_pk, firing.environment)
            if advanced and nxt is not None and nxt <= self._covered_until:
                self._wheel.add(unit, to_us(nxt))
            else:
                self._forget(unit)
                if not advanced:
                    stale.append(unit)
            if order is not None:
                self._orders.offer(order)
        if stale:
            # Its belief came from news older than the store (a write committed
            # before the firing, told after it): forgotten, the unit would lose
            # its next slots until a refill, so it is read back.
            await self._read_back(stale)
