"""Job listings and counts: which live jobs a query names, in what order.

The WHERE of an account's live jobs narrowed as `GET /jobs` asks (kinds,
enabled in an environment, an upcoming fire in some of the caller's
environments, a case-folded name substring), and the counts the plan's
job limit is checked against.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence

from jobsd.job_model import JobCounting, JobKind
from jobsd.store.jobs_sql import COLUMNS


def count_active(conn: sqlite3.Connection, account_id: str, counting: JobCounting) -> int:
    """The jobs `counting` counts against the plan's limit, now."""
    if counting.enabled_in is None:
        sql = (
            "SELECT count(*) FROM jobs WHERE account_id = ? AND deleted_at_us IS NULL "
            "AND kind != 'one_off'"
        )
        return int(conn.execute(sql, (account_id,)).fetchone()[0])
    sql = (
        "SELECT count(*) FROM jobs AS j JOIN job_environments AS e ON e.job_id = j.id "
        "WHERE j.account_id = ? AND j.deleted_at_us IS NULL AND e.environment = ? "
        "AND e.enabled = 1"
    )
    return int(conn.execute(sql, (account_id, counting.enabled_in)).fetchone()[0])


SORTS: Mapping[str, str] = {
    "-created_at": "created_at_us DESC, slug ASC",
    "created_at": "created_at_us ASC, slug ASC",
    "name": "name_key ASC, name ASC, slug ASC",
    "-name": "name_key DESC, name DESC, slug ASC",
    "updated_at": "updated_at_us ASC, slug ASC",
    "-updated_at": "updated_at_us DESC, slug ASC",
}


def _live(
    account_id: str,
    *,
    kinds: Iterable[JobKind],
    enabled_in: tuple[str, bool] | None,
    scheduled_in: tuple[Sequence[str], bool] | None,
    name_contains: str | None,
) -> tuple[str, list[object]]:
    """The WHERE of an account's live jobs, narrowed as a listing asks."""
    kind_values = sorted(k.value for k in kinds)
    where = (
        "account_id = ? AND deleted_at_us IS NULL "
        f"AND kind IN ({', '.join('?' * len(kind_values))})"
    )
    params: list[object] = [account_id, *kind_values]
    if enabled_in is not None:
        environment, enabled = enabled_in
        test = "EXISTS" if enabled else "NOT EXISTS"
        where += (
            f" AND {test} (SELECT 1 FROM job_environments AS e WHERE e.job_id = jobs.id "
            "AND e.environment = ? AND e.enabled = 1)"
        )
        params.append(environment)
    if scheduled_in is not None:
        environments, scheduled = scheduled_in
        test = "EXISTS" if scheduled else "NOT EXISTS"
        marks = ", ".join("?" * len(environments))
        where += (
            f" AND {test} (SELECT 1 FROM job_environments AS e WHERE e.job_id = jobs.id "
            f"AND e.environment IN ({marks}) AND e.next_run_at_us IS NOT NULL)"
        )
        params.extend(environments)
    if name_contains is not None:
        where += " AND instr(name_key, ?) > 0"
        params.append(name_contains.casefold())
    return where, params


def list_page(
    conn: sqlite3.Connection,
    account_id: str,
    *,
    sort: str,
    offset: int,
    limit: int,
    **filters: object,
) -> sqlite3.Cursor:
    """The page's rows, read as the cursor is iterated (a page may be a gigabyte)."""
    where, params = _live(account_id, **filters)  # type: ignore[arg-type]
    return conn.execute(
        f"SELECT {COLUMNS} FROM jobs WHERE {where} ORDER BY {SORTS[sort]} LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )


def count_live(conn: sqlite3.Connection, account_id: str, **filters: object) -> int:
    where, params = _live(account_id, **filters)  # type: ignore[arg-type]
    return int(conn.execute(f"SELECT count(*) FROM jobs WHERE {where}", params).fetchone()[0])
