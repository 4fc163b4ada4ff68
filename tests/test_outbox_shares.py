"""Accounts with dead alert receivers cannot keep another account's alerts waiting.

The alert actor sends at most 8 alerts at once and 2 per account; each try
at a receiver that hangs holds its place for the alert timeout (10 s). The
outbox handed a freed place to the account with the oldest due alert, so
four accounts with backlogs (up to 1,000 alerts each) older than a fifth
account's alert took every place that freed until their backlogs were
tried: 4,000 tries x 10 s / 8 places, ~83 minutes. Now an account with
fewer alerts in flight comes first, as the dispatcher serves runs.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from jobsd.clock import to_us
from tests.test_outbox import Told, opened

T0_US = to_us(datetime(2026, 6, 5, tzinfo=UTC))


def _alert(conn: sqlite3.Connection, account: str, job_id: int, due_us: int) -> None:
    conn.execute(
        "INSERT INTO alert_outbox (id, account_id, job_id, environment, type, body,"
        " created_at_us, due_us, expires_at_us) VALUES (?, ?, ?, 'production', 'job.failed',"
        " '{}', ?, ?, ?)",
        (f"alert-{account}-{job_id}", account, job_id, due_us, due_us, due_us + 10**12),
    )


async def test_a_freed_place_goes_to_the_account_with_the_fewest_in_flight(
    tmp_path: Path,
) -> None:
    async with opened(tmp_path, Told()) as store:
        colluders = [f"c{n}" for n in range(4)]

        def fill(conn: sqlite3.Connection) -> None:
            for n, account in enumerate(colluders):
                for j in range(50):  # a backlog, all older than the fifth's alert
                    _alert(conn, account, 1000 * n + j, T0_US + j)
            _alert(conn, "fifth", 99_999, T0_US + 10_000)

        await store.engine.write(fill)
        now = T0_US + 20_000
        # Every place taken but one, which c3 just freed.
        busy = {"c0": 2, "c1": 2, "c2": 2, "c3": 1}
        (taken,) = (await store.outbox.take(now, 1, busy, 2)).alerts
        assert taken.account_id == "fifth"
        # Among equals, the oldest due first, as before.
        busy = {"c0": 2, "c1": 2, "c2": 1, "c3": 1, "fifth": 1}
        (taken,) = (await store.outbox.take(now, 1, busy, 2)).alerts
        assert taken.account_id == "c2"


async def test_an_account_gets_no_more_than_its_share_counting_those_in_flight(
    tmp_path: Path,
) -> None:
    async with opened(tmp_path, Told()) as store:

        def fill(conn: sqlite3.Connection) -> None:
            for j in range(4):
                _alert(conn, "acme", j, T0_US + j)

        await store.engine.write(fill)
        # One of acme's already in flight, 2 per account: room for one more, not two.
        taken = (await store.outbox.take(T0_US + 10, 8, {"acme": 1}, 2)).alerts
        assert [a.id for a in taken] == ["alert-acme-0"]


async def test_an_older_alert_holds_back_only_its_own_environment(tmp_path: Path) -> None:
    """Oldest first per job and environment: staging's alert of a job does not wait
    for production's of the same job, still in flight."""
    async with opened(tmp_path, Told()) as store:

        def fill(conn: sqlite3.Connection) -> None:
            _alert(conn, "acme", 7, T0_US)
            conn.execute(
                "INSERT INTO alert_outbox (id, account_id, job_id, environment, type, body,"
                " created_at_us, due_us, expires_at_us) VALUES ('staging-7', 'acme', 7,"
                " 'staging', 'job.failed', '{}', ?, ?, ?)",
                (T0_US + 1, T0_US + 1, T0_US + 10**12),
            )

        await store.engine.write(fill)
        (first,) = (await store.outbox.take(T0_US + 10, 1, {}, 2)).alerts
        assert first.id == "alert-acme-7"
        (second,) = (await store.outbox.take(T0_US + 10, 1, {"acme": 1}, 2)).alerts
        assert second.id == "staging-7"


async def test_an_alert_not_yet_due_is_not_taken_beside_a_due_one(tmp_path: Path) -> None:
    async with opened(tmp_path, Told()) as store:

        def fill(conn: sqlite3.Connection) -> None:
            _alert(conn, "acme", 1, T0_US)
            _alert(conn, "acme", 2, T0_US + 500_000)  # due half a second later

        await store.engine.write(fill)
        taken = (await store.outbox.take(T0_US, 8, {}, 2)).alerts
        assert [a.id for a in taken] == ["alert-acme-1"]
