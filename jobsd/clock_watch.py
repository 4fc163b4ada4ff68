"""Keeping the daemon's clock on the system's.

`jobsd.clock` reads wall time once at start and counts on with trio's
monotonic clock, so that one clock decides everything (and tests can drive
it). Two things move the system's clock away from it while jobsd runs: a
step (an operator, NTP at boot when no synchronizer's wait unit ran first)
and a machine that slept (a VM suspended, paused or live-migrated: Linux's
monotonic clock does not count the time asleep). Either way, every cron slot
would then fire off by the gap, for good, and every signature's
`webhook-timestamp` would be off by it too (receivers refuse those more
than 5 minutes off).

So once a second this actor compares the two; a gap of `STEP_S` or more
re-anchors the daemon's clock on the system's and tells the scheduler,
which computes its next wake-up afresh. After a forward move, slots that
came due meanwhile are missed slots (catch-up within `misfire_grace_s`, a
one-off late rather than never), exactly as after a restart, but runs in
flight go on. After a backward move, the scheduler plans every recurring
next fire again from the new time (`jobsd.slot_store.replan`: they were
planned on the clock before), and nothing fires twice: a slot's run is
unique. NTP's slewing never
reaches `STEP_S`: it moves the monotonic clock alike.

Only with the system's clock (`jobsd serve`); a test's injected clock is
left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime

import trio

from jobsd.clock import Clock, system_utc_now
from jobsd.logs import fields
from jobsd.messages import ClockMoved, SchedulerNews

log = logging.getLogger("jobsd.clock")

CHECK_S = 1.0
STEP_S = 1.0


async def watch_clock(
    clock: Clock,
    tell: Callable[[ClockMoved], None],
    *,
    wall: Callable[[], datetime] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """`wall`: the system's clock (tests play it)."""
    task_status.started()
    while True:
        await trio.sleep(CHECK_S)
        now = system_utc_now() if wall is None else wall()
        gap_s = (now - clock.now()).total_seconds()
        if abs(gap_s) < STEP_S:
            continue
        clock.reanchor(now)
        log.warning(
            "the system clock moved from jobsd's (a step, or the machine slept);"
            " jobsd follows it: slots missed meanwhile are caught up as after a restart",
            extra=fields(moved_s=round(gap_s, 3)),
        )
        tell(ClockMoved(gap_s))


def telling(changes: trio.MemorySendChannel[SchedulerNews]) -> Callable[[ClockMoved], None]:
    """Tells the scheduler on its news channel, never waiting: a full channel
    makes the scheduler read everything back anyway, a closed one is a stop."""

    def tell(news: ClockMoved) -> None:
        with suppress(trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            changes.send_nowait(news)

    return tell
