"""Jobs in the store: typed awaitables over the one SQLite writer.

Every method computes `now` from the shared clock before handing its work
to the engine, so a whole batch of writes is stamped with the instants the
callers asked at, and the writer thread never reads a clock. Checks that
must be atomic with their write (a live slug is free, the plan's active job
limit and its bound on stored jobs) run inside the same transaction, and so
does the merge of a write with what is stored: a replace sets the
environments it owns and keeps the others exactly as they are at that
moment (`job_model.JobWrite`).

Each environment of a job fires on its own: `next_run_at` is kept per
environment, recomputed from now when its effective schedule changes or it
is enabled, and kept when an edit leaves its cadence alone. An environment
the account's config no longer lists is dormant: kept, but with no
`next_run_at` (`sync_environments`, at start and on reload), and it wakes,
from now, when the environment is configured again.

Job changes reach the scheduler over a bounded channel only after they
commit: the scheduler never learns of a change that could still roll back.
Telling it never waits, so no checkpoint lies between a commit and its
news: a request cancelled the moment its write commits (its client gone)
still tells the scheduler. Should the channel be full, the news is dropped;
the scheduler sees that its channel was full and reads the jobs due soon
back from the store (`jobsd.scheduler`), so a dropped change costs one read,
never a slot.

A header value jobsd could not open is shown to the client as a marker
(`jobsd.store.keyring`); writing that marker back is refused (422) so a
client that round-trips a job cannot replace a secret with the marker text.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import trio

from jobsd import errors
from jobsd.clock import Clock, to_us
from jobsd.job_model import Job, JobCounting, JobKind, JobWrite
from jobsd.messages import JobChanged, SchedulerNews
from jobsd.store import (
    env_sync,
    environments_sql,
    job_reach,
    job_writes,
    jobs_sql,
    listing_sql,
    runs_sql,
    usage_sql,
)
from jobsd.store.ends import RunObserver, write_ending
from jobsd.store.engine import Engine
from jobsd.store.job_writes import Limit
from jobsd.store.keyring import Sealer
from jobsd.store.listings import JobListing


def _told_nobody(changes: Sequence[JobChanged]) -> None:
    """At start: the scheduler reads the store when it starts."""


@dataclass(frozen=True, slots=True)
class JobQuery:
    """A listing: which live jobs, in what order (`listing_sql.SORTS`), which page."""

    kinds: frozenset[JobKind]
    sort: str
    offset: int
    limit: int
    with_total: bool = False
    enabled_in: tuple[str, bool] | None = None
    scheduled_in: tuple[Sequence[str], bool] | None = None
    name_contains: str | None = None


class JobStore:
    def __init__(
        self,
        engine: Engine,
        keyring: Sealer,
        clock: Clock,
        changes: trio.MemorySendChannel[SchedulerNews] | None = None,
        observer: RunObserver | None = None,
    ) -> None:
        self._engine = engine
        self._observer = observer
        self._keyring = keyring
        self._clock = clock
        self._changes = changes

    def now(self) -> datetime:
        return self._clock.now()

    def _announce(self, changes: Sequence[JobChanged]) -> None:
        if self._changes is None:
            return
        for change in changes:
            try:
                self._changes.send_nowait(change)
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                return  # the scheduler reads the store back (see above)

    # -- jobs -------------------------------------------------------------------

    async def create_job(
        self, account_id: str, write: JobWrite, *, configured: Collection[str], limit: Limit
    ) -> Job:
        job_writes.refuse_markers(write)
        now = self.now()
        keyring = self._keyring
        spec = write.spec

        def tx(conn: sqlite3.Connection) -> tuple[Job, list[JobChanged]]:
            job_writes.refuse_unknown_policies(conn, account_id, write)
            if jobs_sql.live_row(conn, account_id, spec.slug) is not None:
                raise errors.conflict(
                    "slug_taken", f"a job with id '{spec.slug}' already exists", "/data/id"
                )
            job_writes.check_store_room(conn, account_id, limit)
            enabled = {env: e.enabled for env, e in write.environments.items()}
            if limit.counting.counts(spec.kind, enabled):
                job_writes.check_room(conn, account_id, limit)
            pk = jobs_sql.insert(conn, keyring, account_id, spec, now_us=to_us(now))
            empty = jobs_sql.job_by_pk(conn, pk, keyring)
            job_writes.apply_environments(
                conn, keyring, spec, empty, write, configured=configured, now=now
            )
            job = jobs_sql.job_by_pk(conn, pk, keyring)
            return job, job_writes.changes_of(job, job.environments)

        job, changes = await self._engine.write(tx)
        self._announce(changes)
        return job

    async def replace_job(
        self,
        account_id: str,
        slug: str,
        write: JobWrite,
        *,
        configured: Collection[str],
        limit: Limit,
        guard: frozenset[str] | None = None,
        kinds: Collection[JobKind] = frozenset(JobKind),
    ) -> Job:
        """Replace; `guard` set: refuse (403) a change to what an environment
        enabled outside it does (`job_reach.refuse_reaching_out`). `kinds`: those
        the writing version can show; another is 404 in the write's transaction, so
        a job made manual since the route's check is not replaced through the seed."""
        job_writes.refuse_markers(write)
        now = self.now()
        keyring = self._keyring

        def tx(conn: sqlite3.Connection) -> tuple[Job, list[JobChanged]]:
            row = jobs_sql.live_row_of(conn, account_id, slug, kinds)
            job_writes.refuse_unknown_policies(conn, account_id, write)
            before = jobs_sql.to_job(row, environments_sql.env_rows(conn, row["id"]), keyring)
            spec = job_writes.merged_spec(write, before.spec)
            job_reach.refuse_reaching_out(conn, before, spec, guard)
            enabled = {env: e.enabled for env, e in before.environments.items()}
            was_counted = limit.counting.counts(before.spec.kind, enabled)
            for env in write.owns:
                enabled.pop(env, None)
            enabled.update({env: e.enabled for env, e in write.environments.items()})
            if limit.counting.counts(spec.kind, enabled) and not was_counted:
                job_writes.check_room(conn, account_id, limit, replacing=True)
            jobs_sql.replace(conn, keyring, row, spec, now_us=to_us(now))
            job_writes.apply_environments(
                conn, keyring, spec, before, write, configured=configured, now=now
            )
            pk = before.pk
            job = jobs_sql.job_by_pk(conn, pk, keyring)
            gone = {env: None for env in before.environments if env not in job.environments}
            return job, job_writes.changes_of(job, {**gone, **job.environments})

        job, changes = await self._engine.write(tx)
        self._announce(changes)
        return job

    async def delete_job(
        self,
        account_id: str,
        slug: str,
        *,
        guard: frozenset[str] | None = None,
        kinds: Collection[JobKind] = frozenset(JobKind),
    ) -> None:
        """Delete; `guard` set: refuse (403) when enabled, or a run is going, in an
        environment outside it; 404 when its kind is not among `kinds` (as `replace_job`)."""
        now_us = to_us(self.now())

        def tx(conn: sqlite3.Connection, ended: list[str]) -> list[JobChanged]:
            row = jobs_sql.live_row_of(conn, account_id, slug, kinds)
            envs = environments_sql.env_rows(conn, row["id"])
            if guard is not None:
                # A run going out of reach would be canceled (or its retries ended).
                going = job_reach.going_environments(conn, int(row["id"])) - guard
                outside = sorted(
                    {str(e["environment"]) for e in envs if e["enabled"]} - guard | going
                )
                if outside:
                    raise errors.forbidden(
                        "environment_scope",
                        f"the job is enabled, or a run of it is going, in {', '.join(outside)}, "
                        "outside this token's environments; a token that can reach them may "
                        "delete it",
                    )
            jobs_sql.soft_delete(conn, row["id"], now_us=now_us)
            ended += runs_sql.cancel_pending_of_job(conn, row["id"], now_us=now_us)
            return [
                JobChanged(int(row["id"]), str(e["environment"]), None, None, None) for e in envs
            ]

        self._announce(await write_ending(self._engine, self._observer, tx))

    async def get_job(
        self, account_id: str, slug: str, kinds: Collection[JobKind] = frozenset(JobKind)
    ) -> Job:
        """The live job; 404 also when its kind is not among `kinds` (a version cannot show it)."""
        return await self._engine.point_read(
            partial(self._live_job, account_id, slug, kinds), account_id
        )

    def get_job_now(self, account_id: str, slug: str, kinds: Collection[JobKind]) -> Job:
        """`get_job` without waiting: SQLite's busy error where it would wait."""
        return self._engine.point_read_now(partial(self._live_job, account_id, slug, kinds))

    def _live_job(
        self, account_id: str, slug: str, kinds: Collection[JobKind], conn: sqlite3.Connection
    ) -> Job:
        row = jobs_sql.live_row_of(conn, account_id, slug, kinds)
        return jobs_sql.to_job(row, environments_sql.env_rows(conn, row["id"]), self._keyring)

    @asynccontextmanager
    async def listing(self, account_id: str) -> AsyncIterator[JobListing]:
        """The account's live jobs as of one instant, read in chunks (429/503
        when the account or the daemon is streaming too many listings)."""
        async with self._engine.snapshot(account_id) as snap:
            yield JobListing(snap, account_id, self._keyring)

    async def usage(self, account_id: str, period: str, counting: JobCounting) -> tuple[int, int]:
        """(runs_used in `period`, the jobs `counting` counts now)."""

        def q(conn: sqlite3.Connection) -> tuple[int, int]:
            return (
                usage_sql.runs_used(conn, account_id, period),
                listing_sql.count_active(conn, account_id, counting),
            )

        return await self._engine.read(q, account_id)

    async def sync_environments(
        self, configured: Mapping[str, Sequence[str]], *, announce: bool = True
    ) -> int:
        """Make the environments the config lists fire and the others dormant.

        `configured`: account id -> its environments. For those accounts, an
        environment not listed keeps its rows but loses its `next_run_at`;
        an enabled one listed again, dormant until now, gets a `next_run_at`
        from now (a one-off not yet fired fires late rather than never).
        Accounts not named are left alone. Returns how many rows changed.
        Its cost does not grow with the jobs that fire as they should (a
        million of them at every start): one index seek per environment rows
        are in, then only the rows of an environment some account no longer
        lists, and the enabled rows that do not fire (migration 9). At most
        `env_sync.BATCH_ROWS` rows change per writer transaction, so other
        writes go on between them; each batch is told as it commits.
        `announce` False: at start, before the scheduler runs (it reads the
        store when it starts; telling it over the bounded channel then would
        wait for a reader that is not there yet). Retries held for an
        instant in an environment not listed are canceled: they are fires to
        come, like slots (the `runs_held` index: only held retries are read).
        """
        tell = self._announce if announce else _told_nobody
        return await env_sync.sync(
            self._engine, self._observer, self._keyring, self.now, configured, tell
        )
