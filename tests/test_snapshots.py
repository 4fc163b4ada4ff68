"""Snapshots for streamed listings, on real SQLite files.

Who may hold one (two per account, a few overall, refusals after a bounded
wait, nothing leaked when a holder or a waiter is cancelled), that a page
read chunk by chunk while the writer changes the table is the table of one
instant (and its total agrees), that chunks stay near their size, and that
a keyset page of runs knows its next cursor exactly.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from jobsd.clock import Clock
from jobsd.errors import ApiError
from jobsd.job_model import JobKind, JobWrite
from jobsd.run_filters import RunFilter
from jobsd.run_order import DEFAULT_SORT, Position
from jobsd.store import Store, open_store
from jobsd.store.jobs import JobQuery
from jobsd.store.run_listing import RunQuery
from jobsd.store.snapshots import CHUNK_BYTES, SnapshotPool
from tests.model import ENV, create_job
from tests.test_store import T0, keyring, spec

MiB = 1024 * 1024


def pool(tmp_path: Path, **limits: float) -> SnapshotPool:
    db = tmp_path / "plain.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
    return SnapshotPool(lambda: sqlite3.connect(db, check_same_thread=False), **limits)  # type: ignore[arg-type]


async def hold(
    p: SnapshotPool,
    owner: str,
    release: trio.Event,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    async with p.snapshot(owner):
        task_status.started()
        await release.wait()


async def refusal(p: SnapshotPool, owner: str) -> ApiError:
    with pytest.raises(ApiError) as info:
        async with p.snapshot(owner):
            pass
    return info.value


async def test_two_per_account_then_429_after_the_wait_while_others_get_theirs(
    tmp_path: Path,
) -> None:
    p = pool(tmp_path, total=4, per_owner=2, wait_s=0.2)
    release = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(hold, p, "a", release)
        await nursery.start(hold, p, "a", release)
        start = trio.current_time()
        err = await refusal(p, "a")
        assert 0.15 < trio.current_time() - start < 5
        assert err.status == 429 and err.items[0].code == "too_many_lists"
        assert err.headers["Retry-After"].isdigit()
        with trio.fail_after(1):  # another account is not kept waiting
            async with p.snapshot("b"):
                pass
        release.set()
    with trio.fail_after(1):
        async with p.snapshot("a"), p.snapshot("a"):
            pass


async def test_503_when_every_snapshot_is_taken_and_the_account_slot_comes_back(
    tmp_path: Path,
) -> None:
    p = pool(tmp_path, total=2, per_owner=2, wait_s=0.2)
    release = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(hold, p, "a", release)
        await nursery.start(hold, p, "b", release)
        err = await refusal(p, "c")
        assert err.status == 503 and err.items[0].code == "busy"
        release.set()
    # "c" got its account slot back when refused: two at once still fit.
    with trio.fail_after(1):
        async with p.snapshot("c"), p.snapshot("c"):
            pass


async def test_a_waiter_and_a_holder_that_are_cancelled_leak_nothing(tmp_path: Path) -> None:
    p = pool(tmp_path, total=1, per_owner=1, wait_s=30)
    release = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(hold, p, "a", release)
        with trio.move_on_after(0.1):  # waits for the one snapshot, then is cancelled
            async with p.snapshot("b"):
                pass
        nursery.cancel_scope.cancel()  # the holder too
    with trio.fail_after(1):
        async with p.snapshot("a"):
            pass
        async with p.snapshot("b"):
            pass


@asynccontextmanager
async def store_at(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(tmp_path / "jobsd.sqlite3", keyring(tmp_path), Clock(T0)) as store:
        yield store


def big(slug: str, body_bytes: int) -> JobWrite:
    write = spec(slug, enabled=False)
    config = dataclasses.replace(write.spec.config, body="b" * body_bytes)
    return dataclasses.replace(write, spec=dataclasses.replace(write.spec, config=config))


EVERY = JobQuery(kinds=frozenset(JobKind), sort="-created_at", offset=0, limit=1000)


async def test_a_page_read_in_chunks_is_one_instant_and_agrees_with_its_total(
    tmp_path: Path,
) -> None:
    async with store_at(tmp_path) as store:
        for n in range(12):
            await create_job(store, "acme", big(f"j{n:02d}", 200_000))
        async with store.jobs.listing("acme") as listing:
            seen: list[str] = []
            changed: set[str] = set()
            async for chunk in listing.page(EVERY):
                seen += [job.spec.slug for job in chunk]
                # The writer goes on meanwhile: a new job, and one deleted.
                new = await create_job(store, "acme", big(f"new{len(seen)}", 10))
                await store.jobs.delete_job("acme", seen[-1])
                changed |= {new.spec.slug, seen[-1]}
            total = await listing.count(EVERY)
        assert len(changed) >= 8  # 200 kB rows in 512 KiB chunks: four chunks or more
        assert sorted(seen) == [f"j{n:02d}" for n in range(12)] and total == 12
        async with store.jobs.listing("acme") as listing:
            now = {j.spec.slug async for c in listing.page(EVERY) for j in c}
        assert now == set(seen) ^ changed


async def test_chunks_hold_about_chunk_bytes_and_a_big_row_alone(tmp_path: Path) -> None:
    async with store_at(tmp_path) as store:
        for n in range(3):
            await create_job(store, "acme", big(f"m{n}", MiB))
        for n in range(20):
            await create_job(store, "acme", big(f"s{n:02d}", 50_000))
        async with store.jobs.listing("acme") as listing:
            sizes = [
                [len(j.spec.config.body or "") for j in chunk]
                async for chunk in listing.page(EVERY)
            ]
    assert sum(len(c) for c in sizes) == 23
    for chunk in sizes:
        assert len(chunk) == 1 or sum(chunk[:-1]) < CHUNK_BYTES, chunk


@pytest.mark.parametrize(("runs", "limit"), [(0, 5), (4, 5), (5, 5), (6, 5), (7, 1)])
async def test_a_keyset_page_of_runs_knows_its_next_cursor(
    tmp_path: Path, runs: int, limit: int
) -> None:
    async with store_at(tmp_path) as store:
        await create_job(store, "acme", spec("r", enabled=False))
        made = [
            (
                await store.runs.enqueue_manual(
                    "acme", "r", ENV, require_enabled=False, max_pending=100
                )
            ).id
            for _ in range(runs)
        ]
        walked: list[str] = []
        after: Position | None = None
        for _ in range(runs + 2):
            async with store.runs.listing("acme") as listing:
                async for chunk in listing.page(RunQuery(RunFilter(), DEFAULT_SORT, limit, after)):
                    walked += [r.id for r in chunk]
                after = listing.next_after
            if after is None:
                break
        assert walked == made[::-1]


async def test_a_connection_is_used_again_and_closed_with_the_pool(tmp_path: Path) -> None:
    """Snapshots one after another share one connection; one in use when the pool
    closes is closed as its snapshot ends (neither is left open)."""
    db = tmp_path / "plain.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
    conns: list[sqlite3.Connection] = []

    def open_conn() -> sqlite3.Connection:
        conns.append(sqlite3.connect(db, check_same_thread=False))
        return conns[-1]

    p = SnapshotPool(open_conn)
    for _ in range(2):
        async with p.snapshot("acme"):
            pass
    assert len(conns) == 1
    release = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(hold, p, "acme", release)
        p.close()
        release.set()
    with pytest.raises(sqlite3.ProgrammingError):
        conns[0].execute("SELECT 1")
