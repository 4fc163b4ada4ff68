"""A database another process keeps locked: 503 with Retry-After, nothing changed.

`jobsd backup`, `rotate-key` or an operator's sqlite3 shell may hold SQLite's
write lock. A write that waits past the store's busy timeout is answered 503
`store_busy` with Retry-After, as a client can retry it, rather than a 500 that
says the server is broken; its transaction rolled back, so a retry is safe.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from tests.conftest import Harness, job_doc
from tests.test_engine_broken import break_writer


@contextmanager
def write_lock_held(harness: Harness) -> Iterator[None]:
    """Another connection (another process, as far as SQLite can tell) holds
    the write lock until the block ends."""
    other = sqlite3.connect(harness.config.storage.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


async def short_busy_timeout(harness: Harness) -> None:
    """The store waits 5 s for a lock; 50 ms keeps the test quick."""

    def pragma(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA busy_timeout = 50")

    await harness.store.engine.write(pragma)


async def test_a_write_past_the_busy_timeout_is_503_and_changes_nothing(harness: Harness) -> None:
    await short_busy_timeout(harness)
    with write_lock_held(harness):
        response = await harness.post("/api/v1/jobs", job_doc("locked"))
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        body = await response.get_json()
        assert body["errors"][0]["code"] == "store_busy"
        assert body["errors"][0]["status"] == "503"
    assert (await harness.get("/api/v1/jobs/locked")).status_code == 404
    assert harness.changes.statistics().current_buffer_used == 0  # the scheduler heard nothing
    # Once the lock is gone, the same request succeeds.
    assert (await harness.post("/api/v1/jobs", job_doc("locked"))).status_code == 201


async def test_a_run_now_past_the_busy_timeout_is_503_and_queues_nothing(harness: Harness) -> None:
    assert (await harness.post("/api/v1/jobs", job_doc("j", enabled=False))).status_code == 201
    await short_busy_timeout(harness)
    with write_lock_held(harness):
        response = await harness.post("/api/v1/jobs/j/actions/run")
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
    assert harness.orders.orders == []
    runs = await (await harness.get("/api/v1/runs")).get_json()
    assert runs["data"] == []


async def test_a_write_connection_gone_bad_is_503_and_says_jobsd_restarts(
    harness: Harness,
) -> None:
    """A write connection that could not roll back (`jobsd.store.engine`): the daemon
    is stopping to reopen the file; a request meanwhile is a 503 to retry, not a 500."""
    assert (await harness.post("/api/v1/jobs", job_doc("j", enabled=False))).status_code == 201
    await break_writer(harness.store.engine)
    for response in (
        await harness.post("/api/v1/jobs", job_doc("after")),
        await harness.post("/api/v1/jobs/j/actions/run"),
    ):
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        body = await response.get_json()
        assert body["errors"][0]["code"] == "store_unavailable"
        assert "restarting" in body["errors"][0]["detail"]
    assert (await harness.get("/api/v1/jobs/after")).status_code == 404
    assert harness.orders.orders == []
