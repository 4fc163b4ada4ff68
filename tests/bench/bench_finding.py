"""How fast are runs found in a busy store? 1,000,000 runs, 200 jobs, 3 environments.

    .venv/bin/python -m tests.bench.bench_finding [--runs 1000000] [--repeat 30] [--db PATH]

Fills a store (the real schema, migrations and triggers; rows inserted
directly) with runs spread over the last 30 days: SCHEDULE runs mostly,
some MANUAL, RERUN; 90% SUCCEEDED, 7% FAILED, 2% CANCELED, the newest few
hundred PENDING or RUNNING. The file is kept at --db (default under /tmp)
and reused when it already holds the runs asked for.

Then, on a read-only connection configured as the store's readers are, the
store's own query functions (`run_listing.page_rows`, `last_runs`,
`run_stats`; the rows turned into `Run`s; no HTTP, no thread hop) timed
over --repeat rounds, p50/p99, for: the first page (50 runs) and a deep
page (page 21, or the last when there are fewer) for every filter alone
(default sort), every sort alone and a few combinations; `last_run_only`;
`run_stats` over the last hour, day and 30 days without and with buckets,
each beside the same statistics counted from the runs' indexes alone (no
count tables).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import trio

from jobsd.buckets import BUCKETS_US
from jobsd.clock import Clock, from_us, iso, to_us
from jobsd.crypto import KeyRing
from jobsd.intervals import Interval, parse_interval
from jobsd.run_filters import RunFilter
from jobsd.run_order import DEFAULT_SORT, SORT_CHOICES, Position, parse_sort
from jobsd.store import open_store
from jobsd.store.last_runs import last_runs_page
from jobsd.store.run_listing import RunQuery, page_rows, position_of
from jobsd.store.run_stats import StatsQuery, run_stats
from jobsd.store.runs_sql import to_run
from jobsd.store.schema import configure

NOW = datetime(2026, 6, 5, 12, 0, tzinfo=UTC)
FINDING_MIGRATION = 5  # indexes and count tables (jobsd.store.schema)
NOW_US = to_us(NOW)
DAY_US = 86_400_000_000
JOBS, ENVIRONMENTS = 200, ("production", "staging", "qa")
PAGE = 50
REQUEST = '{"method": "POST", "url": "https://api.example.com/hook", "headers": {}, "body": null}'
RESULT = (
    '{"status": 200, "headers": {"content-type": "application/json"}, "body": "{\\"ok\\":true}"}'
)


def fill(conn: sqlite3.Connection, total: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    conn.execute("BEGIN")
    for j in range(JOBS):
        conn.execute(
            "INSERT INTO jobs (id, account_id, slug, name, name_key, kind, schedule, method, url, "
            "success_status, tls_verify, timeout_s, created_at_us, updated_at_us) "
            "VALUES (?, 'acme', ?, ?, ?, 'recurring', '*/5 * * * *', 'POST', "
            "'https://api.example.com/hook', '2xx', 1, 30, ?, ?)",
            (j + 1, f"job-{j:03d}", f"Job {j:03d}", f"job {j:03d}", NOW_US - 40 * DAY_US, NOW_US),
        )
        for env in ENVIRONMENTS:
            conn.execute(
                "INSERT INTO job_environments (job_id, environment, enabled, next_run_at_us) "
                "VALUES (?, ?, 1, ?)",
                (j + 1, env, NOW_US + rng.randrange(1, 300) * 1_000_000),
            )
    if not total:
        conn.execute("COMMIT")
        return
    start = NOW_US - 30 * DAY_US
    step = 30 * DAY_US // total
    rows = []
    for i in range(total):
        created = start + i * step + rng.randrange(step)
        job = rng.randrange(JOBS)
        env = ENVIRONMENTS[rng.randrange(3)]
        r = rng.random()
        trigger = "SCHEDULE" if r < 0.93 else ("MANUAL" if r < 0.98 else "RERUN")
        s = rng.random()
        live = i >= total - 300
        status = (
            ("PENDING" if s < 0.5 else "RUNNING")
            if live
            else ("SUCCEEDED" if s < 0.9 else "FAILED" if s < 0.97 else "CANCELED")
        )
        started = None if status == "PENDING" else created + rng.randrange(1, 2_000_000)
        finished = (
            None if status in ("PENDING", "RUNNING") else started + rng.randrange(1, 30_000_000)  # type: ignore[operator]
        )
        rows.append(
            (
                str(uuid.UUID(int=rng.getrandbits(128))),
                job + 1,
                f"job-{job:03d}",
                env,
                trigger,
                str(uuid.uuid4()) if trigger == "RERUN" else None,
                created - (created % 300_000_000) - i if trigger == "SCHEDULE" else None,
                status,
                created,
                started,
                finished,
                "NON_SUCCESS_STATUS" if status == "FAILED" else None,
                REQUEST if started else None,
                RESULT if finished else None,
            )
        )
        if len(rows) == 20_000:
            _insert(conn, rows)
            rows = []
    _insert(conn, rows)
    conn.execute("COMMIT")


def _insert(conn: sqlite3.Connection, rows: list[tuple[object, ...]]) -> None:
    conn.executemany(
        "INSERT INTO runs (id, account_id, job_id, job_slug, environment, trigger, rerun_of, "
        "scheduled_for_us, status, created_at_us, started_at_us, finished_at_us, "
        "failure_reason, request, result) "
        "VALUES (?, 'acme', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def window(days: float) -> Interval:
    lo = NOW_US - int(days * DAY_US)
    return parse_interval(f"[{iso(from_us(lo))},{iso(NOW)})")


def measure(label: str, repeat: int, call: Callable[[], object]) -> None:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"{label:<58} p50 {statistics.median(times):7.2f} ms  p99 {p99:7.2f} ms", flush=True)


def bench(conn: sqlite3.Connection, repeat: int) -> None:
    day = window(1)
    filters: dict[str, RunFilter] = {
        "no filter": RunFilter(),
        "filter[job]=job-042": RunFilter(job="job-042"),
        "filter[status]=FAILED": RunFilter(statuses=frozenset({"FAILED"})),
        "filter[status]=CANCELED": RunFilter(statuses=frozenset({"CANCELED"})),
        "filter[status]=SUCCEEDED,FAILED": RunFilter(statuses=frozenset({"SUCCEEDED", "FAILED"})),
        "filter[status]=RUNNING": RunFilter(statuses=frozenset({"RUNNING"})),
        "filter[trigger]=MANUAL": RunFilter(triggers=frozenset({"MANUAL"})),
        "filter[trigger]=SCHEDULE,RERUN": RunFilter(triggers=frozenset({"SCHEDULE", "RERUN"})),
        "filter[environment]=staging": RunFilter(environments=frozenset({"staging"})),
        "filter[created_at]=last day": RunFilter(created_at=day),
        "filter[started_at]=last day": RunFilter(started_at=day),
        "filter[finished_at]=last day": RunFilter(finished_at=day),
        "filter[scheduled_for]=last day": RunFilter(scheduled_for=day),
        "status=FAILED & created_at=last day": RunFilter(
            statuses=frozenset({"FAILED"}), created_at=day
        ),
        "job & environment & status=FAILED": RunFilter(
            job="job-042", environments=frozenset({"qa"}), statuses=frozenset({"FAILED"})
        ),
    }
    cases = [(name, flt, DEFAULT_SORT, False) for name, flt in filters.items()]
    cases += [(f"sort={s}", RunFilter(), parse_sort(s), False) for s in SORT_CHOICES]
    cases += [
        (
            "sort=-finished_at & filter[job]",
            RunFilter(job="job-042"),
            parse_sort("-finished_at"),
            False,
        ),
        (
            "sort=status & filter[environment]=qa",
            RunFilter(environments=frozenset({"qa"})),
            parse_sort("status"),
            False,
        ),
        ("last_run_only", RunFilter(), DEFAULT_SORT, True),
        (
            "last_run_only & status=FAILED",
            RunFilter(statuses=frozenset({"FAILED"})),
            DEFAULT_SORT,
            True,
        ),
        (
            "last_run_only & sort=-total_duration_ms",
            RunFilter(),
            parse_sort("-total_duration_ms"),
            True,
        ),
    ]
    print(f"pages of {PAGE}; {repeat} rounds each")
    for name, flt, sort, last in cases:
        first = RunQuery(flt, sort, PAGE, last_run_only=last)
        deepest, pages = _next(conn, first), 1
        while deepest is not None and pages < 20:
            after = _next(conn, RunQuery(flt, sort, PAGE, deepest, last))
            if after is None:
                break
            deepest, pages = after, pages + 1
        measure(f"{name} [first]", repeat, lambda q=first: _sync_page(conn, q))
        if deepest is None:
            print(f"{name}: one page only")
            continue
        deep = RunQuery(flt, sort, PAGE, deepest, last)
        measure(f"{name} [page {pages + 1}]", repeat, lambda q=deep: _sync_page(conn, q))

    for days, label in ((1 / 24, "hour"), (1, "day"), (30, "30 days")):
        for bucket in (None, "1m", "15m", "1h", "1d"):
            if bucket == "1m" and days > 7:
                continue
            query = StatsQuery(
                window(days), None, None if bucket is None else BUCKETS_US[bucket], NOW_US
            )
            measure(
                f"run_stats last {label}" + (f" bucket={bucket}" if bucket else ""),
                repeat,
                lambda q=query: _sync_stats(conn, q),
            )
            measure(
                "  same from runs' indexes alone (no run_counts)",
                max(3, repeat // 5),
                lambda q=query: _sync_scan(conn, q),
            )


def _sync_page(conn: sqlite3.Connection, query: RunQuery) -> None:
    fetch = last_runs_page if query.last_run_only else page_rows
    rows = list(fetch(conn, "acme", query.filter, query.sort, query.after, query.limit + 1))
    [to_run(r) for r in rows]


def _sync_stats(conn: sqlite3.Connection, query: StatsQuery) -> None:
    run_stats(conn, "acme", query)


def _sync_scan(conn: sqlite3.Connection, query: StatsQuery) -> None:
    """The statistics counted from runs_status_created (and a sort for buckets)."""
    lo, hi = query.created_at.lo, query.created_at.hi
    for status in ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED"):
        conn.execute(
            "SELECT count(*) FROM runs INDEXED BY runs_status_created WHERE account_id = 'acme' "
            "AND status = ? AND created_at_us >= ? AND created_at_us < ?",
            (status, lo, hi),
        ).fetchone()
    if query.bucket_us is not None:
        conn.execute(
            "SELECT created_at_us - created_at_us % ?, count(*) FROM runs INDEXED BY runs_created "
            "WHERE account_id = 'acme' AND created_at_us >= ? AND created_at_us < ? GROUP BY 1",
            (query.bucket_us, lo, hi),
        ).fetchall()


def _next(conn: sqlite3.Connection, query: RunQuery) -> Position | None:
    fetch = last_runs_page if query.last_run_only else page_rows
    rows = list(fetch(conn, "acme", query.filter, query.sort, query.after, query.limit + 1))
    return position_of(query.sort, rows[query.limit - 1]) if len(rows) > query.limit else None


async def migrate_only(path: Path, key: Path) -> None:
    async with open_store(path, KeyRing.load_or_create(key), Clock(NOW)):
        pass


def write_costs(tmp: Path, runs: int = 20_000) -> None:
    """Microseconds per run to insert, start and finish, before migration 5 and with it,
    and with it on a connection whose statement journals stay in memory, as the
    store's writer now keeps them (`PRAGMA temp_store = MEMORY`, jobsd.store.engine).

    Batches of 256 per transaction, as the scheduler and executors write.
    """
    from jobsd.store import schema

    for latest, temp_store in (
        (FINDING_MIGRATION - 1, "DEFAULT"),
        (FINDING_MIGRATION, "DEFAULT"),
        (FINDING_MIGRATION, "MEMORY"),
    ):
        path = tmp / f"writes-{latest}.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        conn = sqlite3.connect(path, isolation_level=None)
        configure(conn)
        saved = schema.MIGRATIONS, schema.LATEST
        schema.MIGRATIONS, schema.LATEST = saved[0][:latest], latest
        try:
            schema.migrate(conn)
        finally:
            schema.MIGRATIONS, schema.LATEST = saved
        fill(conn, 0)  # the jobs only
        conn.execute(f"PRAGMA temp_store = {temp_store}")
        ids = [str(uuid.uuid4()) for _ in range(runs)]
        steps = {
            "insert": "INSERT INTO runs (id, account_id, job_id, job_slug, environment, trigger, "
            "scheduled_for_us, status, created_at_us) VALUES (?, 'acme', 1, 'job-000', "
            "'production', 'SCHEDULE', ?, 'PENDING', ?)",
            "start": "UPDATE runs SET status = 'RUNNING', started_at_us = created_at_us + 5 "
            "WHERE id = ?",
            "finish": "UPDATE runs SET status = 'SUCCEEDED', finished_at_us = started_at_us + 5 "
            "WHERE id = ?",
        }
        costs = []
        for step, sql in steps.items():
            began = time.perf_counter()
            for i in range(0, runs, 256):
                conn.execute("BEGIN IMMEDIATE")
                for k, run_id in enumerate(ids[i : i + 256], start=i):
                    at = NOW_US + k * 1000
                    conn.execute(sql, (run_id, at, at) if step == "insert" else (run_id,))
                conn.execute("COMMIT")
            costs.append(f"{step} {(time.perf_counter() - began) / runs * 1e6:5.1f} us")
        conn.close()
        print(f"schema {latest}, temp_store {temp_store:<7}: " + ", ".join(costs) + " per run")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--db", type=Path, default=Path("/tmp/jobsd-bench-finding"))
    parser.add_argument("--writes", action="store_true", help="only the write costs")
    args = parser.parse_args()
    args.db.mkdir(parents=True, exist_ok=True)
    if args.writes:
        write_costs(args.db)
        return
    path = args.db / f"runs-{args.runs}.sqlite3"
    trio.run(migrate_only, path, args.db / "secret.key")
    writer = sqlite3.connect(path, isolation_level=None)
    configure(writer)
    writer.execute("PRAGMA cache_size = -2000000")  # 2 GB: the fill touches every index
    if writer.execute("SELECT count(*) FROM runs").fetchone()[0] != args.runs:
        began = time.perf_counter()
        writer.execute("DELETE FROM runs")
        writer.execute("DELETE FROM job_environments")
        writer.execute("DELETE FROM jobs")
        fill(writer, args.runs)
        writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        print(f"filled {args.runs} runs in {time.perf_counter() - began:.0f} s")
    writer.close()
    reader = sqlite3.connect(path, isolation_level=None)
    configure(reader, readonly=True)  # as the store's readers are (default cache)
    size_mb = path.stat().st_size / 2**20
    print(
        f"{args.runs} runs, {JOBS} jobs, {len(ENVIRONMENTS)} environments; file {size_mb:.0f} MiB"
    )
    bench(reader, args.repeat)


if __name__ == "__main__":
    main()
