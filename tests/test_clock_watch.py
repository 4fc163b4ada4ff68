"""The daemon's clock follows the system's after a step or a sleep (`jobsd.clock_watch`).

On trio's MockClock with the system's clock played by a function: the
machine "sleeps" 10 minutes (the system's clock jumps ahead, trio's does
not), or is stepped back. Without the watch, every later slot fires 10
minutes late for good.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio
import trio.testing

from jobsd import clock_watch
from jobsd.clock import system_utc_now
from jobsd.clock_watch import watch_clock
from jobsd.config import parse_config
from jobsd.daemon import DaemonOptions, run_daemon
from jobsd.messages import ClockMoved, RetryHeld, SchedulerNews
from tests.conftest import JSONAPI, auth, config_text, job_doc
from tests.test_scheduler import T0, Rig, Unit, rig

MINUTE = timedelta(minutes=1)


class System:
    """The system's clock: the daemon's as it started, plus whatever moved it."""

    def __init__(self, r: Rig) -> None:
        self._start = r.clock.now()
        self._trio_start = trio.current_time()
        self.moved = timedelta(0)

    def now(self) -> datetime:
        return self._start + timedelta(seconds=trio.current_time() - self._trio_start) + self.moved


@asynccontextmanager
async def watched(**rig_options: Any) -> AsyncIterator[tuple[Rig, System, list[ClockMoved]]]:
    """The scheduler rig with a clock watch over `System`; `told`: what it said."""
    told: list[ClockMoved] = []
    async with rig(**rig_options) as r, trio.open_nursery() as nursery:
        system = System(r)

        def tell(news: ClockMoved) -> None:
            told.append(news)
            r.changes.send_nowait(news)

        nursery.start_soon(partial(watch_clock, r.clock, tell, wall=system.now))
        yield r, system, told
        nursery.cancel_scope.cancel()


async def test_after_the_machine_slept_slots_fire_on_the_systems_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with watched(grace_s=60) as (r, system, told):
        await r.change(1, "* * * * *")
        await trio.sleep(150)  # 02:30 on both clocks; 01:00 and 02:00 fired
        system.moved = timedelta(minutes=10)  # asleep from 02:30 to 12:30
        await trio.sleep(300)  # to 17:30 on the system's clock
    fired = [(slot, at) for _, slot, at in r.store.fired]
    assert [slot for slot, _ in fired] == [
        T0 + MINUTE * m for m in (1, 2, 12, 13, 14, 15, 16, 17)
    ]  # 12:00 is the one catch-up (within 60 s of 12:30); 03:00-11:00 missed
    late = [(at - slot).total_seconds() for slot, at in fired]
    assert late[:2] == [0, 0] and 29 <= late[2] <= 31 and all(s == 0 for s in late[3:])
    assert len(told) == 1 and 599 <= told[0].by_s <= 601
    assert abs((system.now() - r.clock.now()).total_seconds()) < 1e-6


async def test_a_clock_stepped_back_fires_no_slot_twice(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with watched() as (r, system, told):
        await r.change(1, "* * * * *")
        await trio.sleep(330)  # 05:30; 01:00 to 05:00 fired
        system.moved = -timedelta(minutes=3)  # back to 02:30
        await trio.sleep(300)  # to 07:30 on the system's clock
    slots = [slot for _, slot, _ in r.store.fired]
    assert slots == [T0 + MINUTE * m for m in range(1, 8)]
    assert len(told) == 1 and -181 <= told[0].by_s <= -179


async def test_slewing_below_the_step_is_left_alone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with watched() as (r, system, told):
        for _ in range(9):
            await trio.sleep(10)
            system.moved += timedelta(milliseconds=100)  # 0.9 s in all, never a step
    assert told == []
    assert r.clock.now() == T0 + timedelta(seconds=90)


async def test_jobsd_serve_follows_the_system_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The whole daemon on the system's clock (no clock injected, as `jobsd serve`):
    its clock watch runs, and a system clock 10 minutes ahead re-anchors it."""
    bound: list[str] = []
    options = DaemonOptions(config=parse_config(config_text(tmp_path)), announce=bound.extend)
    ahead = timedelta(minutes=10)
    monkeypatch.setattr(clock_watch, "system_utc_now", lambda: system_utc_now() + ahead)
    stop = trio.Event()
    with caplog.at_level(logging.WARNING, logger="jobsd.clock"), trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(run_daemon, options, stop)
            while not any("system clock moved" in r.getMessage() for r in caplog.records):
                await trio.sleep(0.05)
            async with httpx2.AsyncClient(base_url=bound[0], trust_env=False) as client:
                made = await client.post(
                    "/api/v1/jobs",
                    json=job_doc("after", schedule="0 0 1 1 *"),
                    headers={**auth(), "Content-Type": JSONAPI},
                )
            stop.set()
    assert made.status_code == 201, made.text
    created = datetime.fromisoformat(made.json()["data"]["attributes"]["created_at"])
    assert 595 <= (created - system_utc_now()).total_seconds() <= 601


async def test_a_clock_stepped_back_an_hour_fires_on_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A machine that booted an hour ahead (a wrong hardware clock) until NTP
    stepped it back: every next fire had been planned on the wrong clock, and
    the job stayed silent for that hour. Its slots now go on from the step."""
    async with watched() as (r, system, _told):
        await r.change(1, "* * * * *")
        await r.change(2, "0 * * * *")  # next 01:00, planned on the clock an hour ahead
        await trio.sleep(150)  # 02:30; 01:00 and 02:00 fired
        system.moved = -timedelta(hours=1)  # back to 2025-12-31 23:02:30
        await trio.sleep(240)  # to 23:06:30 on the system's clock
    fired = [(pk, slot) for pk, slot, _ in r.store.fired]
    back = T0 - timedelta(hours=1)
    assert fired == [(1, T0 + MINUTE), (1, T0 + 2 * MINUTE)] + [
        (1, back + MINUTE * m) for m in (3, 4, 5, 6)
    ]
    assert all(at == slot for _, slot, at in r.store.fired[2:])  # on time, not an hour late
    assert r.store.jobs[(2, "production")][1] == T0  # the hourly job: midnight again, not 01:00


async def test_a_retry_held_across_a_step_back_still_waits_only_its_delay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Its due instant was planned on the clock before the step: a retry 10 s
    after its failure waited the hour the clock went back, too."""
    async with watched() as (r, system, _told):
        await trio.sleep(30)
        await r.changes.send(r.store.hold("retry", T0 + timedelta(seconds=40)))
        await trio.sleep(5)  # 00:35; the retry is due in 5 s
        system.moved = -timedelta(hours=1)  # back to 23:00:35 the day before
        await trio.sleep(30)
    ((run_id, due, at),) = r.store.released
    assert run_id == "retry" and due == at  # released at its (moved) instant
    assert T0 - timedelta(hours=1) + timedelta(seconds=38) <= at  # its 5 s still waited...
    assert at <= T0 - timedelta(hours=1) + timedelta(seconds=42)  # ...and not the hour


async def test_a_step_back_told_while_the_news_channel_is_full_is_still_planned_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The watch never waits to tell (`clock_watch.telling`): with the scheduler's
    news channel full at the step (a burst of API writes), its ClockMoved was
    dropped, the scheduler only read the store back, and every next fire stayed
    planned on the clock before the step: an hourly job silent for the hour."""
    async with rig(news_buffer=4) as r, trio.open_nursery() as nursery:
        system = System(r)
        await r.change(2, "0 * * * *")  # next 01:00
        await trio.sleep(30)
        far = T0 + timedelta(days=30)  # beyond the horizon: news the scheduler ignores

        def wall() -> datetime:
            if system.moved:  # the step, as a burst of news fills the channel
                with contextlib.suppress(trio.WouldBlock):
                    for n in range(10):
                        r.changes.send_nowait(RetryHeld(f"burst-{n}", far))
            return system.now()

        nursery.start_soon(partial(watch_clock, r.clock, clock_watch.telling(r.changes), wall=wall))
        await trio.sleep(5)
        system.moved = -timedelta(hours=1)  # back to 2025-12-31 23:00:35
        await trio.sleep(1200)  # to 23:20:35 on the system's clock
        nursery.cancel_scope.cancel()
    assert r.store.jobs[(2, "production")][1] == T0  # midnight again, not 01:00


async def test_a_retry_held_while_the_jobs_are_planned_again_keeps_its_delay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A step back plans every next fire again, a write per thousand jobs (a
    million: a thousand writes), and only then moved the held retries by the
    step: a retry held meanwhile, its delay counted on the clock after the
    step, was moved back by the hour too and ran at once, not after its delay."""
    async with watched() as (r, system, _told):
        rebase = r.store.rebase_slots

        async def many_jobs(now: datetime, after: Unit, limit: int) -> tuple[int, Unit | None]:
            await trio.sleep(20)  # the writes planning a million jobs again
            return await rebase(now, after, limit)

        r.store.rebase_slots = many_jobs  # type: ignore[method-assign]
        await trio.sleep(30)
        system.moved = -timedelta(hours=1)
        await trio.sleep(5)  # the step is seen, the jobs are being planned again
        due = r.clock.now() + timedelta(seconds=60)  # a run failed now: retry in 60 s
        await r.changes.send(r.store.hold("retry", due))
        await trio.sleep(120)
    ((run_id, _, at),) = r.store.released
    assert run_id == "retry" and at >= due  # its 60 s waited, not run at once


async def test_a_second_step_back_moves_a_held_retry_by_that_step_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The scheduler replans by the steps back it has not yet seen: a retry held
    after a first step, its delay counted on the clock after it, moves back by
    the second step alone, not by both (which made it run at once)."""
    async with watched() as (r, system, told):
        await trio.sleep(30)
        system.moved = -10 * MINUTE
        await trio.sleep(5)  # the first step is seen and planned for
        due = r.clock.now() + timedelta(seconds=60)  # a run failed now: retry in 60 s
        await r.changes.send(r.store.hold("retry", due))
        await trio.sleep(5)
        system.moved = -20 * MINUTE  # a second step, 10 minutes more
        await trio.sleep(120)
    assert len(told) == 2
    ((run_id, _, at),) = r.store.released
    assert run_id == "retry"
    assert (
        due - 10 * MINUTE - timedelta(seconds=1) <= at <= due - 10 * MINUTE + timedelta(seconds=1)
    )


async def test_a_step_of_a_little_more_than_a_second_is_followed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """`STEP_S` is 1 s: a step of 1.1 s is a step, not slewing."""
    async with watched() as (r, system, told):
        await trio.sleep(10)
        system.moved = timedelta(seconds=1.1)
        await trio.sleep(3)
    assert len(told) == 1 and 1.09 <= told[0].by_s <= 1.11
    assert r.clock.now() == T0 + timedelta(seconds=14.1)


def test_telling_a_scheduler_that_stopped_is_no_error() -> None:
    """At a stop the scheduler's end of the channel closes before the watch
    ends: a move seen then is not told, and does not end the daemon in error."""
    tx, rx = trio.open_memory_channel[SchedulerNews](1)
    rx.close()
    clock_watch.telling(tx)(ClockMoved(2.0))
    tx.close()
    clock_watch.telling(tx)(ClockMoved(2.0))
