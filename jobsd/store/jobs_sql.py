"""Job rows: SQL, and the mapping from a job row and its environment rows to `Job`.

Functions here run on a store thread with a connection in hand; they are
the only code that knows the `jobs` columns. A job row is the base
definition; its environments are `job_environments` rows
(`jobsd.store.environments_sql`); listings and counts live in
`jobsd.store.listing_sql`. Header values are sealed on the way in and
opened on the way out (`jobsd.store.sealed_headers`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from types import MappingProxyType

from jobsd import errors
from jobsd.clock import from_us
from jobsd.job_model import HttpConfig, Job, JobEnvironment, JobKind, JobSpec, OverlapPolicy
from jobsd.store.environments_sql import ENV_COLUMNS, env_rows, to_overlay
from jobsd.store.keyring import Sealer
from jobsd.store.sealed_headers import open_headers, seal_headers

COLUMNS = (
    "id, account_id, slug, name, description, kind, schedule, timezone, retry_policy, method, "
    "url, headers, success_status, tls_verify, ca_cert, body, timeout_s, created_at_us, "
    "updated_at_us, deleted_at_us, version, overlap_policy"
)


def _opt_time(us: int | None) -> datetime | None:
    return None if us is None else from_us(us)


def to_config(
    row: sqlite3.Row, keyring: Sealer, *, strict: bool = False, reuse_scope: str | None = None
) -> HttpConfig:
    """The base request of a job row, its header values opened; `reuse_scope` for a run's."""
    return HttpConfig(
        url=row["url"],
        method=row["method"],
        headers=open_headers(keyring, row["account_id"], row["id"], row["headers"], strict=strict),
        success_status=row["success_status"],
        tls_verify=bool(row["tls_verify"]),
        ca_cert=row["ca_cert"],
        body=row["body"],
        timeout_s=row["timeout_s"],
        reuse_scope=reuse_scope,
    )


def to_spec(row: sqlite3.Row, keyring: Sealer, *, strict: bool = False) -> JobSpec:
    config = to_config(row, keyring, strict=strict)
    return JobSpec(
        slug=row["slug"],
        name=row["name"],
        description=row["description"],
        schedule=row["schedule"],
        config=config,
        kind=JobKind(row["kind"]),
        timezone=row["timezone"],
        retry_policy=row["retry_policy"],
        overlap_policy=OverlapPolicy(row["overlap_policy"]),
    )


def to_job(
    row: sqlite3.Row, envs: Iterable[sqlite3.Row], keyring: Sealer, *, strict: bool = False
) -> Job:
    environments = {
        env["environment"]: JobEnvironment(
            enabled=bool(env["enabled"]),
            next_run_at=_opt_time(env["next_run_at_us"]),
            overlay=to_overlay(env, row["account_id"], keyring, strict=strict),
            paused_reason=env["paused_reason"],
        )
        for env in envs
    }
    return Job(
        pk=row["id"],
        account_id=row["account_id"],
        spec=to_spec(row, keyring, strict=strict),
        created_at=from_us(row["created_at_us"]),
        updated_at=from_us(row["updated_at_us"]),
        deleted_at=_opt_time(row["deleted_at_us"]),
        version=row["version"],
        environments=MappingProxyType(environments),
    )


def live_row(conn: sqlite3.Connection, account_id: str, slug: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        f"SELECT {COLUMNS} FROM jobs WHERE account_id = ? AND slug = ? AND deleted_at_us IS NULL",
        (account_id, slug),
    ).fetchone()
    return row


def live_row_of(
    conn: sqlite3.Connection, account_id: str, slug: str, kinds: Collection[JobKind]
) -> sqlite3.Row:
    """The live job's row; 404 also when its kind is not among `kinds`: a version
    that cannot show a job (the seed, a manual one) may not act on it either, and
    a write checks it in its own transaction."""
    row = live_row(conn, account_id, slug)
    if row is None or JobKind(row["kind"]) not in kinds:
        raise errors.not_found(f"no job with id '{slug}'")
    return row


def row_by_pk(conn: sqlite3.Connection, pk: int) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        f"SELECT {COLUMNS} FROM jobs WHERE id = ?", (pk,)
    ).fetchone()
    return row


def job_by_pk(conn: sqlite3.Connection, pk: int, keyring: Sealer) -> Job:
    row = row_by_pk(conn, pk)
    assert row is not None
    return to_job(row, env_rows(conn, pk), keyring)


def jobs_of_rows(
    conn: sqlite3.Connection, rows: Sequence[sqlite3.Row], keyring: Sealer
) -> list[Job]:
    """Jobs for a page of rows, their environments read in one query."""
    by_job: dict[int, list[sqlite3.Row]] = {int(r["id"]): [] for r in rows}
    if by_job:
        marks = ", ".join("?" * len(by_job))
        for env in conn.execute(
            f"SELECT {ENV_COLUMNS} FROM job_environments WHERE job_id IN ({marks}) "
            "ORDER BY environment",
            list(by_job),
        ):
            by_job[int(env["job_id"])].append(env)
    return [to_job(r, by_job[int(r["id"])], keyring) for r in rows]


# -- writes -------------------------------------------------------------------------


def _writable(spec: JobSpec) -> dict[str, object]:
    """The base columns a create or a replace writes from the spec (headers apart)."""
    c = spec.config
    return {
        "name": spec.name,
        "name_key": spec.name.casefold(),
        "description": spec.description,
        "kind": spec.kind.value,
        "schedule": spec.schedule,
        "timezone": spec.timezone,
        "retry_policy": spec.retry_policy,
        "overlap_policy": spec.overlap_policy.value,
        "method": c.method,
        "url": c.url,
        "success_status": c.success_status,
        "tls_verify": int(c.tls_verify),
        "ca_cert": c.ca_cert,
        "body": c.body,
        "timeout_s": c.timeout_s,
    }


def insert(
    conn: sqlite3.Connection, keyring: Sealer, account_id: str, spec: JobSpec, *, now_us: int
) -> int:
    values = {
        "account_id": account_id,
        "slug": spec.slug,
        **_writable(spec),
        "created_at_us": now_us,
        "updated_at_us": now_us,
    }
    names = ", ".join(values)
    marks = ", ".join(f":{name}" for name in values)
    cur = conn.execute(f"INSERT INTO jobs ({names}) VALUES ({marks})", values)
    pk = cur.lastrowid
    assert pk is not None
    # Headers are sealed to the row's id, known only now; same transaction.
    conn.execute(
        "UPDATE jobs SET headers = ? WHERE id = ?",
        (seal_headers(keyring, account_id, pk, spec.config.headers), pk),
    )
    return pk


def replace(
    conn: sqlite3.Connection, keyring: Sealer, row: sqlite3.Row, spec: JobSpec, *, now_us: int
) -> None:
    pk = row["id"]
    values = {
        **_writable(spec),
        "headers": seal_headers(keyring, row["account_id"], pk, spec.config.headers),
        "updated_at_us": now_us,
    }
    assignments = ", ".join(f"{name} = :{name}" for name in values)
    cur = conn.execute(
        f"UPDATE jobs SET {assignments}, version = version + 1 "
        "WHERE id = :pk AND version = :version AND deleted_at_us IS NULL",
        {**values, "pk": pk, "version": row["version"]},
    )
    if cur.rowcount != 1:
        raise RuntimeError(f"job {pk} changed under its own writer")


def soft_delete(conn: sqlite3.Connection, pk: int, *, now_us: int) -> None:
    """A tombstone stays while runs name the job; its request is never sent again,
    so its large parts go now: no plan bound counts deleted jobs, and an account
    creating, running and deleting 5 MiB jobs kept each until retention."""
    conn.execute(
        "UPDATE jobs SET deleted_at_us = ?, updated_at_us = ?, "
        "headers = '[]', ca_cert = NULL, body = NULL, description = NULL "
        "WHERE id = ? AND deleted_at_us IS NULL",
        (now_us, now_us, pk),
    )
    conn.execute("DELETE FROM job_environments WHERE job_id = ?", (pk,))
    conn.execute("DELETE FROM alert_state WHERE job_id = ?", (pk,))
