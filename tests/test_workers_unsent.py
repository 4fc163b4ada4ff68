"""A run no worker process could take was never sent: it is not metered.

`WorkerProcesses.perform` waits `WORKER_WAIT_S` for a live worker; past it
the run ends FAILED/WORKER_LOST without any request having left, so its
outcome must say so (`sent` False) and the record give the meter back,
as for any other run refused before its request (SEMANTICS: a run is
metered when its HTTP request starts).
"""

from __future__ import annotations

import trio
import trio.testing

from jobsd.config import LogConfig
from jobsd.job_model import HttpConfig
from jobsd.runs import FailureReason, RunStatus
from jobsd.workers.pool import WorkerProcesses


async def test_a_run_no_worker_took_is_recorded_unsent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pool = WorkerProcesses(1, allow_cidrs=["127.0.0.1/32"], log=LogConfig(), workers=4)
    # No worker was ever started (`run` not called): none can take it.
    outcome = await pool.perform(HttpConfig(url="http://127.0.0.1:9/", timeout_s=5))
    assert outcome.status is RunStatus.FAILED
    assert outcome.failure_reason is FailureReason.WORKER_LOST
    assert outcome.sent is False, outcome
