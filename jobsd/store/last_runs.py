"""`last_run_only`: the newest terminal run of each (job, environment) that the filters keep.

A group is a job (by its id, the slug the API shows) and an environment.
The groups come from `runs_last` (terminal runs only, by job, environment,
created_at, seq, with the status) one seek at a time, a loose index scan
(`groups`):
a million runs in 600 groups cost 600 seeks, not a million rows. Each
group's newest matching run is one more seek, to the group's newest end,
walking down until a run passes the filters (the status is in the index,
so a status filter is checked without reading the row).

The collapsed rows (one per group, a few hundred) are then ordered in
memory with `jobsd.run_order` and cut at the cursor, which therefore works
exactly as for a plain listing. Work per page grows with the number of
groups, not with the number of runs.

"Newest" is the default order (created_at, then insertion): the last run
made, not the last to finish.
"""

from __future__ import annotations

import sqlite3

from jobsd.run_filters import RunFilter
from jobsd.run_order import Position, RunSort, compare, position, sort_positions
from jobsd.runs import TERMINAL
from jobsd.store.run_listing import filter_terms, keys_of
from jobsd.store.runs_sql import COLUMNS

_KEYS = "seq, created_at_us, started_at_us, finished_at_us, scheduled_for_us, status, job_slug"


GROUPS = "SELECT job_slug, environment FROM runs INDEXED BY runs_last WHERE " + (
    "account_id = ? AND finished_at_us IS NOT NULL"
)
NEXT_ENVIRONMENT = f"{GROUPS} AND job_slug = ? AND environment > ? ORDER BY environment LIMIT 1"
NEXT_JOB = f"{GROUPS} AND job_slug > ? ORDER BY job_slug, environment LIMIT 1"


def groups(conn: sqlite3.Connection, account_id: str, flt: RunFilter) -> list[tuple[str, str]]:
    """Every (job, environment) with a terminal run, narrowed by the job and environment filters.

    Each step is an exact seek: the next environment of the same job, else
    the first of the next job. (A row-value `(job, environment) > (?, ?)`
    reads the same, but SQLite seeks on the job alone and then steps
    through the rest of its runs: 5,000 a step in the benchmark.)
    """
    found: list[tuple[str, str]] = []
    if flt.job is not None:
        row = conn.execute(
            f"{GROUPS} AND job_slug = ? ORDER BY environment LIMIT 1", (account_id, flt.job)
        ).fetchone()
    else:
        row = conn.execute(f"{GROUPS} ORDER BY job_slug, environment LIMIT 1", (account_id,))
        row = row.fetchone()
    while row is not None:
        at = (str(row[0]), str(row[1]))
        if flt.environments is None or at[1] in flt.environments:
            found.append(at)
        row = conn.execute(NEXT_ENVIRONMENT, (account_id, *at)).fetchone()
        if row is None and flt.job is None:
            row = conn.execute(NEXT_JOB, (account_id, at[0])).fetchone()
    return found


def newest_statement(account_id: str, flt: RunFilter) -> tuple[str, list[object]] | None:
    """A group's newest terminal run that the filters keep; the group's two values go last."""
    if flt.statuses is not None and not flt.statuses & {s.value for s in TERMINAL}:
        return None
    where = filter_terms(account_id, flt)
    where.add("finished_at_us IS NOT NULL AND job_slug = ? AND environment = ?")
    sql = (
        f"SELECT {_KEYS} FROM runs INDEXED BY runs_last WHERE {' AND '.join(where.terms)} "
        "ORDER BY created_at_us DESC, seq DESC LIMIT 1"
    )
    return sql, where.params


def last_runs_page(
    conn: sqlite3.Connection,
    account_id: str,
    flt: RunFilter,
    sort: RunSort,
    after: Position | None,
    limit: int,
) -> list[sqlite3.Row]:
    statement = newest_statement(account_id, flt)
    if statement is None:
        return []
    sql, params = statement
    positions: dict[int, Position] = {}
    for group in groups(conn, account_id, flt):
        row = conn.execute(sql, (*params, *group)).fetchone()
        if row is not None:
            positions[int(row["seq"])] = position(sort, keys_of(row))
    ordered = sort_positions(sort, list(positions.values()))
    if after is not None:
        ordered = [p for p in ordered if compare(sort, after, p) < 0]
    chosen = [p.seq for p in ordered[:limit]]
    if not chosen:
        return []
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM runs WHERE seq IN ({', '.join('?' * len(chosen))})", chosen
    ).fetchall()
    by_seq = {int(r["seq"]): r for r in rows}
    return [by_seq[s] for s in chosen if s in by_seq]
