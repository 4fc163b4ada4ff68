"""Run history retention on real SQLite files: the policy, its pace, the API meanwhile."""

from __future__ import annotations

import sqlite3
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsd.clock import Clock, to_us
from jobsd.config import RetentionConfig, parse_config
from jobsd.crypto import KeyRing
from jobsd.errors import ConfigError
from jobsd.job_model import HttpConfig, JobWrite
from jobsd.retention import PruneReport, cutoff_us, prune_once, run_retention
from jobsd.runs import RunStatus
from jobsd.store import Store, open_store
from jobsd.store.count_tables import GRAINS
from tests.conftest import job_doc, make_harness
from tests.model import create_job, seed_job

T0 = datetime(2026, 6, 5, 2, 0, tzinfo=UTC)
DAY_US = 86_400 * 1_000_000
LIVE = (RunStatus.PENDING, RunStatus.RUNNING)


@dataclass(frozen=True)
class R:
    job: int  # index into the scenario's jobs
    status: RunStatus
    age_us: int  # how long before T0 it finished (ignored for live runs)


def spec(slug: str) -> JobWrite:
    return seed_job(slug, slug, None, False, "0 2 * * *", HttpConfig("https://example.invalid/"))


async def make_jobs(store: Store, count: int, deleted: Sequence[bool]) -> list[int]:
    pks = [(await create_job(store, "acme", spec(f"j{i}"), -1)).pk for i in range(count)]
    for i, gone in enumerate(deleted):
        if gone:
            await store.jobs.delete_job("acme", f"j{i}")
    return pks


def insert_runs(conn: sqlite3.Connection, pks: Sequence[int], runs: Sequence[R]) -> list[int]:
    """Insert in order (so seq follows the list); returns the seqs."""
    seqs = []
    for run in runs:
        live = run.status in LIVE
        finished = None if live else to_us(T0) - run.age_us
        cur = conn.execute(
            "INSERT INTO runs (id, account_id, job_id, job_slug, trigger, status, created_at_us, "
            "finished_at_us, failure_reason) VALUES (?, 'acme', ?, 'x', 'MANUAL', ?, ?, ?, ?)",
            (
                str(uuid.uuid4()),
                pks[run.job],
                run.status.value,
                to_us(T0) - DAY_US * 400,
                finished,
                "WORKER_LOST" if run.status is RunStatus.FAILED else None,
            ),
        )
        assert cur.lastrowid is not None
        seqs.append(cur.lastrowid)
    return seqs


def bulk_runs(conn: sqlite3.Connection, pk: int, runs: Sequence[R]) -> None:
    conn.executemany(
        "INSERT INTO runs (id, account_id, job_id, job_slug, trigger, status, created_at_us, "
        "finished_at_us, failure_reason) VALUES (?, 'acme', ?, 'x', 'MANUAL', ?, ?, ?, ?)",
        [
            (
                str(uuid.uuid4()),
                pk,
                run.status.value,
                to_us(T0) - DAY_US * 400,
                to_us(T0) - run.age_us,
                "WORKER_LOST" if run.status is RunStatus.FAILED else None,
            )
            for run in runs
        ],
    )


def count_tables(
    conn: sqlite3.Connection,
) -> tuple[set[tuple[object, ...]], set[tuple[object, ...]]]:
    """The count tables as kept by their triggers, and as counted from the runs left."""
    kept: set[tuple[object, ...]] = set()
    recount: set[tuple[object, ...]] = set()
    statuses = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED")
    for table, unit, unit_us in GRAINS:
        kept |= {
            (table, *r)
            for r in conn.execute(
                f"SELECT account_id, {unit}, environment, pending, running, succeeded, failed, "
                f"canceled FROM {table}"
            )
        }
        sums = ", ".join(f"sum(status = '{s}')" for s in statuses)
        recount |= {
            (table, *r)
            for r in conn.execute(
                f"SELECT account_id, created_at_us / {unit_us}, environment, {sums} "
                "FROM runs GROUP BY 1, 2, 3"
            )
        }
    return kept, recount


def oracle(runs: Sequence[R], seqs: Sequence[int], policy: RetentionConfig) -> set[int]:
    """The seqs a correct prune keeps, computed the slow obvious way."""
    limit_us = policy.days * DAY_US
    survivors = [
        (seq, run)
        for seq, run in zip(seqs, runs, strict=True)
        if run.status in LIVE or run.age_us <= limit_us
    ]
    kept = {seq for seq, run in survivors if run.status in LIVE}
    for job in {run.job for run in runs}:
        finished = sorted(
            (seq for seq, run in survivors if run.job == job and run.status not in LIVE),
            reverse=True,
        )
        kept.update(finished[: policy.max_runs_per_job])
    return kept


runs_strategy = st.lists(
    st.builds(
        R,
        job=st.integers(0, 3),
        status=st.sampled_from(list(RunStatus)),
        age_us=st.one_of(
            st.integers(0, 12 * DAY_US), st.sampled_from([DAY_US * d for d in range(1, 11)])
        ),
    ),
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(
    runs=runs_strategy,
    days=st.integers(1, 10),
    keep=st.integers(1, 6),
    batch=st.integers(1, 5),
    deleted=st.lists(st.booleans(), min_size=4, max_size=4),
)
async def test_prune_matches_the_oracle(
    runs: list[R], days: int, keep: int, batch: int, deleted: list[bool]
) -> None:
    policy = RetentionConfig(days=days, max_runs_per_job=keep)
    with tempfile.TemporaryDirectory() as tmp:
        ring = KeyRing.load_or_create(Path(tmp) / "secret.key")
        async with open_store(Path(tmp) / "jobsd.sqlite3", ring, Clock(T0)) as store:
            pks = await make_jobs(store, 4, deleted)
            seqs = await store.engine.write(lambda c: insert_runs(c, pks, runs))
            report = await prune_once(store.retention, policy, T0, batch_rows=batch, pause_s=0)
            left = await store.engine.read(
                lambda c: {int(r[0]) for r in c.execute("SELECT seq FROM runs")}
            )
            jobs_left = await store.engine.read(
                lambda c: {int(r[0]) for r in c.execute("SELECT id FROM jobs")}
            )
            counted, recounted = await store.engine.read(count_tables)
    assert counted == recounted  # run_stats' counts follow the pruning
    assert left == oracle(runs, seqs, policy)
    assert report.runs_deleted == len(runs) - len(left)
    assert report.largest_batch <= batch
    # Deleted jobs go once no run refers to them, except the newest row (ids are never reused).
    referenced = {pks[run.job] for seq, run in zip(seqs, runs, strict=True) if seq in left}
    gone = {pk for pk, d in zip(pks, deleted, strict=True) if d and pk not in referenced}
    assert jobs_left == set(pks) - (gone - {max(pks)})


async def test_the_boundary_instant_is_kept(tmp_path: Path) -> None:
    policy = RetentionConfig(days=3, max_runs_per_job=10)
    runs = [R(0, RunStatus.SUCCEEDED, 3 * DAY_US), R(0, RunStatus.FAILED, 3 * DAY_US + 1)]
    async with open_store(tmp_path / "db", KeyRing.load_or_create(tmp_path / "k"), Clock(T0)) as s:
        pks = await make_jobs(s, 1, [False])
        seqs = await s.engine.write(lambda c: insert_runs(c, pks, runs))
        assert cutoff_us(policy, T0) == to_us(T0 - timedelta(days=3))
        report = await prune_once(s.retention, policy, T0, pause_s=0)
        left = await s.engine.read(lambda c: [r[0] for r in c.execute("SELECT seq FROM runs")])
    assert (report.expired, report.over_cap, report.largest_batch) == (1, 0, 1)
    assert left == [seqs[0]]


async def test_prune_queries_use_the_retention_indexes(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", KeyRing.load_or_create(tmp_path / "k"), Clock(T0)) as s:

        def plans(conn: sqlite3.Connection) -> list[str]:
            queries = [
                "SELECT seq FROM runs WHERE finished_at_us < 5 "
                "AND status NOT IN ('PENDING', 'RUNNING') LIMIT 10",
                "SELECT seq FROM runs WHERE job_id = 1 AND finished_at_us IS NOT NULL "
                "ORDER BY seq DESC LIMIT 1 OFFSET 9",
                "SELECT job_id FROM runs WHERE finished_at_us IS NOT NULL "
                "GROUP BY job_id HAVING count(*) > 3",
            ]
            return [
                " ".join(str(r[3]) for r in conn.execute(f"EXPLAIN QUERY PLAN {q}"))
                for q in queries
            ]

        found = await s.engine.read(plans)
    assert "runs_finished" in found[0]
    assert "COVERING INDEX runs_finished_by_job" in found[1]
    assert "COVERING INDEX runs_finished_by_job" in found[2]


async def test_the_actor_prunes_after_its_delay_and_then_every_interval(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    policy = RetentionConfig(days=30, max_runs_per_job=100)
    clock = Clock(T0)
    old = [R(0, RunStatus.SUCCEEDED, 31 * DAY_US)] * 7
    async with open_store(tmp_path / "db", KeyRing.load_or_create(tmp_path / "k"), clock) as s:
        pks = await make_jobs(s, 1, [False])
        await s.engine.write(lambda c: insert_runs(c, pks, old))
        reports_tx, reports_rx = trio.open_memory_channel[PruneReport](0)
        async with trio.open_nursery() as nursery:
            start = trio.current_time()
            await nursery.start(
                lambda task_status: run_retention(
                    s.retention,
                    policy,
                    clock,
                    first_delay_s=60,
                    interval_s=3600,
                    batch_rows=2,
                    pause_s=0,
                    reports=reports_tx,
                    task_status=task_status,
                )
            )
            first = await reports_rx.receive()
            assert trio.current_time() - start >= 60
            assert (first.expired, first.largest_batch) == (7, 2)
            assert first.batches >= 4  # 2 + 2 + 2 + 1, then the other rules
            await s.engine.write(lambda c: insert_runs(c, pks, old[:3]))
            second = await reports_rx.receive()
            assert trio.current_time() - start >= 3660
            assert second.expired == 3
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("total", [10_000, pytest.param(50_000, marks=pytest.mark.slow)])
async def test_the_api_keeps_answering_during_a_large_prune(tmp_path: Path, total: int) -> None:
    """Runs pruned in batches while the API reads and writes; prints the worst latency."""
    batch = 250
    async with make_harness(tmp_path) as h:
        r = await h.post("/api/v1/jobs", doc=_job_doc("big"))
        assert r.status_code == 201, r.text
        pk = (await h.store.jobs.get_job("acme", "big")).pk
        # Half past `days`, half recent but over the per-job cap: both rules run.
        runs = [R(0, RunStatus.SUCCEEDED, 200 * DAY_US)] * (total // 2) + [
            R(0, RunStatus.FAILED, DAY_US)
        ] * (total // 2)
        await h.store.engine.write(lambda c: bulk_runs(c, pk, runs))
        policy = RetentionConfig(days=90, max_runs_per_job=1000)
        latencies: list[float] = []
        done = trio.Event()
        report: list[PruneReport] = []

        async def prune() -> None:
            report.append(
                await prune_once(h.store.retention, policy, T0, batch_rows=batch, pause_s=0.005)
            )
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(prune)
            for i in range(5_000):  # bounded; ends when the prune does
                if done.is_set():
                    break
                began = trio.current_time()
                if i % 2:
                    r = await h.get("/api/v1/runs?page[size]=20&filter[job]=big")
                else:
                    r = await h.post("/api/v1/jobs/big/actions/run")
                latencies.append(trio.current_time() - began)
                assert r.status_code == 200, r.text
        done_report = report[0]
        left = await h.store.engine.read(
            lambda c: c.execute("SELECT count(*) FROM runs WHERE job_id = ?", (pk,)).fetchone()[0]
        )
    manual = (len(latencies) + 1) // 2
    assert done_report.expired == total // 2
    assert done_report.over_cap == total // 2 - 1000
    assert done_report.largest_batch <= batch
    assert done_report.batches >= done_report.runs_deleted // batch
    assert left == 1000 + manual  # the recent 1000 and every PENDING run made meanwhile
    worst_ms = max(latencies) * 1000
    print(
        f"\npruned {done_report.runs_deleted} runs in {done_report.batches} batches; "
        f"{len(latencies)} API requests meanwhile, longest {worst_ms:.1f} ms"
    )
    assert len(latencies) >= 20, "the prune finished before the API was exercised"
    assert worst_ms < 1000, f"an API request took {worst_ms:.0f} ms during the prune"


def _job_doc(slug: str) -> dict[str, object]:
    return job_doc(slug, name=slug, enabled=False)


async def test_retention_days_is_bounded_so_a_pass_cannot_overflow(tmp_path: Path) -> None:
    # The config took any TOML integer: days = 2**63 - 1 put the cutoff past
    # SQLite's integers, and the first pass (a minute after start) raised
    # OverflowError out of the retention actor, which stopped the daemon.
    with pytest.raises(ConfigError, match=r"retention\.days: must be <= 1000000"):
        parse_config(f"[retention]\ndays = {2**63 - 1}\n")
    largest = parse_config("[retention]\ndays = 1000000\n").retention
    async with open_store(tmp_path / "db", KeyRing.load_or_create(tmp_path / "k"), Clock(T0)) as s:
        pks = await make_jobs(s, 1, [False])
        await s.engine.write(lambda c: insert_runs(c, pks, [R(0, RunStatus.SUCCEEDED, DAY_US)]))
        report = await prune_once(s.retention, largest, T0, pause_s=0)
    assert report.runs_deleted == 0
