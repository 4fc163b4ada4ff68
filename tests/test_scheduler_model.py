"""The scheduler against a model: random edits of a few jobs, news told late.

A job's news may reach the scheduler after its write and after slots the
write moved (a writer batch tells its news after the batch commits; a full
channel drops it). Whatever the delay, every slot fired must be a slot of
the cadence in force when it fired, after that cadence was written, and no
slot fires twice; with the news on time, the fires are exactly the model's.
The store is `tests.test_scheduler.MemorySlots`, the real store's contract.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsd.messages import JobChanged
from jobsd.schedule import cron_slots_after, first_fire, parse_schedule
from tests.test_scheduler import rig

CRONS = ("* * * * *", "*/2 * * * *", "1 * * * *", "*/5 * * * *", "3-7 * * * *", "0,1,2 * * * *")
# Off any whole second, so that no edit lands on a slot's instant.
WAITS = (0.5, 10.5, 30.25, 59.5, 61.5, 120.5)
Era = tuple[datetime, str | None]  # from this instant, this cron (None: paused)

edits = st.lists(
    st.tuples(
        st.sampled_from(WAITS),
        st.integers(1, 3),
        st.sampled_from((*CRONS, None)),
        st.sampled_from((0.0, 0.0, 20.5, 50.5, 75.5, 89.5)),  # how late its news is told
    ),
    min_size=20,
    max_size=50,
)


def run_model(
    steps: list[tuple[float, int, str | None, float]],
) -> tuple[dict[int, list[Era]], list[tuple[int, datetime, datetime]], datetime]:
    eras: dict[int, list[Era]] = {}

    async def main() -> tuple[list[tuple[int, datetime, datetime]], datetime]:
        async with rig(grace_s=60) as r:

            async def tell_later(news: JobChanged, delay: float) -> None:
                await trio.sleep(delay)
                await r.changes.send(news)

            async with trio.open_nursery() as nursery:
                for wait, pk, cron, delay in steps:
                    await trio.sleep(wait + 0.000123)
                    now = r.clock.now()
                    nxt = None if cron is None else first_fire(parse_schedule(cron), now=now)
                    news = r.store.put(pk, cron or "* * * * *", nxt)
                    eras.setdefault(pk, []).append((now, cron))
                    if delay:
                        nursery.start_soon(tell_later, news, delay)
                    else:
                        await r.changes.send(news)
                await trio.sleep(200)
            return list(r.store.fired), r.clock.now()

    fired, end = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return eras, fired, end


def is_slot(cron: str, instant: datetime) -> bool:
    return next(cron_slots_after(parse_schedule(cron), instant - timedelta(microseconds=1))) == (
        instant
    )


@settings(max_examples=100, deadline=None)
@given(edits)
def test_every_fire_is_a_slot_of_the_cadence_in_force(
    steps: list[tuple[float, int, str | None, float]],
) -> None:
    eras, fired, end = run_model(steps)
    seen: set[tuple[int, datetime]] = set()
    for pk, slot, at in fired:
        assert (pk, slot) not in seen, f"job {pk} fired {slot} twice"
        seen.add((pk, slot))
        start, cron = max((e for e in eras[pk] if e[0] <= at), key=lambda e: e[0])
        assert cron is not None and slot > start and is_slot(cron, slot), (pk, slot, at)
    if any(delay for *_, delay in steps):
        return
    for pk, history in eras.items():
        expected = []
        for i, (start, cron) in enumerate(history):
            stop = history[i + 1][0] if i + 1 < len(history) else end
            if cron is not None:
                for slot in cron_slots_after(parse_schedule(cron), start):
                    if slot >= stop:
                        break
                    expected.append(slot)
        assert [slot for p, slot, _ in fired if p == pk] == expected
