"""Pages of jobs and runs, read in chunks from one snapshot.

What `GET /jobs` and `GET /runs` stream (`jobsd.api.streaming`): each page
is an async generator of lists of values, converted on the store's thread
(header values opened there), about `snapshots.CHUNK_BYTES` of row text at
a time. The store's `listing(account)` gives one of these inside a held
snapshot, so what a listing reports after its page (the total of jobs, the
cursor of the next page of runs) is true of the same instant as its rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncGenerator, Iterable
from contextlib import aclosing
from typing import TYPE_CHECKING

from jobsd.job_model import Job
from jobsd.messages import Run
from jobsd.run_order import Position
from jobsd.store import jobs_sql, listing_sql, runs_sql
from jobsd.store.keyring import Sealer
from jobsd.store.last_runs import last_runs_page
from jobsd.store.run_listing import RunQuery, page_rows, position_of
from jobsd.store.snapshots import Snapshot

if TYPE_CHECKING:
    from jobsd.store.jobs import JobQuery


class JobListing:
    """A page and its total from the same snapshot, so they agree exactly."""

    def __init__(self, snap: Snapshot, account_id: str, keyring: Sealer) -> None:
        self._snap = snap
        self._account_id = account_id
        self._keyring = keyring

    def page(self, query: JobQuery) -> AsyncGenerator[list[Job], None]:
        account_id, keyring = self._account_id, self._keyring

        def rows(conn: sqlite3.Connection) -> sqlite3.Cursor:
            return listing_sql.list_page(
                conn,
                account_id,
                sort=query.sort,
                offset=query.offset,
                limit=query.limit,
                **_filters(query),
            )

        return self._snap.chunks(rows, lambda c, rows: jobs_sql.jobs_of_rows(c, rows, keyring))

    async def count(self, query: JobQuery) -> int:
        account_id = self._account_id
        return await self._snap.read(
            lambda c: listing_sql.count_live(c, account_id, **_filters(query))
        )


def _filters(query: JobQuery) -> dict[str, object]:
    return {
        "kinds": query.kinds,
        "enabled_in": query.enabled_in,
        "scheduled_in": query.scheduled_in,
        "name_contains": query.name_contains,
    }


class RunListing:
    """A keyset page of runs from one snapshot; `next_after` (the position the
    next page starts after) is known once the page has been read to its end."""

    def __init__(self, snap: Snapshot, account_id: str) -> None:
        self._snap = snap
        self._account_id = account_id
        self.next_after: Position | None = None

    async def page(self, query: RunQuery) -> AsyncGenerator[list[Run], None]:
        """Up to `query.limit` runs in its order (`jobsd.store.run_listing`,
        `jobsd.store.last_runs`); one more is read to learn whether a next page
        exists."""
        account_id, sort, limit = self._account_id, query.sort, query.limit
        fetch = last_runs_page if query.last_run_only else page_rows

        def rows(conn: sqlite3.Connection) -> Iterable[sqlite3.Row]:
            return fetch(conn, account_id, query.filter, sort, query.after, limit + 1)

        chunks = self._snap.chunks(
            rows, lambda _c, rows: [(position_of(sort, r), runs_sql.to_run(r)) for r in rows]
        )
        sent = 0
        last: Position | None = None
        async with aclosing(chunks):
            async for chunk in chunks:
                kept = chunk[: limit - sent]
                if len(kept) < len(chunk):
                    self.next_after = last if not kept else kept[-1][0]
                if kept:
                    sent += len(kept)
                    last = kept[-1][0]
                    yield [run for _, run in kept]
