"""`pending_counts` (`jobsd.store.pending_counts`): each account's queued runs,
kept by triggers, equal to counting them after any sequence of changes, and
what `max_pending_runs` is checked against in O(1); `held_counts` likewise
for the retries held for their instant (`MAX_HELD_RETRIES`)."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from jobsd.store import schema
from jobsd.store.pending_counts import held_count, pending_count
from jobsd.store.queue_sql import QUEUED

HELD = "status = 'PENDING' AND held_until_us IS NOT NULL"

ACCOUNTS = ("acme", "other")
STATUSES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED")


def migrated(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    schema.configure(conn)
    schema.migrate(conn)
    for pk, account in enumerate(ACCOUNTS, 1):
        conn.execute(
            "INSERT INTO jobs (id, account_id, slug, name, name_key, kind, schedule, method, "
            "url, success_status, tls_verify, timeout_s, created_at_us, updated_at_us) VALUES "
            "(?, ?, 'j', 'j', 'j', 'manual', NULL, 'GET', 'https://x', '2xx', 1, 5, 0, 0)",
            (pk, account),
        )
    return conn


def counted(conn: sqlite3.Connection, which: str = QUEUED) -> dict[str, int]:
    return {
        str(account): int(n)
        for account, n in conn.execute(
            f"SELECT account_id, count(*) FROM runs WHERE {which} GROUP BY account_id"
        )
    }


def kept(conn: sqlite3.Connection, count: object = pending_count) -> dict[str, int]:
    return {account: n for account in ACCOUNTS if (n := count(conn, account))}  # type: ignore[operator]


def insert(conn: sqlite3.Connection, n: int, account: int, held: bool) -> None:
    run_id = f"r{n}"
    if held:  # a retry held for its due instant
        conn.execute(
            "INSERT INTO runs (id, account_id, job_id, job_slug, environment, trigger, status, "
            "created_at_us, scheduled_for_us, retry_of, retry_attempt, retried_run, "
            "held_until_us) VALUES (?, ?, ?, 'j', 'production', 'RETRY', 'PENDING', 0, 5, "
            "?, 1, ?, 5)",
            (run_id, ACCOUNTS[account], account + 1, f"first{n}", f"first{n}"),
        )
    else:
        conn.execute(
            "INSERT INTO runs (id, account_id, job_id, job_slug, environment, trigger, status, "
            "created_at_us) VALUES (?, ?, ?, 'j', 'production', 'MANUAL', 'PENDING', 0)",
            (run_id, ACCOUNTS[account], account + 1),
        )


def set_status(conn: sqlite3.Connection, run: int, status: str) -> None:
    """A status change as the store makes them; leaving PENDING ends any hold."""
    ended = status not in ("PENDING", "RUNNING")
    conn.execute(
        "UPDATE runs SET status = ?, finished_at_us = ?, failure_reason = ?, "
        "held_until_us = CASE WHEN ? = 'PENDING' THEN held_until_us END WHERE seq = ?",
        (status, 1 if ended else None, "TIMEOUT" if status == "FAILED" else None, status, run),
    )


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), st.integers(0, 1), st.booleans()),
        st.tuples(st.just("status"), st.integers(1, 12), st.sampled_from(STATUSES)),
        st.tuples(st.just("release"), st.integers(1, 12), st.none()),
        st.tuples(st.just("delete"), st.integers(1, 12), st.none()),
        st.tuples(st.just("rollback"), st.integers(0, 1), st.booleans()),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_the_kept_count_equals_counting_after_any_changes(
    ops: list[tuple[str, int, object]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        conn = migrated(Path(tmp) / "db")
        for n, (op, which, arg) in enumerate(ops, 1):
            if op == "insert":
                insert(conn, n, which, bool(arg))
            elif op == "status":
                set_status(conn, which, str(arg))
            elif op == "release":
                conn.execute("UPDATE runs SET held_until_us = NULL WHERE seq = ?", (which,))
            elif op == "delete":
                conn.execute("DELETE FROM runs WHERE seq = ?", (which,))
            else:  # a write rolled back leaves the count as it was
                conn.execute("BEGIN")
                insert(conn, n, which, bool(arg))
                conn.execute("ROLLBACK")
            assert kept(conn) == counted(conn), (n, op)
            assert kept(conn, held_count) == counted(conn, HELD), (n, op)
        conn.close()


def test_migration_counts_what_is_already_queued(tmp_path: Path) -> None:
    conn = migrated(tmp_path / "db")
    for n in range(1, 6):
        insert(conn, n, n % 2, held=n == 5)
    set_status(conn, 1, "RUNNING")
    for name in ("insert", "delete", "update"):  # as before migration 10
        conn.execute(f"DROP TRIGGER pending_counts_{name}")
        conn.execute(f"DROP TRIGGER job_counts_{name}")  # migration 11's, after it
        conn.execute(f"DROP TRIGGER held_counts_{name}")  # migration 12's
    conn.execute("DROP TABLE pending_counts")
    conn.execute("DROP TABLE job_counts")
    conn.execute("DROP TABLE held_counts")
    conn.execute("DELETE FROM schema_version")
    conn.execute("INSERT INTO schema_version (version) VALUES (9)")
    schema.migrate(conn)
    assert kept(conn) == counted(conn) == {"acme": 2, "other": 1}
    assert kept(conn, held_count) == counted(conn, HELD) == {"other": 1}


def test_the_backlog_check_reads_one_row(tmp_path: Path) -> None:
    conn = migrated(tmp_path / "db")
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT n FROM pending_counts WHERE account_id = ?", ("acme",)
    ).fetchall()
    assert [str(row[3]) for row in plan] == [
        "SEARCH pending_counts USING PRIMARY KEY (account_id=?)"
    ]
