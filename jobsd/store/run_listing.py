"""`GET /runs` pages as SQL: which index walks each segment of an order, and the seek.

A page is the order's segments (`jobsd.run_order`) read one after another
until it holds `limit + 1` runs (the extra one says whether there is a next
page). Every segment is one statement pinned to an index with `INDEXED
BY`, so the plan cannot silently become a scan when the data or SQLite
changes (tests/test_run_listing.py reads each plan with EXPLAIN QUERY
PLAN); an index that went missing is an error, not a slow page.

Which index:
- `created_at` (the default): the filter most likely to narrow the runs
  (`filter[job]`, else the status, trigger or environment list whose values
  are expected to be rarest, from fixed priors below) if it is expected to
  keep under a third of the runs, else `runs_created`. Every such index
  ends in (created_at_us, seq), so each value of a list is a walk in order,
  and SQLite merges the walks (`MERGE (UNION ALL)`) lazily.
- `job`, `status`: runs_job_created, runs_status_created (one segment per
  status, equality on it).
- the instants and `total_duration_ms`: their own index; `IS NOT NULL`,
  then `IS NULL` (both ranges of the same index).
Every filter is a WHERE term: SQLite seeks on those the index leads with
and checks the others row by row. A keyset cursor is a row-value
comparison, which SQLite turns into a seek on the index it names.

The cost of a page is the index entries walked to find `limit + 1`
matches: a filter that keeps few runs and is not the walk's index (a rare
trigger under `-finished_at`, say) walks further. The README says which
combinations are served by a seek and which by a walk.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from jobsd.intervals import Interval
from jobsd.run_filters import RunFilter
from jobsd.run_order import Position, RunKeys, RunSort, SortField, position
from jobsd.runs import RunStatus
from jobsd.store.runs_sql import COLUMNS

SORT_COLUMNS: dict[SortField, str] = {
    SortField.CREATED_AT: "created_at_us",
    SortField.STARTED_AT: "started_at_us",
    SortField.FINISHED_AT: "finished_at_us",
    SortField.SCHEDULED_FOR: "scheduled_for_us",
    SortField.STATUS: "status",
    SortField.JOB: "job_slug",
    SortField.TOTAL_DURATION_MS: "total_duration_ms",
}
SORT_INDEXES: dict[SortField, str] = {
    SortField.CREATED_AT: "runs_created",
    SortField.STARTED_AT: "runs_started",
    SortField.FINISHED_AT: "runs_finished_at",
    SortField.SCHEDULED_FOR: "runs_scheduled",
    SortField.STATUS: "runs_status_created",
    SortField.JOB: "runs_job_created",
    SortField.TOTAL_DURATION_MS: "runs_duration",
}
# Equality filters that can drive a created_at walk: column, index, and the
# share of runs each value is expected to hold on a typical daemon.
DRIVERS: dict[str, tuple[str, str]] = {
    "status": ("status", "runs_status_created"),
    "trigger": ("trigger", "runs_trigger_created"),
    "environment": ("environment", "runs_env_created"),
}
PRIORS: dict[str, dict[str, float]] = {
    "status": {"PENDING": 0.01, "RUNNING": 0.01, "SUCCEEDED": 0.85, "FAILED": 0.08},
    "trigger": {"SCHEDULE": 0.9, "MANUAL": 0.05, "RERUN": 0.025, "RETRY": 0.025},
}
_DEFAULT_PRIOR = 0.05
_ENVIRONMENT_PRIOR = 0.34  # one of a few
_DRIVE_BELOW = 0.3
INTERVAL_COLUMNS: dict[str, str] = {
    "created_at": "created_at_us",
    "started_at": "started_at_us",
    "finished_at": "finished_at_us",
    "scheduled_for": "scheduled_for_us",
}


@dataclass(frozen=True, slots=True)
class RunQuery:
    """A `GET /runs` request as the store takes it; `after` is a decoded cursor."""

    filter: RunFilter
    sort: RunSort
    limit: int
    after: Position | None = None
    last_run_only: bool = False


@dataclass(frozen=True, slots=True)
class Statement:
    """One segment's SQL: its text and parameters, and the index it is pinned to."""

    sql: str
    params: tuple[object, ...]
    index: str


@dataclass
class _Where:
    terms: list[str] = field(default_factory=list)
    params: list[object] = field(default_factory=list)

    def add(self, term: str, *params: object) -> None:
        self.terms.append(term)
        self.params.extend(params)

    def likely(self, term: str, *params: object) -> None:
        """A filter term, marked likely true: see `filter_terms`."""
        self.add(f"likely({term})", *params)

    def among(self, column: str, values: Sequence[str]) -> None:
        self.likely(f"{column} IN ({', '.join('?' * len(values))})", *values)

    def within(self, column: str, interval: Interval) -> None:
        if interval.lo is not None:
            self.likely(f"{column} >= ?", interval.lo)
        if interval.hi is not None:
            self.likely(f"{column} < ?", interval.hi)


def keys_of(row: sqlite3.Row) -> RunKeys:
    return RunKeys(
        seq=int(row["seq"]),
        created_at_us=int(row["created_at_us"]),
        started_at_us=row["started_at_us"],
        finished_at_us=row["finished_at_us"],
        scheduled_for_us=row["scheduled_for_us"],
        status=RunStatus(row["status"]),
        job_slug=str(row["job_slug"]),
    )


def filter_terms(account_id: str, flt: RunFilter, *, skip: str | None = None) -> _Where:
    """Every filter as WHERE terms; `skip` names one an index arm states itself.

    Each is wrapped in `likely()`. SQLite still seeks on those the index
    leads with, but no longer multiplies every term's guessed selectivity
    into an estimate of a handful of rows, which with many filters made it
    prefer sorting "those few" rows to walking the index in order: a sort
    of everything in the range, on real data.
    """
    where = _Where()
    where.add("account_id = ?", account_id)
    if flt.job is not None:
        where.likely("job_slug = ?", flt.job)
    for name, values in (
        ("status", flt.statuses),
        ("trigger", flt.triggers),
        ("environment", flt.environments),
    ):
        if values is not None and name != skip:
            where.among(name, sorted(values))
    for name, column in INTERVAL_COLUMNS.items():
        where.within(column, getattr(flt, name))
    return where


def choose_driver(flt: RunFilter) -> tuple[str, list[str]] | None:
    """For a created_at walk: the list filter to drive it with, and its values (or None)."""
    best: tuple[float, str, list[str]] | None = None
    for name, values in (
        ("status", flt.statuses),
        ("trigger", flt.triggers),
        ("environment", flt.environments),
    ):
        if values is None or not values:
            continue
        if name == "environment":
            share = _ENVIRONMENT_PRIOR * len(values)
        else:
            share = sum(PRIORS[name].get(v, _DEFAULT_PRIOR) for v in values)
        if share < _DRIVE_BELOW and (best is None or share < best[0]):
            best = (share, name, sorted(values))
    return None if best is None else (best[1], best[2])


def _order(columns: Sequence[str], descending: bool) -> str:
    direction = " DESC" if descending else ""
    return ", ".join(f"{c}{direction}" for c in columns)


def _seek(where: _Where, columns: Sequence[str], key: Sequence[object], descending: bool) -> None:
    """Rows strictly after `key` in the order of `columns`: a row value, led by a bound."""
    op = "<" if descending else ">"
    where.likely(f"{columns[0]} {op}= ?", key[0])
    where.likely(f"({', '.join(columns)}) {op} ({', '.join('?' * len(key))})", *key)


def segment_statement(
    account_id: str,
    flt: RunFilter,
    sort: RunSort,
    segment: int,
    after: Position | None,
    limit: int,
    *,
    select: str = COLUMNS,
) -> Statement | None:
    """The SQL for one segment of a page; None when the filters leave it empty."""
    field_ = sort.field
    column = SORT_COLUMNS[field_]
    tie = ["created_at_us", "seq"]
    arms: list[tuple[str, _Where]] = []
    if field_ is SortField.CREATED_AT:
        order = tie
        driver = None if flt.job is not None else choose_driver(flt)
        if flt.job is not None:
            arms.append(("runs_job_created", filter_terms(account_id, flt)))
        elif driver is not None:
            name, values = driver
            col, index = DRIVERS[name]
            for value in values:
                where = filter_terms(account_id, flt, skip=name)
                where.add(f"{col} = ?", value)
                arms.append((index, where))
        else:
            arms.append(("runs_created", filter_terms(account_id, flt)))
    elif field_ is SortField.STATUS:
        status = sort.status_of_segment(segment)
        if flt.statuses is not None and status.value not in flt.statuses:
            return None
        where = filter_terms(account_id, flt, skip="status")
        where.add("status = ?", status.value)
        arms.append((SORT_INDEXES[field_], where))
        order = tie
    else:
        own = next((n for n, c in INTERVAL_COLUMNS.items() if c == column), None)
        if segment == 1 and own is not None and not getattr(flt, own).is_open:
            return None  # an unset instant is in no interval
        where = filter_terms(account_id, flt)
        if field_.nullable:
            where.add(f"{column} IS {'NOT ' if segment == 0 else ''}NULL")
        arms.append((SORT_INDEXES[field_], where))
        order = [column, *tie] if segment == 0 else tie
    if after is not None and after.segment == segment:
        key: list[object] = [] if after.value is None else [after.value]
        key += [after.created_at_us, after.seq]
        for _, where in arms:
            _seek(where, order, key, sort.descending)
    parts = [
        f"SELECT {select} FROM runs INDEXED BY {index} WHERE {' AND '.join(where.terms)}"
        for index, where in arms
    ]
    params = tuple(p for _, where in arms for p in where.params)
    sql = " UNION ALL ".join(parts) + f" ORDER BY {_order(order, sort.descending)} LIMIT ?"
    return Statement(sql, (*params, limit), arms[0][0])


def page_rows(
    conn: sqlite3.Connection,
    account_id: str,
    flt: RunFilter,
    sort: RunSort,
    after: Position | None,
    limit: int,
) -> Iterator[sqlite3.Row]:
    """Up to `limit` runs after `after` in `sort`, segment by segment, read as iterated."""
    left = limit
    first = 0 if after is None else after.segment
    for segment in range(first, sort.segment_count):
        statement = segment_statement(account_id, flt, sort, segment, after, left)
        if statement is None:
            continue
        for row in conn.execute(statement.sql, statement.params):
            yield row
            left -= 1
        if left <= 0:
            return


def position_of(sort: RunSort, row: sqlite3.Row) -> Position:
    return position(sort, keys_of(row))
