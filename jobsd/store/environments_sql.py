"""Environment rows: one per (job, environment), its switch, next fire and overrides.

Only this module knows the `job_environments` columns. The overrides that
SQL must read (`schedule`, `timezone`, `retry_policy`: the scheduler's
due query and the policy checks) are columns; the request leaves are one
JSON object; header overrides are sealed (`jobsd.store.sealed_headers`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from jobsd.job_model import JobKind, JobSpec, Overlay
from jobsd.store.keyring import Sealer
from jobsd.store.sealed_headers import open_headers, seal_headers

ENV_COLUMNS = (
    "job_id, environment, enabled, next_run_at_us, schedule, timezone, retry_policy, overlay, "
    "headers, paused_reason"
)

# The request leaves an overlay may hold, as stored in its JSON object.
_LEAVES = ("url", "method", "timeout_s", "body", "success_status", "tls_verify", "ca_cert")


_NO_OVERLAY = Overlay()  # frozen: one instance serves every environment that overrides nothing


def to_overlay(
    env: sqlite3.Row, account_id: str, keyring: Sealer, *, strict: bool = False
) -> Overlay:
    if not overrides_request(env) and (
        env["schedule"] is None and env["timezone"] is None and env["retry_policy"] is None
    ):
        return _NO_OVERLAY  # most environments: nothing to parse or open (a read per GET)
    leaves = json.loads(env["overlay"])
    headers = open_headers(
        keyring,
        account_id,
        env["job_id"],
        env["headers"],
        environment=env["environment"],
        strict=strict,
    )
    return Overlay(
        **{leaf: leaves.get(leaf) for leaf in _LEAVES},
        schedule=env["schedule"],
        timezone=env["timezone"],
        retry_policy=env["retry_policy"],
        headers=headers,
    )


def overrides_request(env: sqlite3.Row) -> bool:
    """Whether the environment changes the request at all (a leaf or a header)."""
    return bool(env["overlay"] != "{}" or env["headers"] != "[]")


def env_rows(conn: sqlite3.Connection, pk: int) -> list[sqlite3.Row]:
    return list(
        conn.execute(
            f"SELECT {ENV_COLUMNS} FROM job_environments WHERE job_id = ? ORDER BY environment",
            (pk,),
        )
    )


def env_row(conn: sqlite3.Connection, pk: int, environment: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        f"SELECT {ENV_COLUMNS} FROM job_environments WHERE job_id = ? AND environment = ?",
        (pk, environment),
    ).fetchone()
    return row


def put_environment(
    conn: sqlite3.Connection,
    keyring: Sealer,
    account_id: str,
    pk: int,
    environment: str,
    *,
    enabled: bool,
    next_run_at_us: int | None,
    overlay: Overlay,
    paused_reason: str | None = None,
) -> None:
    """Insert or replace an environment row, its overlay sealed anew.

    `paused_reason` (why it was auto-paused) is kept only while it stays disabled.
    """
    leaves = {
        leaf: getattr(overlay, leaf) for leaf in _LEAVES if getattr(overlay, leaf) is not None
    }
    conn.execute(
        f"INSERT OR REPLACE INTO job_environments ({ENV_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            pk,
            environment,
            int(enabled),
            next_run_at_us,
            overlay.schedule,
            overlay.timezone,
            overlay.retry_policy,
            json.dumps(leaves),
            seal_headers(keyring, account_id, pk, overlay.headers, environment),
            None if enabled else paused_reason,
        ),
    )


def set_environment_state(
    conn: sqlite3.Connection,
    pk: int,
    environment: str,
    *,
    enabled: bool,
    next_run_at_us: int | None,
    keep_cadence: bool,
) -> None:
    """Switch and next fire only: the stored overlay (its sealed values) stays.

    `keep_cadence` False drops the `schedule`/`timezone` overrides, which
    apply to recurring jobs only. Enabling it clears its `paused_reason`.
    """
    cadence = "" if keep_cadence else ", schedule = NULL, timezone = NULL"
    conn.execute(
        f"UPDATE job_environments SET enabled = ?, next_run_at_us = ?{cadence}, "
        "paused_reason = CASE WHEN ? THEN NULL ELSE paused_reason END "
        "WHERE job_id = ? AND environment = ?",
        (int(enabled), next_run_at_us, int(enabled), pk, environment),
    )


def delete_environment(conn: sqlite3.Connection, pk: int, environment: str) -> None:
    """The entry and its alert state (`jobsd.store.outbox`): a new entry counts afresh."""
    for table in ("job_environments", "alert_state"):
        conn.execute(f"DELETE FROM {table} WHERE job_id = ? AND environment = ?", (pk, environment))


def effective_cadence(spec: JobSpec, overlay: Overlay) -> tuple[str | None, str | None]:
    """(schedule, timezone) an environment fires on."""
    if spec.kind is not JobKind.RECURRING:
        return spec.schedule, None
    schedule = overlay.schedule if overlay.schedule is not None else spec.schedule
    timezone = overlay.timezone if overlay.timezone is not None else spec.timezone
    return schedule, timezone


DueRow = tuple[int, str, str | None, str | None, int]


def due_before(conn: sqlite3.Connection, until_us: int, limit: int) -> list[DueRow]:
    """(pk, environment, schedule, timezone, next_run_at_us) due by `until_us`, soonest first.

    Schedule and time zone are the environment's effective ones: its
    override, else the job's.
    """
    rows = conn.execute(
        "SELECT e.job_id, e.environment, coalesce(e.schedule, j.schedule), "
        "coalesce(e.timezone, j.timezone), e.next_run_at_us "
        "FROM job_environments AS e JOIN jobs AS j ON j.id = e.job_id "
        "WHERE e.next_run_at_us <= ? ORDER BY e.next_run_at_us LIMIT ?",
        (until_us, limit),
    ).fetchall()
    return [(int(r[0]), str(r[1]), r[2], r[3], int(r[4])) for r in rows]


def due_of(conn: sqlite3.Connection, pk: int, environment: str) -> DueRow | None:
    """`due_before`'s row for one (job, environment), if it is enabled with a next fire:
    what a firing that found it no longer due at the scheduler's instant should follow."""
    row = conn.execute(
        "SELECT e.job_id, e.environment, coalesce(e.schedule, j.schedule), "
        "coalesce(e.timezone, j.timezone), e.next_run_at_us "
        "FROM job_environments AS e JOIN jobs AS j ON j.id = e.job_id "
        "WHERE e.job_id = ? AND e.environment = ? AND e.enabled = 1 "
        "AND e.next_run_at_us IS NOT NULL",
        (pk, environment),
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]), row[2], row[3], int(row[4]))


def stored_environments(conn: sqlite3.Connection) -> list[str]:
    """Every environment some row is in, one seek each (`job_environments_by_environment`)."""
    found: list[str] = []
    (env,) = conn.execute("SELECT min(environment) FROM job_environments").fetchone()
    while env is not None:
        found.append(str(env))
        (env,) = conn.execute(
            "SELECT min(environment) FROM job_environments WHERE environment > ?", (env,)
        ).fetchone()
    return found


def make_dormant(
    conn: sqlite3.Connection, environment: str, accounts: Sequence[str], *, after: int, limit: int
) -> list[int]:
    """Clear `next_run_at_us` of up to `limit` of `environment`'s firing rows of
    `accounts`' jobs, in job order from past job `after`: their job pks.

    A keyset walk of `job_environments_by_environment` (environment, job_id),
    so a batch reads from where the last one stopped, never from the start."""
    pks = [
        int(r[0])
        for r in conn.execute(
            "SELECT e.job_id FROM job_environments AS e "
            "INDEXED BY job_environments_by_environment "
            "WHERE e.environment = ? AND e.job_id > ? AND e.next_run_at_us IS NOT NULL "
            "AND (SELECT account_id FROM jobs WHERE id = e.job_id) "
            "IN (SELECT value FROM json_each(?)) ORDER BY e.job_id LIMIT ?",
            (environment, after, json.dumps(list(accounts)), limit),
        )
    ]
    conn.executemany(
        "UPDATE job_environments SET next_run_at_us = NULL WHERE job_id = ? AND environment = ?",
        ((pk, environment) for pk in pks),
    )
    return pks


def dormant_enabled(
    conn: sqlite3.Connection, account_id: str, environment: str, *, after: int, limit: int
) -> list[int]:
    """Up to `limit` enabled rows of the account's recurring and one-off jobs in
    `environment` that have no next fire, in job order from past job `after`: their
    job pks. Read through `job_environments_dormant` (environment, job_id), which
    holds these and the enabled rows of manual jobs, never the firing ones."""
    rows = conn.execute(
        "SELECT e.job_id FROM job_environments AS e "
        "INDEXED BY job_environments_dormant JOIN jobs AS j ON j.id = e.job_id "
        "WHERE e.enabled = 1 AND e.next_run_at_us IS NULL AND e.environment = ? "
        "AND e.job_id > ? AND j.account_id = ? AND j.kind != 'manual' "
        "ORDER BY e.job_id LIMIT ?",
        (environment, after, account_id, limit),
    ).fetchall()
    return [int(r[0]) for r in rows]
