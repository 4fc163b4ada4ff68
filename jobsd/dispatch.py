"""The executor pool's intake: committed runs in, fairly chosen runs out.

The database is the queue. Every run the API, the scheduler or recovery
commits is a PENDING row first; what this module holds in memory is a
bounded window onto those rows (`jobsd.fairqueue`: per-account lanes, a
free worker serving the account with the fewest runs in flight).

- `offer` is how the API and the scheduler hand over a run they just
  committed. It never waits and never fails: the run is queued in its
  account's lane, or, when the lane is full, left in the store for a
  refill. So a run-now answers as soon as its run is committed, the
  scheduler never blocks on the executors, and a caller that goes away right
  after its commit cannot strand its run: there is no await between the
  commit and the offer, and nothing after the commit decides whether the
  run executes.
- `run` is the dispatcher's own task. It reads runs back from the store:
  a spilled lane that has drained to half gets its account's oldest PENDING
  runs (one indexed read, `oldest_pending`), and every `sweep_s` (and at
  start, which is how runs recovery left PENDING reach the workers) it asks
  the store which accounts have PENDING runs and marks their lanes to be
  checked. The sweep is the net under everything else: any PENDING run, from
  whatever path, reaches a worker within `sweep_s` without a restart; a
  retry still held for its due instant is in no lane until the scheduler
  releases it (`jobsd.store.queue_sql`).
- `take` / `done` are the workers' side: a worker parks until a run is
  pickable for it.

Exactly-once is not this module's job but the store's: a worker's claim
is one conditional UPDATE (PENDING -> RUNNING), so a run read twice (a
refill racing a claim) is claimed once and the second claim is a no-op.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import trio

from jobsd.fairqueue import FairQueue, Refill
from jobsd.messages import RunOrder

# Accounts asked for per sweep: far more than any config holds.
SWEEP_ACCOUNTS = 100_000


def lane_depth(workers: int) -> int:
    """Runs held in memory per account: twice the workers, so that a refill
    (half a lane, one indexed read) keeps every worker busy for a round."""
    return max(16, 2 * workers)


class RunIntake(Protocol):
    """What the API and the scheduler are given: hand over a committed run."""

    def offer(self, order: RunOrder) -> None: ...


class PendingRuns(Protocol):
    async def pending_accounts(self, limit: int) -> list[str]: ...

    async def oldest_pending(self, account_id: str, limit: int) -> list[str]: ...


class Dispatcher:
    def __init__(
        self,
        store: PendingRuns,
        *,
        depth: int,
        cap: Callable[[], int],
        sweep_s: float = 5.0,
    ) -> None:
        self._store = store
        self._queue = FairQueue(depth)
        self._cap = cap
        self._sweep_s = sweep_s
        self._workers = trio.lowlevel.ParkingLot()
        self._wanted = trio.Event()
        self._closed = False

    @property
    def queued(self) -> int:
        """Runs held in memory; the rest of the PENDING runs wait in the store."""
        return len(self._queue)

    def offer(self, order: RunOrder) -> None:
        if self._queue.offer(order.account_id, order.run_id):
            self._workers.unpark()
        elif self._queue.wants_refill(order.account_id):
            self._wanted.set()

    async def take(self) -> RunOrder | None:
        """The next run for a free worker; waits while none is pickable. None
        once `close`d: the pool is stopping."""
        while not self._closed:
            picked = self._queue.pick(self._cap())
            if picked is not None:
                account_id, run_id = picked
                if self._queue.wants_refill(account_id):
                    self._wanted.set()
                return RunOrder(run_id, account_id)
            await self._workers.park()
        return None

    def close(self) -> None:
        """Every take, parked or to come, answers None."""
        self._closed = True
        self._workers.unpark_all()

    def done(self, order: RunOrder) -> None:
        """The worker that took `order` is free (its run finished or was not ours)."""
        if self._queue.done(order.account_id, order.run_id):
            # Its account, capped, may have become pickable for a parked worker.
            # Only its own: another's runs in flight did not change. (A worker
            # parks only when every account with runs queued is at the cap, so
            # each of them has runs in flight whose ends wake one.)
            self._workers.unpark()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._sweep()
        task_status.started()
        next_sweep = trio.current_time() + self._sweep_s
        while True:
            wanted = self._wanted = trio.Event()  # what is asked from here on wakes the next round
            for refill in self._queue.refills():
                await self._refill(refill)
            if trio.current_time() >= next_sweep:
                await self._sweep()
                next_sweep = trio.current_time() + self._sweep_s
                continue
            with trio.move_on_at(next_sweep):
                await wanted.wait()

    async def _sweep(self) -> None:
        for account_id in await self._store.pending_accounts(SWEEP_ACCOUNTS):
            self._queue.spill(account_id)

    async def _refill(self, refill: Refill) -> None:
        run_ids = await self._store.oldest_pending(refill.account_id, refill.limit)
        added = self._queue.refilled(refill, run_ids)
        if added:
            self._workers.unpark(count=added)
