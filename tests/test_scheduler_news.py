"""Job news that reaches the scheduler after the slot it describes has fired.

A job's news is sent as soon as its write commits, but the scheduler reads
its channel only between passes: a PUT that commits just before a slot's
firing transaction (the single writer runs them in that order) is told to
the scheduler after it has fired that slot and moved the job on. The news
still names the slot just fired; a firing for it finds the job no longer
due there. The real store, the real API and the real scheduler, on
MockClock (`tests.idle_clock`), with the PUT sequenced just before the
first firing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio
import trio.testing
from quart import typing as quart_typing

from jobsd.api.app import create_app
from jobsd.api.context import ApiContext
from jobsd.clock import Clock
from jobsd.crypto import KeyRing
from jobsd.messages import CancelRun, RetryHeld, RunOrder, SchedulerNews
from jobsd.scheduler import Scheduler
from jobsd.settings import Health, Settings
from jobsd.store import Store, open_store
from jobsd.store.runs import RunStore
from jobsd.store.slots import DueJob, SlotFiring
from tests.conftest import JSONAPI, RecordedIntake, auth, job_doc, make_config
from tests.idle_clock import jump_when_idle

T0 = datetime(2026, 6, 5, 2, 0, 30, tzinfo=UTC)


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock()  # moved by `jump_when_idle`


@dataclass
class Ticking:
    """The real store and API at T0, holding one `* * * * *` job "tick"."""

    store: Store
    client: quart_typing.TestClientProtocol
    headers: dict[str, str]
    intake: RecordedIntake
    clock: Clock


@asynccontextmanager
async def ticking(
    tmp_path: Path, news: trio.MemorySendChannel[SchedulerNews]
) -> AsyncIterator[Ticking]:
    config = make_config(tmp_path)
    keyring = KeyRing.load_or_create(config.secrets.key_file)
    cancels_tx, _ = trio.open_memory_channel[CancelRun](100)
    clock = Clock(T0)
    async with open_store(config.storage.path, keyring, clock, news) as store:
        intake = RecordedIntake()
        ctx = ApiContext(store, Settings(config), intake, cancels_tx, Health(ready=True))
        client = create_app(ctx).test_client()
        headers = {**auth(), "Content-Type": JSONAPI}
        doc = job_doc("tick", schedule="* * * * *")
        assert (await client.post("/api/v1/jobs", json=doc, headers=headers)).status_code == 201
        yield Ticking(store, client, headers, intake, clock)


class PassThrough:
    """The real store's runs, for a test to put a step before or after its firing."""

    def __init__(self, runs: RunStore) -> None:
        self._runs = runs

    async def due_before(self, until: datetime, limit: int) -> list[DueJob]:
        return await self._runs.due_before(until, limit)

    async def fire_slots(self, firings: Sequence[SlotFiring]) -> list[tuple[bool, RunOrder | None]]:
        return await self._runs.fire_slots(firings)

    async def held_retries_before(self, until: datetime, limit: int) -> list[RetryHeld]:
        return await self._runs.held_retries_before(until, limit)

    async def release_retries(self, due: Sequence[RetryHeld]) -> list[RunOrder]:
        return await self._runs.release_retries(due)

    async def due_units(self, units: Sequence[tuple[int, str]]) -> list[DueJob]:
        return await self._runs.due_units(units)


class PutFirst(PassThrough):
    """The real store, with a PUT committed just before its first firing."""

    def __init__(self, runs: RunStore, put: object) -> None:
        super().__init__(runs)
        self._put = put
        self._done = False

    async def fire_slots(self, firings: Sequence[SlotFiring]) -> list[tuple[bool, RunOrder | None]]:
        if not self._done:
            self._done = True
            await self._put()  # type: ignore[operator]
        return await self._runs.fire_slots(firings)


async def test_a_put_told_after_its_slot_fired_loses_no_slot(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    changes_tx, changes_rx = trio.open_memory_channel[SchedulerNews](100)
    async with trio.open_nursery() as clock_hand:
        clock_hand.start_soon(jump_when_idle)
        async with ticking(tmp_path, changes_tx) as t:
            store, client, headers, intake, clock = t.store, t.client, t.headers, t.intake, t.clock

            async def rename() -> None:
                renamed = job_doc("tick", schedule="* * * * *", name="Tick, renamed")
                r = await client.put("/api/v1/jobs/tick", json=renamed, headers=headers)
                assert r.status_code == 200  # same cadence: next_run_at kept (02:01)

            scheduler = Scheduler(
                PutFirst(store.runs, rename), clock, intake, changes_rx, misfire_grace_s=60
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(scheduler.run)
                await trio.sleep(5 * 60)  # to 02:05:30
                nursery.cancel_scope.cancel()
            r = await client.get("/api/v1/runs?filter[job]=tick", headers=auth())
            job = await client.get("/api/v1/jobs/tick", headers=auth())
        clock_hand.cancel_scope.cancel()
    fired = sorted(run["attributes"]["scheduled_for"] for run in (await r.get_json())["data"])
    assert fired == [f"2026-06-05T02:0{m}:00Z" for m in range(1, 6)]
    assert (await job.get_json())["data"]["attributes"]["next_run_at"] == "2026-06-05T02:06:00Z"


class FireThenTell(PassThrough):
    """The real store; after its first firing, the news held back until then is told."""

    def __init__(self, runs: RunStore, fired: trio.Event) -> None:
        super().__init__(runs)
        self._fired = fired

    async def fire_slots(self, firings: Sequence[SlotFiring]) -> list[tuple[bool, RunOrder | None]]:
        result = await self._runs.fire_slots(firings)
        self._fired.set()
        return result


async def test_a_new_cadence_due_at_the_old_instant_is_not_fired_by_the_old_one(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    """A PUT committed just before a slot changes the cron, and the new cron's
    next slot is the old one's: the firing's conditional update (job still due
    at that instant) passes, though the scheduler, not yet told, still plans
    with the old cron. News of a write the writer commits in the same batch as
    the firing comes after it, as here. The old cron must not decide the next
    fire: `1 * * * *` fires at 02:01 and then 03:01, never at 02:02."""
    store_tx, store_rx = trio.open_memory_channel[SchedulerNews](100)
    changes_tx, changes_rx = trio.open_memory_channel[SchedulerNews](100)
    fired = trio.Event()

    async def tell_after_the_firing() -> None:
        await fired.wait()
        async for news in store_rx:
            changes_tx.send_nowait(news)

    async with trio.open_nursery() as clock_hand:
        clock_hand.start_soon(jump_when_idle)
        clock_hand.start_soon(tell_after_the_firing)
        async with ticking(tmp_path, store_tx) as t:
            store, client, headers, intake, clock = t.store, t.client, t.headers, t.intake, t.clock
            scheduler = Scheduler(
                FireThenTell(store.runs, fired), clock, intake, changes_rx, misfire_grace_s=60
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(scheduler.run)
                await trio.sleep(15)  # 02:00:45
                hourly = job_doc("tick", schedule="1 * * * *")
                r = await client.put("/api/v1/jobs/tick", json=hourly, headers=headers)
                assert (await r.get_json())["data"]["attributes"]["next_run_at"] == (
                    "2026-06-05T02:01:00Z"
                )
                await trio.sleep(5 * 60)  # to 02:05:45
                nursery.cancel_scope.cancel()
            r = await client.get("/api/v1/runs?filter[job]=tick", headers=auth())
            job = await client.get("/api/v1/jobs/tick", headers=auth())
        clock_hand.cancel_scope.cancel()
    fired_at = sorted(run["attributes"]["scheduled_for"] for run in (await r.get_json())["data"])
    assert fired_at == ["2026-06-05T02:01:00Z"]
    assert (await job.get_json())["data"]["attributes"]["next_run_at"] == "2026-06-05T03:01:00Z"
