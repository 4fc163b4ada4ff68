"""Job rows: SQL and the mapping between rows and `Job` values.

Functions here run on a store thread with a connection in hand; they are
the only code that knows the `jobs` table's columns. Header values are
sealed on the way in and opened on the way out, bound to (account, job
row, header name), so a value copied into another row does not open.

A value that does not open (its key was retired or lost) is shown as a
marker rather than failing the whole job or listing (`strict=False`, what
the API reads); an executor about to send the request asks `strict=True`
and gets a `SealError` naming the header instead.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime

from jobsd.clock import from_us
from jobsd.crypto import header_aad
from jobsd.errors import SealError
from jobsd.messages import Header, HttpConfig, Job, JobSpec
from jobsd.store.keyring import Sealer, unreadable_marker

COLUMNS = (
    "id, account_id, slug, name, description, enabled, schedule, method, url, headers, "
    "success_status, tls_verify, ca_cert, body, timeout_s, next_run_at_us, created_at_us, "
    "updated_at_us, deleted_at_us, version"
)


def _opt_time(us: int | None) -> datetime | None:
    return None if us is None else from_us(us)


def open_headers(
    keyring: Sealer, account_id: str, job_pk: int, raw: str, *, strict: bool = False
) -> tuple[Header, ...]:
    headers: list[Header] = []
    for item in json.loads(raw):
        name = item["name"]
        try:
            value = keyring.open(item["sealed"], aad=header_aad(account_id, job_pk, name))
        except SealError as exc:
            if strict:
                raise SealError(f"header {name!r} cannot be opened: {exc}") from None
            value = unreadable_marker(exc)
        headers.append(Header(name, value))
    return tuple(headers)


def seal_headers(keyring: Sealer, account_id: str, job_pk: int, headers: Sequence[Header]) -> str:
    return json.dumps(
        [
            {
                "name": h.name,
                "sealed": keyring.seal(h.value, aad=header_aad(account_id, job_pk, h.name)),
            }
            for h in headers
        ]
    )


def to_job(row: sqlite3.Row, keyring: Sealer, *, strict: bool = False) -> Job:
    config = HttpConfig(
        url=row["url"],
        method=row["method"],
        headers=open_headers(keyring, row["account_id"], row["id"], row["headers"], strict=strict),
        success_status=row["success_status"],
        tls_verify=bool(row["tls_verify"]),
        ca_cert=row["ca_cert"],
        body=row["body"],
        timeout_s=row["timeout_s"],
    )
    spec = JobSpec(
        slug=row["slug"],
        name=row["name"],
        description=row["description"],
        enabled=bool(row["enabled"]),
        schedule=row["schedule"],
        config=config,
    )
    return Job(
        pk=row["id"],
        account_id=row["account_id"],
        spec=spec,
        next_run_at=_opt_time(row["next_run_at_us"]),
        created_at=from_us(row["created_at_us"]),
        updated_at=from_us(row["updated_at_us"]),
        deleted_at=_opt_time(row["deleted_at_us"]),
        version=row["version"],
    )


def live_row(conn: sqlite3.Connection, account_id: str, slug: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        f"SELECT {COLUMNS} FROM jobs WHERE account_id = ? AND slug = ? AND deleted_at_us IS NULL",
        (account_id, slug),
    ).fetchone()
    return row


def row_by_pk(conn: sqlite3.Connection, pk: int) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        f"SELECT {COLUMNS} FROM jobs WHERE id = ?", (pk,)
    ).fetchone()
    return row


def count_enabled(conn: sqlite3.Connection, account_id: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM jobs WHERE account_id = ? AND enabled = 1 AND deleted_at_us IS NULL",
        (account_id,),
    ).fetchone()
    return int(row[0])


def _writable(spec: JobSpec, next_run_at_us: int | None) -> dict[str, object]:
    """The columns a create or a replace writes from the spec (headers apart)."""
    c = spec.config
    return {
        "name": spec.name,
        "description": spec.description,
        "enabled": int(spec.enabled),
        "schedule": spec.schedule,
        "method": c.method,
        "url": c.url,
        "success_status": c.success_status,
        "tls_verify": int(c.tls_verify),
        "ca_cert": c.ca_cert,
        "body": c.body,
        "timeout_s": c.timeout_s,
        "next_run_at_us": next_run_at_us,
    }


def insert(
    conn: sqlite3.Connection,
    keyring: Sealer,
    account_id: str,
    spec: JobSpec,
    *,
    now_us: int,
    next_run_at_us: int | None,
) -> int:
    values = {
        "account_id": account_id,
        "slug": spec.slug,
        **_writable(spec, next_run_at_us),
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
    conn: sqlite3.Connection,
    keyring: Sealer,
    row: sqlite3.Row,
    spec: JobSpec,
    *,
    now_us: int,
    next_run_at_us: int | None,
) -> None:
    pk = row["id"]
    values = {
        **_writable(spec, next_run_at_us),
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
    conn.execute(
        "UPDATE jobs SET deleted_at_us = ?, enabled = 0, next_run_at_us = NULL, "
        "updated_at_us = ? WHERE id = ? AND deleted_at_us IS NULL",
        (now_us, now_us, pk),
    )


def _live(account_id: str, enabled: bool | None) -> tuple[str, list[object]]:
    """The WHERE of an account's live jobs, optionally only (un)paused ones."""
    where = "account_id = ? AND deleted_at_us IS NULL"
    params: list[object] = [account_id]
    if enabled is not None:
        where += " AND enabled = ?"
        params.append(int(enabled))
    return where, params


def list_page(
    conn: sqlite3.Connection,
    account_id: str,
    *,
    enabled: bool | None,
    offset: int,
    limit: int,
) -> list[sqlite3.Row]:
    where, params = _live(account_id, enabled)
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM jobs WHERE {where} "
        "ORDER BY created_at_us DESC, slug ASC LIMIT ? OFFSET ?",
        (*params, limit, offset),
    ).fetchall()
    return list(rows)


def count_live(conn: sqlite3.Connection, account_id: str, *, enabled: bool | None) -> int:
    where, params = _live(account_id, enabled)
    return int(conn.execute(f"SELECT count(*) FROM jobs WHERE {where}", params).fetchone()[0])


def due_before(conn: sqlite3.Connection, until_us: int, limit: int) -> list[tuple[int, str, int]]:
    """(pk, schedule, next_run_at_us) of enabled live jobs due by `until_us`, soonest first."""
    rows = conn.execute(
        "SELECT id, schedule, next_run_at_us FROM jobs "
        "WHERE enabled = 1 AND deleted_at_us IS NULL AND next_run_at_us <= ? "
        "ORDER BY next_run_at_us LIMIT ?",
        (until_us, limit),
    ).fetchall()
    return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]
