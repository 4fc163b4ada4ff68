"""The scheduler's parsed cadences (`jobsd.cadences`): pure, no store.

A unit whose cadence becomes unreadable must stop firing on the cadence it
had; one forgotten is gone; and the unreadable ones are paused once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import trio

from jobsd.cadences import Cadences
from jobsd.messages import RunOrder
from jobsd.store.slots import SlotFiring

DUE = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_cadence_that_turns_unreadable_or_is_forgotten_is_no_longer_kept() -> None:
    cadences = Cadences()
    assert cadences.read((1, "prod"), "0 * * * *", None, DUE)
    assert cadences.get((1, "prod")) is not None
    assert not cadences.read((1, "prod"), "0 * * * *", "No/Such_Zone", DUE)
    assert cadences.get((1, "prod")) is None
    assert cadences.read((2, "prod"), "0 * * * *", None, DUE)
    cadences.forget((2, "prod"))
    assert cadences.get((2, "prod")) is None


def test_the_unreadable_are_paused_once() -> None:
    cadences = Cadences()
    cadences.read((1, "prod"), "0 * * * *", "No/Such_Zone", DUE)
    calls: list[list[SlotFiring]] = []

    async def fire_slots(firings: Sequence[SlotFiring]) -> list[tuple[bool, RunOrder | None]]:
        calls.append(list(firings))
        return [(True, None) for _ in firings]

    async def main() -> None:
        await cadences.pause_unreadable(fire_slots)
        await cadences.pause_unreadable(fire_slots)

    trio.run(main)
    assert [[(f.job_pk, f.environment) for f in c] for c in calls] == [[(1, "prod")]]
