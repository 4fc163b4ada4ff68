"""How long does the next slot take, in UTC and in a zone? Side by side with cronsim.

For each expression and zone: the time per next slot from a compiled
expression, walking slot to slot from 2025-01-01 (the scheduler's hot path:
`next_slot` in UTC, `next_zoned_slot` in a zone), and the same walk with
cronsim's iterator (the DST oracle the tests use), in one run on one machine.
The best of `--repeat` rounds is kept (least disturbed by other load).

    .venv/bin/python -m tests.bench.bench_cron [--slots 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

from cronsim import CronSim

from jobsd.cron import compile_cron, next_slot
from jobsd.zones import load_zone, next_zoned_slot

EXPRS = ("*/15 * * * *", "30 2 * * *", "0 9 * * mon-fri")
ZONES = (None, "Asia/Kathmandu", "America/New_York", "Australia/Lord_Howe")
START = datetime(2025, 1, 1, tzinfo=UTC)


def ours_us(expr: str, zone_name: str | None, slots: int) -> float:
    cron = compile_cron(expr)
    step: Callable[[datetime], datetime | None]
    if zone_name is None:
        step = lambda t: next_slot(cron, t)  # noqa: E731
    else:
        zone = load_zone(zone_name)
        step = lambda t: next_zoned_slot(cron, zone, t)  # noqa: E731
    t: datetime | None = START
    started = time.perf_counter()
    for _ in range(slots):
        assert t is not None
        t = step(t)
    return (time.perf_counter() - started) / slots * 1e6


def cronsim_us(expr: str, zone_name: str | None, slots: int) -> float:
    start = START if zone_name is None else START.astimezone(load_zone(zone_name))
    it = CronSim(expr, start)
    started = time.perf_counter()
    for _ in range(slots):
        next(it)
    return (time.perf_counter() - started) / slots * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slots", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()}; {args.slots} slots per round, best of {args.repeat}")
    print(f"{'expression':18} {'zone':20} {'jobsd us':>9} {'cronsim us':>11} {'ratio':>6}")
    for expr in EXPRS:
        for zone in ZONES:
            ours = min(ours_us(expr, zone, args.slots) for _ in range(args.repeat))
            theirs = min(cronsim_us(expr, zone, args.slots // 10) for _ in range(args.repeat))
            label = zone or "UTC (no zone)"
            print(f"{expr:18} {label:20} {ours:9.2f} {theirs:11.1f} {theirs / ours:5.1f}x")


if __name__ == "__main__":
    main()
