"""Runs in the store: enqueue, cancel, list; slots and retries; the durable queue.

The scheduler's slot firing and the executors' claims are single
transactions, which is what makes "at most once per slot" and "never
started after it was canceled" properties of the database rather than of
any actor's memory. Slots are fired by `jobsd.store.slots`; the
executors' side (claim, finish, mark lost) is `jobsd.store.run_records`',
runs claimed by `jobsd.store.claims`; a failure's retry is written with
it, and released when due, by `jobsd.store.retries`; the alerts an end
makes are written with it by `jobsd.store.outbox`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from functools import partial

from jobsd import errors
from jobsd.clock import to_us
from jobsd.config import DEFAULT_ENVIRONMENT
from jobsd.job_model import JobKind
from jobsd.messages import RetryHeld, Run, RunOrder
from jobsd.runs import RunStatus, Trigger
from jobsd.store import (
    jobs_sql,
    pending_counts,
    queue_sql,
    retries,
    runs_sql,
    slots,
)
from jobsd.store.listings import RunListing
from jobsd.store.run_records import RunRecordStore
from jobsd.store.slots import DueJob, SlotFiring
from jobsd.store.waiting_writes import write_when_free

# A run-now's one read: the live job (its id and kind), whether it is enabled in the
# environment (NULL when it has no row there), and the account's queued runs
# (`jobsd.store.pending_counts`; no row: none ever queued).
_RUN_NOW_READ = (
    "SELECT j.id, j.kind, e.enabled, "
    "coalesce((SELECT n FROM pending_counts WHERE account_id = ?), 0) AS pending "
    "FROM jobs AS j LEFT JOIN job_environments AS e ON e.job_id = j.id AND e.environment = ? "
    "WHERE j.account_id = ? AND j.slug = ? AND j.deleted_at_us IS NULL"
)


def _run_not_found(run_id: str) -> errors.ApiError:
    return errors.not_found(f"no run with id '{run_id}'")


def _run_of(
    account_id: str, run_id: str, visible: Collection[str] | None, conn: sqlite3.Connection
) -> Run:
    row = runs_sql.of_account(conn, account_id, run_id, visible)
    if row is None:
        raise _run_not_found(run_id)
    return runs_sql.to_run(row)


class RunStore(RunRecordStore):
    """Runs for the API, the scheduler and the dispatcher; the executors' side
    (claim, finish, mark lost) is `RunRecordStore`'s."""

    # -- API --------------------------------------------------------------------

    async def enqueue_manual(
        self,
        account_id: str,
        slug: str,
        environment: str,
        *,
        require_enabled: bool,
        max_pending: int,
        kinds: Collection[JobKind] = frozenset(JobKind),
    ) -> Run:
        """A MANUAL run in `environment`; 409 when `require_enabled` and it is not enabled there.

        404 for a job that is not live or whose kind is not among `kinds`; 429
        while the account has `max_pending` runs PENDING.
        """
        now_us = to_us(self._clock.now())

        def tx(conn: sqlite3.Connection) -> Run:
            # The job, its switch in `environment` and the account's backlog in one
            # read; the checks in the order they always ran.
            params = (account_id, environment, account_id, slug)
            job = conn.execute(_RUN_NOW_READ, params).fetchone()
            if job is None or JobKind(job["kind"]) not in kinds:
                raise errors.not_found(f"no job with id '{slug}'")
            if require_enabled and not job["enabled"]:  # NULL: no row for the environment
                raise errors.conflict(
                    "environment_not_enabled",
                    f"job '{slug}' is not enabled in {environment}; enable it there "
                    "(environments.<name>.enabled) or name an environment it is enabled in",
                )
            if job["pending"] >= max_pending:
                raise errors.too_many_pending(max_pending)
            row = runs_sql.insert_returning(
                conn,
                runs_sql.NewRun(
                    account_id=account_id,
                    job_pk=job["id"],
                    job_slug=slug,
                    environment=environment,
                    trigger=Trigger.MANUAL,
                    created_at_us=now_us,
                ),
            )
            assert row is not None
            return runs_sql.to_run(row)

        return await self._engine.write(tx)

    async def enqueue_rerun(
        self,
        account_id: str,
        source_id: str,
        *,
        max_pending: int,
        visible: Collection[str] | None = None,
        configured: Collection[str] | None = None,
    ) -> Run:
        """A RERUN in the source run's environment; 404 for a run outside `visible`.

        429 while the account has `max_pending` runs PENDING.
        """
        now_us = to_us(self._clock.now())

        def tx(conn: sqlite3.Connection) -> Run:
            source = runs_sql.of_account(conn, account_id, source_id, visible)
            if source is None:
                raise _run_not_found(source_id)
            job = jobs_sql.row_by_pk(conn, source["job_id"])
            if job is None or job["deleted_at_us"] is not None:
                raise errors.conflict(
                    "job_deleted",
                    f"the job '{source['job_slug']}' of run {source_id} was deleted; "
                    "a rerun needs the job that made the run",
                )
            environment = str(source["environment"])
            if configured is not None and environment not in configured:
                raise errors.conflict(
                    "environment_not_configured",
                    f"run {source_id} ran in {environment}, which the account's config no "
                    "longer lists; a rerun runs where its source ran",
                )
            if pending_counts.pending_count(conn, account_id) >= max_pending:
                raise errors.too_many_pending(max_pending)
            row = runs_sql.insert_returning(
                conn,
                runs_sql.NewRun(
                    account_id=account_id,
                    job_pk=job["id"],
                    job_slug=job["slug"],
                    environment=environment,
                    trigger=Trigger.RERUN,
                    created_at_us=now_us,
                    rerun_of=source_id,
                ),
            )
            assert row is not None
            return runs_sql.to_run(row)

        return await self._engine.write(tx)

    async def get_run(
        self, account_id: str, run_id: str, *, visible: Collection[str] | None = None
    ) -> Run:
        # One row by its key: on the loop's thread (`Engine.point_read`), as a
        # job is. A worker thread's hand-over cost a GET of one run ~2x the CPU.
        return await self._engine.point_read(
            partial(_run_of, account_id, run_id, visible), account_id
        )

    def get_run_now(self, account_id: str, run_id: str, visible: Collection[str] | None) -> Run:
        """`get_run` without waiting: SQLite's busy error where it would wait."""
        return self._engine.point_read_now(partial(_run_of, account_id, run_id, visible))

    @asynccontextmanager
    async def listing(self, account_id: str) -> AsyncIterator[RunListing]:
        """The account's runs as of one instant, read in chunks (429/503 when
        the account or the daemon is streaming too many listings)."""
        async with self._engine.snapshot(account_id) as snap:
            yield RunListing(snap, account_id)

    async def count_live(self) -> tuple[int, int]:
        """(PENDING, RUNNING) runs in the database now."""
        return await self._engine.read(runs_sql.live_counts)

    async def cancel_run(
        self, account_id: str, run_id: str, *, visible: Collection[str] | None = None
    ) -> tuple[Run, bool]:
        """Cancel; also say whether it was RUNNING (its request must be abandoned)."""
        now_us = to_us(self._clock.now())

        def tx(conn: sqlite3.Connection, ended: list[str]) -> tuple[Run, bool]:
            row = runs_sql.of_account(conn, account_id, run_id, visible)
            if row is None:
                raise _run_not_found(run_id)
            status = RunStatus(row["status"])
            if status.terminal or not runs_sql.cancel(conn, run_id, now_us=now_us):
                raise errors.conflict(
                    "run_terminal", f"run {run_id} is already {status.value} and cannot be canceled"
                )
            ended.append(run_id)
            return _fetch(conn, run_id), status is RunStatus.RUNNING

        return await self._ending(tx)

    # -- scheduler --------------------------------------------------------------

    async def due_before(self, until: datetime, limit: int) -> list[DueJob]:
        return await self._engine.read(lambda c: slots.due_jobs(c, until, limit))

    async def due_units(self, units: Sequence[tuple[int, str]]) -> list[DueJob]:
        """Of these (job pk, environment)s, those enabled with a next fire, as stored now."""
        return await self._engine.read(lambda c: slots.due_units(c, units))

    async def rebase_slots(
        self, now: datetime, after: tuple[int, str], limit: int
    ) -> tuple[int, tuple[int, str] | None]:
        """After a step back of the clock to `now`, one batch; `slots.rebase`."""
        return await write_when_free(
            self._engine,
            lambda c: slots.rebase(c, now, after, limit),
            "the planning of next fires after the clock stepped back",
        )

    async def shift_held_retries(
        self, by: timedelta, now: datetime, after: tuple[int, str], limit: int
    ) -> tuple[int, tuple[int, str] | None]:
        """After a step back of the clock, one batch; `retries.shift_held`."""
        by_us, now_us = by // timedelta(microseconds=1), to_us(now)
        return await write_when_free(
            self._engine,
            lambda c: retries.shift_held(c, by_us, now_us, after, limit),
            "the moving of held retries after the clock stepped back",
        )

    async def fire_slot(
        self,
        job_pk: int,
        *,
        due: datetime,
        slot: datetime | None,
        next_run_at: datetime | None,
        environment: str = DEFAULT_ENVIRONMENT,
    ) -> tuple[bool, RunOrder | None]:
        """One `fire_slots` firing; see there."""
        (result,) = await self.fire_slots([SlotFiring(job_pk, environment, due, slot, next_run_at)])
        return result

    async def fire_slots(self, firings: Sequence[SlotFiring]) -> list[tuple[bool, RunOrder | None]]:
        """Advance due (job, environment)s and insert their SCHEDULE runs, in one transaction.

        For each firing nothing happens unless the job is still enabled in
        that environment, live and due there at `due` on the firing's cadence
        (the scheduler's view may be stale): then (False, None). A run is not inserted when its
        (job, environment, slot) already has one, and is recorded skipped
        (no order) under `overlap_policy` SKIP (`jobsd.store.slots`). Returns,
        per firing, whether the job advanced and the new run, as the order
        the scheduler hands over. One transaction for a whole batch is what
        lets thousands of jobs due at the same instant fire in milliseconds
        rather than a commit each.
        """
        now_us = to_us(self._clock.now())

        def tx(conn: sqlite3.Connection, ended: list[str]) -> list[tuple[bool, RunOrder | None]]:
            return [slots.fire(conn, firing, now_us, ended) for firing in firings]

        return await self._ending(tx, waiting=f"the firing of {len(firings)} slots")

    async def held_retries_before(self, until: datetime, limit: int) -> list[RetryHeld]:
        """Retries held for a due instant by `until`, soonest first."""
        return await self._engine.read(lambda c: retries.held_before(c, to_us(until), limit))

    async def release_retries(self, due: Sequence[RetryHeld]) -> list[RunOrder]:
        """Release due retries to the executors, in one transaction; the orders for them."""
        return await write_when_free(
            self._engine, lambda c: retries.release(c, due), f"the release of {len(due)} retries"
        )

    # -- the dispatcher ---------------------------------------------------------

    async def pending_accounts(self, limit: int) -> list[str]:
        return await self._engine.read(lambda c: queue_sql.pending_accounts(c, limit))

    async def oldest_pending(self, account_id: str, limit: int) -> list[str]:
        return await self._engine.read(lambda c: queue_sql.oldest_pending(c, account_id, limit))


def _fetch(conn: sqlite3.Connection, run_id: str) -> Run:
    row = runs_sql.by_id(conn, run_id)
    assert row is not None
    return runs_sql.to_run(row)
