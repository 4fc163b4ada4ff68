"""How long this process's event loop waited for a CPU, for bounds that hold under load.

A daemon run in-process shares the test's trio loop, and its one thread,
with the test's clients and attackers. On a machine loaded by other
processes that thread is often ready to run but not running: the kernel
counts that time per thread (`/proc/self/task/<tid>/schedstat`, the run
queue delay), and on 2 shared cores at load 5-6 it made a one-off fire 1.1 s
late and a normal client's answer take 3.4 s, past bounds that hold with a
tenth of that to spare on an idle machine.

`CpuWait` samples that count for the loop's thread, with trio's time, every
`period_s`; `net_s(a, b)` is the span [a, b] less the time the thread
waited for a CPU within it. Only other processes' demand is taken out: the
daemon's own work, and anything it waits for (a connection slot, a worker,
a timer), still counts in full. Without schedstat the count stays 0 and a
net span is the whole span.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import NoReturn

import trio


def run_queue_s(tid: int) -> float:
    """Seconds thread `tid` of this process has spent ready to run but not running."""
    try:
        with open(f"/proc/self/task/{tid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


@dataclass
class CpuWait:
    period_s: float = 0.01
    samples: list[tuple[float, float]] = field(default_factory=list)  # (trio time, run queue s)

    async def run(self) -> NoReturn:
        tid = threading.get_native_id()
        while True:
            self.samples.append((trio.current_time(), run_queue_s(tid)))
            await trio.sleep(self.period_s)

    def waited_s(self, start: float, end: float) -> float:
        """The loop's wait for a CPU within [start, end], between the samples
        taken inside it (so never more than it waited)."""
        inside = [waited for at, waited in self.samples if start <= at <= end]
        return inside[-1] - inside[0] if inside else 0.0

    def net_s(self, start: float, end: float) -> float:
        return end - start - self.waited_s(start, end)


@asynccontextmanager
async def watching_cpu_wait(period_s: float = 0.01) -> AsyncIterator[CpuWait]:
    watch = CpuWait(period_s)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch.run)
        yield watch
        nursery.cancel_scope.cancel()
