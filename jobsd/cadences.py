"""The scheduler's parsed cadences, and the ones it cannot read.

Split from `jobsd.scheduler`. A (job, environment)'s cadence (schedule,
timezone) was checked when it was written, but the store may still hold one
this jobsd cannot read: a zone the installed `tzdata` no longer ships
(`US/Pacific-New` went in tzdata 2020b) or does not ship yet (a database
moved to an older install), or a schedule written under rules since
tightened. Raised while tracking, that ended the scheduler and with it the
daemon, at every start. Such a unit cannot fire, so it is paused instead,
its `paused_reason` saying why, as the store's `fire_slots` records a
firing with no slot and no next fire (unless the unit was written since).
Pure but for the log line.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from jobsd.errors import ScheduleError
from jobsd.logs import fields
from jobsd.messages import RunOrder
from jobsd.schedule import Schedule, parse_schedule, unreadable_reason
from jobsd.store.slots import SlotFiring

log = logging.getLogger("jobsd.scheduler")

Unit = tuple[int, str]  # (job pk, environment)
Cadence = tuple[str, str | None]  # (schedule, timezone) as stored
FireSlots = Callable[[Sequence[SlotFiring]], Awaitable[list[tuple[bool, RunOrder | None]]]]


class Cadences:
    """Each tracked unit's cadence as stored, parsed; the unreadable ones to pause."""

    def __init__(self) -> None:
        self._parsed: dict[Unit, tuple[Cadence, Schedule]] = {}
        self._unreadable: list[SlotFiring] = []

    def read(self, unit: Unit, schedule: str, timezone: str | None, due: datetime) -> bool:
        """Whether the cadence parses (then it is kept); else it waits to be paused."""
        try:
            parsed = parse_schedule(schedule, timezone)
        except ScheduleError as problem:
            self._parsed.pop(unit, None)
            reason = unreadable_reason(problem)
            self._unreadable.append(
                SlotFiring(*unit, due, None, None, (schedule, timezone), reason)
            )
            return False
        self._parsed[unit] = ((schedule, timezone), parsed)
        return True

    def get(self, unit: Unit) -> tuple[Cadence, Schedule] | None:
        return self._parsed.get(unit)

    def forget(self, unit: Unit) -> None:
        self._parsed.pop(unit, None)

    async def pause_unreadable(self, fire_slots: FireSlots) -> None:
        """Pause the units `read` refused, in one transaction, and log each paused."""
        if not self._unreadable:
            return
        firings, self._unreadable = self._unreadable, []
        for firing, (paused, _) in zip(firings, await fire_slots(firings), strict=True):
            if paused:
                log.error(
                    "a job's schedule cannot be read here; it is paused",
                    extra=fields(
                        job_pk=firing.job_pk,
                        environment=firing.environment,
                        reason=firing.paused_reason,
                    ),
                )
