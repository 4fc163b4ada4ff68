"""Jobs in the store: typed awaitables over the one SQLite writer.

Every method computes `now` from the shared clock before handing its work
to the engine, so a whole batch of writes is stamped with the instants the
callers asked at, and the writer thread never reads a clock. Checks that
must be atomic with their write (a live slug is free, the plan's active job
limit, a run is still PENDING) run inside the same transaction.

Job changes reach the scheduler over a bounded channel only after they
commit: the scheduler never learns of a change that could still roll back.

A header value jobsd could not open is shown to the client as a marker
(`jobsd.store.keyring`); writing that marker back is refused (422) so a
client that round-trips a job cannot replace a secret with the marker text.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

import trio

from jobsd import errors
from jobsd.clock import Clock, to_us
from jobsd.messages import Job, JobChanged, JobSpec
from jobsd.plans import UNLIMITED, may_enable
from jobsd.schedule import first_fire, parse_schedule
from jobsd.store import jobs_sql, runs_sql
from jobsd.store.ends import RunObserver, write_ending
from jobsd.store.engine import Engine
from jobsd.store.keyring import Sealer, is_unreadable_marker


def _next_us(spec: JobSpec, now: datetime) -> int | None:
    if not spec.enabled:
        return None
    return to_us(first_fire(parse_schedule(spec.schedule), now=now))


def _job_not_found(slug: str) -> errors.ApiError:
    return errors.not_found(f"no job with id '{slug}'")


class JobStore:
    def __init__(
        self,
        engine: Engine,
        keyring: Sealer,
        clock: Clock,
        changes: trio.MemorySendChannel[JobChanged] | None = None,
        observer: RunObserver | None = None,
    ) -> None:
        self._engine = engine
        self._observer = observer
        self._keyring = keyring
        self._clock = clock
        self._changes = changes

    def now(self) -> datetime:
        return self._clock.now()

    async def _announce(self, job: Job) -> None:
        if self._changes is not None:
            await self._changes.send(JobChanged(job.pk, job.spec.schedule, job.next_run_at))

    # -- jobs -------------------------------------------------------------------

    async def create_job(self, account_id: str, active_jobs_limit: int, spec: JobSpec) -> Job:
        _refuse_markers(spec)
        now = self.now()
        keyring = self._keyring

        def tx(conn: sqlite3.Connection) -> Job:
            if jobs_sql.live_row(conn, account_id, spec.slug) is not None:
                raise errors.conflict(
                    "slug_taken", f"a job with id '{spec.slug}' already exists", "/data/id"
                )
            if spec.enabled and not _room_for_one(conn, account_id, active_jobs_limit):
                raise _limit_error(active_jobs_limit)
            pk = jobs_sql.insert(
                conn,
                keyring,
                account_id,
                spec,
                now_us=to_us(now),
                next_run_at_us=_next_us(spec, now),
            )
            row = jobs_sql.row_by_pk(conn, pk)
            assert row is not None
            return jobs_sql.to_job(row, keyring)

        job = await self._engine.write(tx)
        await self._announce(job)
        return job

    async def replace_job(
        self, account_id: str, active_jobs_limit: int, slug: str, spec: JobSpec
    ) -> Job:
        _refuse_markers(spec)
        now = self.now()
        keyring = self._keyring

        def tx(conn: sqlite3.Connection) -> Job:
            row = jobs_sql.live_row(conn, account_id, slug)
            if row is None:
                raise _job_not_found(slug)
            was_enabled = bool(row["enabled"])
            if (
                spec.enabled
                and not was_enabled
                and not _room_for_one(conn, account_id, active_jobs_limit)
            ):
                raise _limit_error(active_jobs_limit)
            if spec.enabled and was_enabled and spec.schedule == row["schedule"]:
                next_us = row["next_run_at_us"]
            else:
                next_us = _next_us(spec, now)
            jobs_sql.replace(conn, keyring, row, spec, now_us=to_us(now), next_run_at_us=next_us)
            fresh = jobs_sql.row_by_pk(conn, row["id"])
            assert fresh is not None
            return jobs_sql.to_job(fresh, keyring)

        job = await self._engine.write(tx)
        await self._announce(job)
        return job

    async def delete_job(self, account_id: str, slug: str) -> None:
        now_us = to_us(self.now())

        def tx(conn: sqlite3.Connection, ended: list[str]) -> tuple[int, str]:
            row = jobs_sql.live_row(conn, account_id, slug)
            if row is None:
                raise _job_not_found(slug)
            jobs_sql.soft_delete(conn, row["id"], now_us=now_us)
            ended += runs_sql.cancel_pending_of_job(conn, row["id"], now_us=now_us)
            return int(row["id"]), str(row["schedule"])

        pk, schedule = await write_ending(self._engine, self._observer, tx)
        if self._changes is not None:
            await self._changes.send(JobChanged(pk, schedule, None))

    async def get_job(self, account_id: str, slug: str) -> Job:
        keyring = self._keyring

        def q(conn: sqlite3.Connection) -> Job:
            row = jobs_sql.live_row(conn, account_id, slug)
            if row is None:
                raise _job_not_found(slug)
            return jobs_sql.to_job(row, keyring)

        return await self._engine.read(q)

    async def list_jobs(
        self, account_id: str, *, enabled: bool | None, offset: int, limit: int, with_total: bool
    ) -> tuple[list[Job], int | None]:
        keyring = self._keyring

        def q(conn: sqlite3.Connection) -> tuple[list[Job], int | None]:
            rows = jobs_sql.list_page(conn, account_id, enabled=enabled, offset=offset, limit=limit)
            total = jobs_sql.count_live(conn, account_id, enabled=enabled) if with_total else None
            return [jobs_sql.to_job(r, keyring) for r in rows], total

        return await self._engine.read(q)

    async def usage(self, account_id: str, period: str) -> tuple[int, int]:
        """(runs_used in `period`, enabled jobs now)."""

        def q(conn: sqlite3.Connection) -> tuple[int, int]:
            return (
                runs_sql.runs_used(conn, account_id, period),
                jobs_sql.count_enabled(conn, account_id),
            )

        return await self._engine.read(q)


def _refuse_markers(spec: JobSpec) -> None:
    items = [
        errors.invalid(
            "unreadable_value",
            f"/data/attributes/configuration/headers/{i}/value",
            "This is the marker jobsd shows for a stored value it cannot open "
            "(its key is no longer in the key file); send the real value instead.",
        )
        for i, header in enumerate(spec.config.headers)
        if is_unreadable_marker(header.value)
    ]
    if items:
        raise errors.ValidationFailed(items)


def _room_for_one(conn: sqlite3.Connection, account_id: str, active_jobs_limit: int) -> bool:
    """May one more job be enabled? Unlimited plans skip the count (a scan)."""
    if active_jobs_limit == UNLIMITED:
        return True
    return may_enable(active_jobs_limit, jobs_sql.count_enabled(conn, account_id))


def _limit_error(limit: int) -> errors.ApiError:
    return errors.forbidden(
        "active_jobs_limit",
        f"the plan allows {limit} enabled jobs and the account has reached it: "
        "pause or delete a job, or create this one with enabled: false",
    )
