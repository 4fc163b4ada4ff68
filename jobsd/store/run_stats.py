"""`GET /run_stats` from the store: counts, buckets, recent failures, what fires next.

Counts come from the count tables (`jobsd.store.count_tables`: runs per
account, minute or hour created, and environment, by status, kept by
triggers). An interval `[lo, hi)` is read as its whole hours (hourly table;
the minute table when buckets finer than an hour are asked for), the whole
minutes around them (minute table), and at most two partial minutes at its
ends, from the runs themselves (`runs_created`). A month is then a few
thousand small rows instead of a million runs; tests/bench/bench_finding.py
measures both ways.

`recent_failures` walks `runs_status_created` backwards from the interval's
end; the job's name is the live job's with that slug now (null when there
is none), so it matches what `GET /jobs/{job}` shows.

`next_scheduled`: jobsd creates a scheduled run at its instant, not ahead,
so the soonest due instant it knows is the earliest of an enabled
environment's `next_run_at` (recurring jobs and pending one-offs alike)
and a PENDING run whose `scheduled_for` is still ahead (a retry waiting
for its time), at or after `now`; only the environment filter applies.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from jobsd.buckets import bucket_start_us
from jobsd.intervals import Interval
from jobsd.runs import RunStatus
from jobsd.store.count_tables import STATUS_COLUMNS
from jobsd.store.engine import Engine

MINUTE_US = 60_000_000
RECENT_FAILURES = 3


@dataclass(frozen=True, slots=True)
class StatsQuery:
    created_at: Interval
    environments: frozenset[str] | None
    bucket_us: int | None
    now_us: int


@dataclass(frozen=True, slots=True)
class Failure:
    job: str
    job_name: str | None
    failure_reason: str | None
    created_at_us: int


@dataclass(frozen=True, slots=True)
class NextScheduled:
    job: str
    job_name: str | None
    scheduled_for_us: int
    environment: str


@dataclass(frozen=True, slots=True)
class RunStats:
    tally: dict[str, int]  # status value -> count
    buckets: list[tuple[int, int]] | None  # (bucket start, count), non-empty, in order
    recent_failures: list[Failure]
    next_scheduled: NextScheduled | None

    @property
    def total(self) -> int:
        return sum(self.tally.values())


def _env_term(environments: frozenset[str] | None, table: str = "") -> tuple[str, list[object]]:
    if environments is None:
        return "", []
    marks = ", ".join("?" * len(environments))
    return f" AND {table}environment IN ({marks})", list[object](sorted(environments))


HOUR_US = 3_600_000_000
_PER_HOUR = HOUR_US // MINUTE_US


def _minutes(interval: Interval) -> tuple[int | None, int | None]:
    """The whole minutes inside `interval`: [first, end) as minute numbers (None: open)."""
    first = None if interval.lo is None else -(-interval.lo // MINUTE_US)
    end = None if interval.hi is None else interval.hi // MINUTE_US
    return first, end


Span = tuple[int | None, int | None]  # [first, end) in a table's unit; None: open


def _parts(query: StatsQuery) -> list[tuple[str, str, int, Span]]:
    """The whole minutes of the interval as (table, unit column, unit us, span) reads.

    Whole hours come from the hourly table unless buckets finer than an hour
    are asked for; the minutes before the first and after the last whole
    hour come from the minute table.
    """
    first, end = _minutes(query.created_at)
    minute = ("run_counts", "minute", MINUTE_US)
    if first is not None and end is not None and first >= end:
        return []
    if query.bucket_us is not None and query.bucket_us < HOUR_US:
        return [(*minute, (first, end))]
    first_h = None if first is None else -(-first // _PER_HOUR)
    end_h = None if end is None else end // _PER_HOUR
    if first_h is not None and end_h is not None and first_h >= end_h:
        return [(*minute, (first, end))]
    parts: list[tuple[str, str, int, Span]] = [
        ("run_counts_hourly", "hour", HOUR_US, (first_h, end_h))
    ]
    if first is not None and first_h is not None and first < first_h * _PER_HOUR:
        parts.append((*minute, (first, first_h * _PER_HOUR)))
    if end is not None and end_h is not None and end_h * _PER_HOUR < end:
        parts.append((*minute, (end_h * _PER_HOUR, end)))
    return parts


def _counted(
    conn: sqlite3.Connection, account_id: str, query: StatsQuery
) -> tuple[dict[str, int], dict[int, int]]:
    """Tally and per-bucket counts over the interval's whole minutes, from the count tables."""
    tally = {c.upper(): 0 for c in STATUS_COLUMNS}
    buckets: dict[int, int] = {}
    sums = ", ".join(f"sum({c})" for c in STATUS_COLUMNS)
    for table, unit, unit_us, (first, end) in _parts(query):
        where, params = "account_id = ?", list[object]([account_id])
        if first is not None:
            where += f" AND {unit} >= ?"
            params.append(first)
        if end is not None:
            where += f" AND {unit} < ?"
            params.append(end)
        env, env_params = _env_term(query.environments)
        if query.bucket_us is None:  # one row of sums
            sql = f"SELECT 0, {sums} FROM {table} WHERE {where}{env}"
        else:  # summed per bucket in SQL: a month of minutes is 130,000 rows
            per = query.bucket_us // unit_us
            sql = (
                f"SELECT {unit} - {unit} % {per}, {sums} FROM {table} WHERE {where}{env} GROUP BY 1"
            )
        for at, *counts in conn.execute(sql, [*params, *env_params]):
            counts = [c or 0 for c in counts]  # sum() of no rows is NULL
            for column, count in zip(STATUS_COLUMNS, counts, strict=True):
                tally[column.upper()] += count
            if query.bucket_us is not None:
                buckets[at * unit_us] = buckets.get(at * unit_us, 0) + sum(counts)
    return tally, {start: n for start, n in buckets.items() if n}


def _edges(conn: sqlite3.Connection, account_id: str, query: StatsQuery) -> list[tuple[int, str]]:
    """(created_at_us, status) of the runs in the partial minutes at the interval's ends."""
    interval = query.created_at
    first, end = _minutes(interval)
    ranges: list[tuple[int | None, int | None]] = []
    if first is not None and end is not None and first >= end:
        ranges.append((interval.lo, interval.hi))  # inside one minute, or empty
    else:
        if interval.lo is not None and first is not None and interval.lo < first * MINUTE_US:
            ranges.append((interval.lo, first * MINUTE_US))
        if interval.hi is not None and end is not None and end * MINUTE_US < interval.hi:
            ranges.append((end * MINUTE_US, interval.hi))
    env, env_params = _env_term(query.environments)
    found: list[tuple[int, str]] = []
    for lo, hi in ranges:
        if lo is None or hi is None or lo >= hi:
            continue
        found += [
            (int(r[0]), str(r[1]))
            for r in conn.execute(
                "SELECT created_at_us, status FROM runs INDEXED BY runs_created "
                f"WHERE account_id = ? AND created_at_us >= ? AND created_at_us < ?{env}",
                [account_id, lo, hi, *env_params],
            )
        ]
    return found


def recent_failures(conn: sqlite3.Connection, account_id: str, query: StatsQuery) -> list[Failure]:
    where, params = "r.account_id = ? AND r.status = 'FAILED'", list[object]([account_id])
    if query.created_at.lo is not None:
        where += " AND r.created_at_us >= ?"
        params.append(query.created_at.lo)
    if query.created_at.hi is not None:
        where += " AND r.created_at_us < ?"
        params.append(query.created_at.hi)
    env, env_params = _env_term(query.environments, "r.")
    rows = conn.execute(
        "SELECT r.job_slug, r.failure_reason, r.created_at_us, "
        "(SELECT j.name FROM jobs AS j WHERE j.account_id = r.account_id "
        "AND j.slug = r.job_slug AND j.deleted_at_us IS NULL) "
        f"FROM runs AS r INDEXED BY runs_status_created WHERE {where}{env} "
        "ORDER BY r.created_at_us DESC, r.seq DESC LIMIT ?",
        [*params, *env_params, RECENT_FAILURES],
    ).fetchall()
    return [Failure(str(r[0]), r[3], r[1], int(r[2])) for r in rows]


def next_scheduled(
    conn: sqlite3.Connection, account_id: str, query: StatsQuery
) -> NextScheduled | None:
    env, env_params = _env_term(query.environments, "e.")
    due = conn.execute(
        "SELECT j.slug, j.name, e.next_run_at_us, e.environment "
        "FROM job_environments AS e INDEXED BY job_environments_due "
        "JOIN jobs AS j ON j.id = e.job_id "
        "WHERE e.next_run_at_us >= ? AND e.enabled = 1 AND j.account_id = ? "
        f"AND j.deleted_at_us IS NULL{env} "
        "ORDER BY e.next_run_at_us, j.slug, e.environment LIMIT 1",
        [query.now_us, account_id, *env_params],
    ).fetchone()
    env, env_params = _env_term(query.environments, "r.")
    waiting = conn.execute(
        "SELECT r.job_slug, (SELECT j.name FROM jobs AS j WHERE j.account_id = r.account_id "
        "AND j.slug = r.job_slug AND j.deleted_at_us IS NULL), r.scheduled_for_us, r.environment "
        "FROM runs AS r INDEXED BY runs_scheduled WHERE r.account_id = ? "
        f"AND r.scheduled_for_us >= ? AND r.status = 'PENDING'{env} "
        "ORDER BY r.scheduled_for_us, r.created_at_us, r.seq LIMIT 1",
        [account_id, query.now_us, *env_params],
    ).fetchone()
    candidates = [r for r in (due, waiting) if r is not None]
    if not candidates:
        return None
    best = min(candidates, key=lambda r: (int(r[2]), str(r[0]), str(r[3])))
    return NextScheduled(str(best[0]), best[1], int(best[2]), str(best[3]))


def run_stats(conn: sqlite3.Connection, account_id: str, query: StatsQuery) -> RunStats:
    tally, buckets = _counted(conn, account_id, query)
    for created_at_us, status in _edges(conn, account_id, query):
        tally[status] += 1
        if query.bucket_us is not None:
            start = bucket_start_us(created_at_us, query.bucket_us)
            buckets[start] = buckets.get(start, 0) + 1
    ordered = {s.value: tally[s.value] for s in RunStatus}
    return RunStats(
        tally=ordered,
        buckets=None if query.bucket_us is None else sorted(buckets.items()),
        recent_failures=recent_failures(conn, account_id, query),
        next_scheduled=next_scheduled(conn, account_id, query),
    )


def created_span(
    conn: sqlite3.Connection,
    account_id: str,
    interval: Interval,
    environments: frozenset[str] | None = None,
) -> tuple[int, int] | None:
    """The first and last created_at of the runs inside `interval` and `environments`
    (None: none).

    Only the environments the statistics cover count: a span widened by runs
    the caller may not see would refuse a request over its own runs, and the
    refusal would print when those others were created. Each environment is
    its own seek on `runs_env_created`.
    """
    where, params = "account_id = ?", list[object]([account_id])
    if interval.lo is not None:
        where += " AND created_at_us >= ?"
        params.append(interval.lo)
    if interval.hi is not None:
        where += " AND created_at_us < ?"
        params.append(interval.hi)
    reads: list[tuple[str, list[object]]] = [(f"runs_created WHERE {where}", params)]
    if environments is not None:
        reads = [
            (f"runs_env_created WHERE {where} AND environment = ?", [*params, env])
            for env in sorted(environments)
        ]
    ends: list[int] = []
    for source, args in reads:
        for f in ("min", "max"):
            found = conn.execute(f"SELECT {f}(created_at_us) FROM runs INDEXED BY {source}", args)
            value = found.fetchone()[0]
            if value is not None:
                ends.append(int(value))
    return (min(ends), max(ends)) if ends else None


class StatsStore:
    """The awaitable face of the functions above, for the API."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def run_stats(self, account_id: str, query: StatsQuery) -> RunStats:
        return await self._engine.read(lambda c: run_stats(c, account_id, query), account_id)

    async def created_span(
        self, account_id: str, interval: Interval, environments: frozenset[str] | None
    ) -> tuple[int, int] | None:
        return await self._engine.read(
            lambda c: created_span(c, account_id, interval, environments), account_id
        )
