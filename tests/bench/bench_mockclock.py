"""How fast can a year of `*/5` fire on trio's MockClock here? Side by side.

Prints, for the same number of wake-ups (default: a year of `*/5`, 105,120):
the bare floor (a loop of `trio.sleep_until` under an autojump MockClock,
nothing else), the scheduler firing through its in-memory slot store
(tests/test_scheduler.py's rig), and `plan_fire` alone. The ratio says how
much the scheduler adds to what trio itself costs per timed wake.

    .venv/bin/python -m tests.bench.bench_mockclock [--days 365]
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import timedelta

import trio
import trio.testing

from jobsd.schedule import parse_schedule, plan_fire
from tests.test_scheduler import T0, rig


async def bare(wakes: int) -> None:
    start = trio.current_time()
    for i in range(wakes):
        await trio.sleep_until(start + 300 * (i + 1))


async def scheduler(days: int) -> int:
    async with rig() as r:
        await r.change(1, "*/5 * * * *")
        await trio.sleep(days * 86_400 + 1)
    return len(r.store.fired)


def timed(fn: object, *args: object) -> tuple[float, object]:
    started = time.perf_counter()
    result = trio.run(fn, *args, clock=trio.testing.MockClock(autojump_threshold=0))  # type: ignore[arg-type]
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=365)
    days = parser.parse_args().days
    wakes = days * 288
    print(f"load average {os.getloadavg()}; {wakes} wake-ups ({days} days of */5)")
    bare_s, _ = timed(bare, wakes)
    sched_s, fired = timed(scheduler, days)
    schedule = parse_schedule("*/5 * * * *")
    started = time.perf_counter()
    due = T0 + timedelta(minutes=5)
    for _ in range(wakes):
        _, nxt = plan_fire(schedule, due=due, now=due, misfire_grace_s=60)
        assert nxt is not None
        due = nxt
    plan_s = time.perf_counter() - started
    print(f"bare trio sleep_until loop  {bare_s:7.2f} s  {bare_s / wakes * 1e6:6.1f} us/wake")
    print(f"scheduler ({fired} fires)  {sched_s:7.2f} s  {sched_s / wakes * 1e6:6.1f} us/fire")
    print(f"plan_fire alone             {plan_s:7.2f} s  {plan_s / wakes * 1e6:6.1f} us/call")
    print(f"scheduler / bare: {sched_s / bare_s:.2f}")


if __name__ == "__main__":
    main()
