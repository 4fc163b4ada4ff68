"""The retention actor: keeps run history within `[retention]`, a little at a time.

Policy (from the config): a finished run goes once it finished more than
`days` days ago, or once its job has `max_runs_per_job` newer finished runs
(newest by insertion order, like the runs listing). PENDING and RUNNING runs
are never deleted and do not count against the cap. Deleted jobs that no run
refers to any more are dropped too (see `jobsd.store.retention`).

Pace: a pass deletes at most `batch_rows` rows, and about `batch_bytes` of
run text, per transaction through the store's one writer and pauses
`pause_s` between batches, so the writer interleaves the API's and the
scheduler's writes with the prune and neither ever waits behind more than
one small batch. A pass runs `first_delay_s`
after start (not at once: start-up belongs to recovery and the first slots),
then every `interval_s`. A pass is work the next pass would redo, so the
actor needs no state and may be cancelled at any moment.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import trio

from jobsd.clock import Clock, to_us
from jobsd.config import RetentionConfig
from jobsd.store.retention import BATCH_BYTES, Batch, RetentionStore

log = logging.getLogger("jobsd.retention")

_US_PER_DAY = 86_400 * 1_000_000


@dataclass(frozen=True, slots=True)
class PruneReport:
    expired: int = 0
    over_cap: int = 0
    jobs_dropped: int = 0
    batches: int = 0
    largest_batch: int = 0

    @property
    def runs_deleted(self) -> int:
        return self.expired + self.over_cap


def cutoff_us(policy: RetentionConfig, now: datetime) -> int:
    """Runs that finished strictly before this instant are past `days`."""
    return to_us(now) - policy.days * _US_PER_DAY


class _Tally:
    def __init__(self) -> None:
        self.batches = 0
        self.largest = 0

    def count(self, deleted: int) -> int:
        self.batches += 1
        self.largest = max(self.largest, deleted)
        return deleted


async def prune_once(
    store: RetentionStore,
    policy: RetentionConfig,
    now: datetime,
    *,
    batch_rows: int = 250,
    batch_bytes: int = BATCH_BYTES,
    pause_s: float = 0.05,
) -> PruneReport:
    """One full pass of the policy at `now`, in batches of at most `batch_rows`."""
    if batch_rows < 1:
        raise ValueError("batch_rows must be >= 1")
    tally = _Tally()

    keep = policy.max_runs_per_job

    async def drain(step: Callable[[], Awaitable[Batch]]) -> int:
        # Ends: a batch that may have left more deleted at least one row, which
        # no later write can bring back, or (jobs) moved its cursor past its ids.
        total = 0
        while True:
            batch = await step()
            total += tally.count(batch.deleted)
            if not batch.more:
                return total
            await trio.sleep(pause_s)

    cutoff = cutoff_us(policy, now)
    expired = await drain(partial(store.prune_expired, cutoff, batch_rows, batch_bytes))
    over_cap = 0
    for job_pk in await store.jobs_over_cap(keep):
        over_cap += await drain(
            partial(store.prune_over_cap, job_pk, keep, batch_rows, batch_bytes)
        )
    dropped = await drain(store.job_dropper(batch_rows))
    return PruneReport(expired, over_cap, dropped, tally.batches, tally.largest)


async def run_retention(
    store: RetentionStore,
    policy: RetentionConfig,
    clock: Clock,
    *,
    first_delay_s: float = 60.0,
    interval_s: float = 3600.0,
    batch_rows: int = 250,
    pause_s: float = 0.05,
    reports: trio.MemorySendChannel[PruneReport] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Prune `first_delay_s` after start, then every `interval_s`, until cancelled."""
    task_status.started()
    await trio.sleep(first_delay_s)
    while True:
        report = await prune_once(
            store, policy, clock.now(), batch_rows=batch_rows, pause_s=pause_s
        )
        if report.runs_deleted or report.jobs_dropped:
            log.info(
                "retention: deleted %d runs (%d past %d days, %d over %d per job) and "
                "%d deleted jobs, in %d batches",
                report.runs_deleted,
                report.expired,
                policy.days,
                report.over_cap,
                policy.max_runs_per_job,
                report.jobs_dropped,
                report.batches,
            )
        if reports is not None:
            await reports.send(report)
        await trio.sleep(interval_s)
