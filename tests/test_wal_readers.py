"""Lists that overlap one another do not let the WAL grow without end.

A snapshot (a streamed list) pins the WAL: nothing written after it began
can be checkpointed past it, and the log can only start over once no
reader uses it. Two lists of an account, each begun before the other
ended, kept some snapshot open at every moment, so under writes the WAL
never started over: on the review machine two readers of 1 s, half a
second apart, grew it to 212 MB beside a 72 MB database in 10 s, and a
slow client holds a list for up to 60 s. Once the log is past a bound, a
new list now waits for the open ones to end (and the log to be copied into
the database file) before it begins.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from pathlib import Path

import trio

from jobsd.clock import Clock
from jobsd.crypto import KeyRing
from jobsd.store import open_store
from tests.test_retention import T0, make_jobs

MIB = 1024 * 1024


def runs(conn: sqlite3.Connection, pk: int, count: int) -> None:
    conn.executemany(
        "INSERT INTO runs (id, account_id, job_id, job_slug, trigger, status, created_at_us, "
        "finished_at_us, result) VALUES (?, 'acme', ?, 'x', 'MANUAL', 'SUCCEEDED', 1, 2, ?)",
        [(str(uuid.uuid4()), pk, "r" * 50_000) for _ in range(count)],
    )


async def test_overlapping_lists_do_not_keep_the_wal_from_starting_over(tmp_path: Path) -> None:
    db = tmp_path / "db"
    async with open_store(db, KeyRing.load_or_create(tmp_path / "k"), Clock(T0)) as s:
        s.engine.snapshots.wal_barrier = 2 * MIB
        (pk,) = await make_jobs(s, 1, [False])
        largest = 0

        async def hold(opened: trio.Event, done: trio.Event) -> None:
            async with s.engine.snapshot("acme") as snap:
                await snap.read(lambda c: c.execute("SELECT count(*) FROM runs").fetchone())
                opened.set()
                await done.wait()

        async with trio.open_nursery() as nursery:
            opened, done = trio.Event(), trio.Event()
            nursery.start_soon(hold, opened, done)
            await opened.wait()
            for _ in range(16):  # each list begins while the one before is still open
                next_opened, next_done = trio.Event(), trio.Event()
                nursery.start_soon(hold, next_opened, next_done)
                for _ in range(4):  # ~2 MB written while both are asked for
                    await s.engine.write(lambda c: runs(c, pk, 10))
                    largest = max(largest, os.path.getsize(f"{db}-wal"))
                done.set()
                with trio.fail_after(10):
                    await next_opened.wait()
                opened, done = next_opened, next_done
            done.set()
    assert largest < 12 * MIB, f"the WAL grew to {largest / MIB:.0f} MiB"
