"""How many worker processes the daemon keeps (`[scheduler] worker_processes`).

Split from `jobsd.workers.pool`, which runs them: this only decides how
many, from the setting, the cores this process may use, and whether the
requests must stay in the daemon's own process, and makes the pool so.
"""

from __future__ import annotations

import os
import sys

import trio

from jobsd.config import Config
from jobsd.workers.pool import WorkerProcesses


def process_count(setting: int | str, *, resolver: object | None = None) -> int:
    """`[scheduler] worker_processes`: "auto" is one per core this process may use,
    but one, which the daemon keeps for the store, the API and the scheduler.

    Measured with tests/bench/bench_e2e.py on 2 shared cores (the README's
    Decisions): one worker halves the daemon's own CPU per run and costs
    about 1 % more in all; a second worker on 2 cores halved the burst's rate.

    0 where the requests must stay in the daemon's process: an injected
    `resolver` is a function of that process, and under a trio clock other
    than the real one (a test's MockClock) a worker's timeouts would run on
    another time than the daemon's.
    """
    # Not importing trio.testing to ask (it imports pytest: 6.6 MiB of RSS).
    testing = sys.modules.get("trio.testing")
    mocked = testing is not None and isinstance(trio.lowlevel.current_clock(), testing.MockClock)
    if resolver is not None or mocked:
        return 0
    if setting != "auto":
        return int(setting)
    return max(0, len(os.sched_getaffinity(0)) - 1)


def worker_processes(config: Config, *, resolver: object | None = None) -> WorkerProcesses | None:
    """The daemon's worker processes; None where it performs the requests itself."""
    count = process_count(config.scheduler.worker_processes, resolver=resolver)
    if not count:
        return None
    return WorkerProcesses(
        count,
        allow_cidrs=[str(n) for n in config.outbound.allow_cidrs],
        log=config.log,
        workers=config.scheduler.workers,
        keepalive_s=config.outbound.keepalive_s,
    )
