"""Job rows and their environment rows: SQL, and the mapping to `Job` values.

Functions here run on a store thread with a connection in hand; they are
the only code that knows the `jobs` and `job_environments` columns. A job
row is the base definition; each `job_environments` row is one environment
of it: enabled or not, its own `next_run_at_us`, and its sparse overrides
(`schedule`, `timezone` and `retry_policy` as columns, so the scheduler and
the policy checks can read them in SQL; the request leaves as a JSON
object; header overrides sealed like the base headers).

Header values are sealed on the way in and opened on the way out, bound to
(account, job row, header name) and, for an environment's override, the
environment too, so a value copied into another row or environment does
not open.

A value that does not open (its key was retired or lost) is shown as a
marker rather than failing the whole job or listing (`strict=False`, what
the API reads); an executor about to send the request asks `strict=True`
and gets a `SealError` naming the header instead.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType

from jobsd.clock import from_us
from jobsd.crypto import header_aad
from jobsd.errors import SealError
from jobsd.messages import (
    Header,
    HttpConfig,
    Job,
    JobCounting,
    JobEnvironment,
    JobKind,
    JobSpec,
    Overlay,
)
from jobsd.store.keyring import Sealer, unreadable_marker

COLUMNS = (
    "id, account_id, slug, name, description, kind, schedule, timezone, retry_policy, method, "
    "url, headers, success_status, tls_verify, ca_cert, body, timeout_s, created_at_us, "
    "updated_at_us, deleted_at_us, version"
)
ENV_COLUMNS = (
    "job_id, environment, enabled, next_run_at_us, schedule, timezone, retry_policy, overlay, "
    "headers"
)
# The request leaves an overlay may hold, as stored in its JSON object.
_LEAVES = ("url", "method", "timeout_s", "body", "success_status", "tls_verify", "ca_cert")


def _opt_time(us: int | None) -> datetime | None:
    return None if us is None else from_us(us)


def open_headers(
    keyring: Sealer,
    account_id: str,
    job_pk: int,
    raw: str,
    *,
    environment: str | None = None,
    strict: bool = False,
) -> tuple[Header, ...]:
    headers: list[Header] = []
    for item in json.loads(raw):
        name = item["name"]
        try:
            value = keyring.open(
                item["sealed"], aad=header_aad(account_id, job_pk, name, environment)
            )
        except SealError as exc:
            if strict:
                where = "" if environment is None else f" (environment {environment!r})"
                raise SealError(f"header {name!r}{where} cannot be opened: {exc}") from None
            value = unreadable_marker(exc)
        headers.append(Header(name, value))
    return tuple(headers)


def seal_headers(
    keyring: Sealer,
    account_id: str,
    job_pk: int,
    headers: Sequence[Header],
    environment: str | None = None,
) -> str:
    return json.dumps(
        [
            {
                "name": h.name,
                "sealed": keyring.seal(
                    h.value, aad=header_aad(account_id, job_pk, h.name, environment)
                ),
            }
            for h in headers
        ]
    )


def to_spec(row: sqlite3.Row, keyring: Sealer, *, strict: bool = False) -> JobSpec:
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
    return JobSpec(
        slug=row["slug"],
        name=row["name"],
        description=row["description"],
        schedule=row["schedule"],
        config=config,
        kind=JobKind(row["kind"]),
        timezone=row["timezone"],
        retry_policy=row["retry_policy"],
    )


def to_overlay(
    env: sqlite3.Row, account_id: str, keyring: Sealer, *, strict: bool = False
) -> Overlay:
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


def to_job(
    row: sqlite3.Row, envs: Iterable[sqlite3.Row], keyring: Sealer, *, strict: bool = False
) -> Job:
    environments = {
        env["environment"]: JobEnvironment(
            enabled=bool(env["enabled"]),
            next_run_at=_opt_time(env["next_run_at_us"]),
            overlay=to_overlay(env, row["account_id"], keyring, strict=strict),
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


def row_by_pk(conn: sqlite3.Connection, pk: int) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        f"SELECT {COLUMNS} FROM jobs WHERE id = ?", (pk,)
    ).fetchone()
    return row


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
) -> None:
    """Insert or replace an environment row, its overlay sealed anew."""
    leaves = {
        leaf: getattr(overlay, leaf) for leaf in _LEAVES if getattr(overlay, leaf) is not None
    }
    conn.execute(
        f"INSERT OR REPLACE INTO job_environments ({ENV_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    apply to recurring jobs only.
    """
    cadence = "" if keep_cadence else ", schedule = NULL, timezone = NULL"
    conn.execute(
        f"UPDATE job_environments SET enabled = ?, next_run_at_us = ?{cadence} "
        "WHERE job_id = ? AND environment = ?",
        (int(enabled), next_run_at_us, pk, environment),
    )


def delete_environment(conn: sqlite3.Connection, pk: int, environment: str) -> None:
    conn.execute(
        "DELETE FROM job_environments WHERE job_id = ? AND environment = ?", (pk, environment)
    )


def soft_delete(conn: sqlite3.Connection, pk: int, *, now_us: int) -> None:
    conn.execute(
        "UPDATE jobs SET deleted_at_us = ?, updated_at_us = ? "
        "WHERE id = ? AND deleted_at_us IS NULL",
        (now_us, now_us, pk),
    )
    conn.execute("DELETE FROM job_environments WHERE job_id = ?", (pk,))


# -- counting and listing -------------------------------------------------------------


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


# -- scheduling -----------------------------------------------------------------------

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


def effective_cadence(spec: JobSpec, overlay: Overlay) -> tuple[str | None, str | None]:
    """(schedule, timezone) an environment fires on."""
    if spec.kind is not JobKind.RECURRING:
        return spec.schedule, None
    schedule = overlay.schedule if overlay.schedule is not None else spec.schedule
    timezone = overlay.timezone if overlay.timezone is not None else spec.timezone
    return schedule, timezone


def enabled_map(envs: Iterable[sqlite3.Row]) -> dict[str, bool]:
    return {str(e["environment"]): bool(e["enabled"]) for e in envs}
