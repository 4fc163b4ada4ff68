"""What the scheduler needs of the store, and its replanning after a step back.

Split from `jobsd.scheduler`. `SlotStore` is the store's scheduler side
(`jobsd.store.runs.RunStore`; the tests' in-memory stand-in keeps the same
contract). `replan` walks every environment after the clock stepped back:
each `next_run_at` was planned on the clock before the step, so a step back
of an hour (a machine that booted an hour ahead until NTP stepped it) left
every job silent for that hour (and a retry 10 s after its failure waited
the hour too); the store plans each from the new now, in batches of
`REPLAN_BATCH` rows per write, so that no write holds the writer long
however many jobs there are.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from jobsd.cadences import Unit
from jobsd.logs import fields
from jobsd.messages import RetryHeld, RunOrder
from jobsd.store.slots import DueJob, SlotFiring

log = logging.getLogger("jobsd.scheduler")

REPLAN_BATCH = 1000


class SlotStore(Protocol):
    async def due_before(self, until: datetime, limit: int) -> list[DueJob]: ...

    async def fire_slots(
        self, firings: Sequence[SlotFiring]
    ) -> list[tuple[bool, RunOrder | None]]: ...

    async def due_units(self, units: Sequence[Unit]) -> list[DueJob]: ...

    async def held_retries_before(self, until: datetime, limit: int) -> list[RetryHeld]: ...

    async def release_retries(self, due: Sequence[RetryHeld]) -> list[RunOrder]: ...

    async def rebase_slots(
        self, now: datetime, after: Unit, limit: int
    ) -> tuple[int, Unit | None]: ...

    async def shift_held_retries(
        self, by: timedelta, now: datetime, after: tuple[int, str], limit: int
    ) -> tuple[int, tuple[int, str] | None]: ...


async def replan(store: SlotStore, now: datetime, back: timedelta) -> None:
    """After the clock stepped `back` (negative) to `now`: move each held
    retry's due instant by the step (`jobsd.store.retries.shift_held`), then
    plan every enabled recurring next fire from `now` (`jobsd.store.slots.rebase`).

    Retries first: a retry held from here on counts its delay on the clock
    after the step, and moved by it too would run at once, not after its
    delay; the jobs' writes (a thousand for a million jobs) take a while.
    """
    held, shifted = (-1, ""), 0
    while True:
        count, more = await store.shift_held_retries(back, now, held, REPLAN_BATCH)
        shifted += count
        if more is None:
            break
        held = more
    after, moved = (-1, ""), 0
    while True:
        count, going_on = await store.rebase_slots(now, after, REPLAN_BATCH)
        moved += count
        if going_on is None:
            break
        after = going_on
    log.warning(
        "the clock stepped back: next fires planned from now, held retries moved with it",
        extra=fields(moved=moved, retries=shifted),
    )
