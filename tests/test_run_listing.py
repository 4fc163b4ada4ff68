"""Every filter and sort is served by an index: EXPLAIN QUERY PLAN of each statement.

A later change to the SQL, the indexes or SQLite cannot silently turn a page
into a scan of `runs` or a sort of everything it matched: each statement is
pinned with INDEXED BY, must SEARCH (a seek on the index's leading
columns, never a full SCAN of runs), and must not build a temp b-tree.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from jobsd.intervals import Interval
from jobsd.run_filters import RunFilter
from jobsd.run_order import SORT_CHOICES, Position, RunSort, parse_sort
from jobsd.store import schema
from jobsd.store.last_runs import NEXT_ENVIRONMENT, NEXT_JOB, newest_statement
from jobsd.store.run_listing import choose_driver, segment_statement
from jobsd.store.run_stats import MINUTE_US

SOME = Interval(1_000, 2_000_000)


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    c = sqlite3.connect(tmp_path / "db", isolation_level=None)
    schema.configure(c)
    schema.migrate(c)
    return c


def plan(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> list[str]:
    return [str(r[3]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


def assert_served(lines: list[str], index: str) -> None:
    searches = [line for line in lines if line.startswith(("SEARCH", "SCAN"))]
    assert searches, lines
    for line in searches:
        assert line.startswith("SEARCH runs USING"), lines
        assert f"INDEX {index} (account_id=?" in line, lines
    assert not any("TEMP B-TREE" in line for line in lines), lines


FILTERS = {
    "none": RunFilter(),
    "job": RunFilter(job="nightly"),
    "status": RunFilter(statuses=frozenset({"FAILED"})),
    "statuses": RunFilter(statuses=frozenset({"FAILED", "CANCELED"})),
    "common status": RunFilter(statuses=frozenset({"SUCCEEDED", "FAILED"})),
    "trigger": RunFilter(triggers=frozenset({"MANUAL"})),
    "triggers": RunFilter(triggers=frozenset({"RERUN", "RETRY"})),
    "environment": RunFilter(environments=frozenset({"staging"})),
    "created_at": RunFilter(created_at=SOME),
    "started_at": RunFilter(started_at=SOME),
    "finished_at": RunFilter(finished_at=SOME),
    "scheduled_for": RunFilter(scheduled_for=SOME),
    "everything": RunFilter(
        job="nightly",
        statuses=frozenset({"FAILED"}),
        triggers=frozenset({"SCHEDULE"}),
        environments=frozenset({"production", "staging"}),
        created_at=SOME,
        started_at=SOME,
        finished_at=SOME,
        scheduled_for=SOME,
    ),
}
EXPECTED_DEFAULT = {
    "none": "runs_created",
    "job": "runs_job_created",
    "status": "runs_status_created",
    "statuses": "runs_status_created",
    "common status": "runs_created",
    "trigger": "runs_trigger_created",
    "triggers": "runs_trigger_created",
    "environment": "runs_created",
    "created_at": "runs_created",
    "started_at": "runs_created",
    "finished_at": "runs_created",
    "scheduled_for": "runs_created",
    "everything": "runs_job_created",
}


def _after(sort: RunSort, segment: int) -> Position:
    value: int | str | None = None
    if sort.field.value == "job":
        value = "nightly"
    elif sort.field.nullable and segment == 0:
        value = 5
    return Position(segment, value, 7, 9)


@pytest.mark.parametrize("name", sorted(FILTERS))
@pytest.mark.parametrize("sort_text", SORT_CHOICES)
@pytest.mark.parametrize("deep", [False, True])
def test_every_filter_and_sort_is_a_seek(
    conn: sqlite3.Connection, name: str, sort_text: str, deep: bool
) -> None:
    sort, flt = parse_sort(sort_text), FILTERS[name]
    for segment in range(sort.segment_count):
        after = _after(sort, segment) if deep else None
        statement = segment_statement("acme", flt, sort, segment, after, 51)
        if statement is None:
            continue
        assert_served(plan(conn, statement.sql, statement.params), statement.index)
        if sort_text == "-created_at":
            assert statement.index == EXPECTED_DEFAULT[name]


def test_the_default_sort_seeks_on_what_filters_lead(conn: sqlite3.Connection) -> None:
    """The equality and the created_at range are part of the seek, not checks row by row."""
    sort = parse_sort("-created_at")
    flt = RunFilter(statuses=frozenset({"FAILED"}), created_at=SOME)
    statement = segment_statement("acme", flt, sort, 0, Position(0, None, 7, 9), 51)
    assert statement is not None
    (line,) = plan(conn, statement.sql, statement.params)
    assert "(account_id=? AND status=? AND created_at_us>? AND created_at_us<?)" in line
    merged = segment_statement("acme", FILTERS["statuses"], sort, 0, None, 5)
    assert merged is not None
    assert plan(conn, merged.sql, merged.params)[0] == "MERGE (UNION ALL)"
    started = parse_sort("started_at")
    statement = segment_statement("acme", RunFilter(started_at=SOME), started, 0, None, 51)
    assert statement is not None
    (line,) = plan(conn, statement.sql, statement.params)
    assert "(account_id=? AND started_at_us>? AND started_at_us<?)" in line


def test_drivers() -> None:
    assert choose_driver(RunFilter()) is None
    assert choose_driver(FILTERS["status"]) == ("status", ["FAILED"])
    assert choose_driver(FILTERS["common status"]) is None
    both = RunFilter(statuses=frozenset({"FAILED"}), triggers=frozenset({"RERUN"}))
    assert choose_driver(both) == ("trigger", ["RERUN"])


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_last_run_only_seeks_per_group(conn: sqlite3.Connection, name: str) -> None:
    statement = newest_statement("acme", FILTERS[name])
    if statement is None:
        return
    sql, params = statement
    (line,) = plan(conn, sql, (*params, "nightly", "production"))
    assert line.startswith("SEARCH runs USING INDEX runs_last (account_id=? AND job_slug=? "), line
    assert "environment=?" in line
    steps = [
        plan(conn, NEXT_ENVIRONMENT, ("acme", "nightly", "production")),
        plan(conn, NEXT_JOB, ("acme", "nightly")),
    ]
    assert steps == [
        ["SEARCH runs USING INDEX runs_last (account_id=? AND job_slug=? AND environment>?)"],
        ["SEARCH runs USING INDEX runs_last (account_id=? AND job_slug>?)"],
    ]


def test_stats_read_counts_and_seek_runs(conn: sqlite3.Connection) -> None:
    counts = plan(
        conn,
        "SELECT sum(pending) FROM run_counts WHERE account_id = ? AND minute >= ? "
        "AND minute < ? AND environment IN (?)",
        ("acme", 1, 2, "production"),
    )
    assert counts == [
        "SEARCH run_counts USING PRIMARY KEY (account_id=? AND minute>? AND minute<?)"
    ]
    edge = plan(
        conn,
        "SELECT created_at_us, status FROM runs INDEXED BY runs_created "
        "WHERE account_id = ? AND created_at_us >= ? AND created_at_us < ?",
        ("acme", 0, MINUTE_US),
    )
    assert edge == [
        "SEARCH runs USING INDEX runs_created "
        "(account_id=? AND created_at_us>? AND created_at_us<?)"
    ]


def test_the_count_tables_follow_every_change(conn: sqlite3.Connection) -> None:
    """Insert, status change, a move to another row (never done today), delete."""
    conn.execute(
        "INSERT INTO jobs (id, account_id, slug, name, name_key, kind, schedule, method, url, "
        "success_status, tls_verify, timeout_s, created_at_us, updated_at_us) VALUES "
        "(1, 'acme', 'j', 'j', 'j', 'manual', NULL, 'GET', 'https://x', '2xx', 1, 5, 0, 0)"
    )
    hour = 3_600_000_000
    conn.execute(
        "INSERT INTO runs (id, account_id, job_id, job_slug, environment, trigger, status, "
        "created_at_us) VALUES ('r', 'acme', 1, 'j', 'production', 'MANUAL', 'PENDING', ?)",
        (hour + 5,),
    )

    def rows() -> list[tuple[object, ...]]:
        return [
            tuple(r)
            for table in ("run_counts", "run_counts_hourly")
            for r in conn.execute(f"SELECT * FROM {table}")
        ]

    assert rows() == [
        ("acme", 60, "production", 1, 0, 0, 0, 0),
        ("acme", 1, "production", 1, 0, 0, 0, 0),
    ]
    conn.execute("UPDATE runs SET status = 'RUNNING', started_at_us = created_at_us")
    assert rows() == [
        ("acme", 60, "production", 0, 1, 0, 0, 0),
        ("acme", 1, "production", 0, 1, 0, 0, 0),
    ]
    conn.execute("UPDATE runs SET environment = 'staging', created_at_us = ?", (2 * hour,))
    assert rows() == [
        ("acme", 120, "staging", 0, 1, 0, 0, 0),
        ("acme", 2, "staging", 0, 1, 0, 0, 0),
    ]
    conn.execute("DELETE FROM runs")
    assert rows() == []
