"""Retry policies in the store: an account's named, reusable retry rules.

A policy is one row keyed by (account, id), the id its client chose. Every
check that must hold at the moment of the write runs in the write's own
transaction: an id is free (409), the account is under its bound on
policies (`MAX_POLICIES`, 403), and a policy being deleted is not used by
any live job, in its base `retry_policy` or any environment's override
(409, the jobs listed in the error's `meta.referencing_jobs`). A job's write
checks, in its own transaction, that every policy it names exists
(`jobsd.store.jobs`), so no job ever refers to a policy that is gone.

The functions below the class take a connection: the job store and the run
store use them inside their transactions (which policy applies to a failed
run is read in the transaction that records the failure).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from jobsd import errors
from jobsd.clock import Clock, from_us, to_us
from jobsd.retry import Backoff, NamedRetryPolicy, RetryPolicy
from jobsd.store.engine import Engine
from jobsd.store.policy_reach import refuse_reaching_out

# Policies one account may hold: a page of the listing (1000) shows them all.
MAX_POLICIES = 1000
# Jobs listed in the 409 of a delete; the detail gives the whole count.
MAX_REFERENCING_LISTED = 100

SORTS: Mapping[str, str] = {
    "name": "name_key ASC, name ASC, id ASC",
    "-name": "name_key DESC, name DESC, id ASC",
    "created_at": "created_at_us ASC, id ASC",
    "-created_at": "created_at_us DESC, id ASC",
    "updated_at": "updated_at_us ASC, id ASC",
    "-updated_at": "updated_at_us DESC, id ASC",
}
_COLUMNS = (
    "id, name, max_retries, backoff, delay_seconds, max_delay_seconds, retry_on_timeout, "
    "retry_on_connection_error, retry_statuses, retry_statuses_except, created_at_us, "
    "updated_at_us, version"
)


@dataclass(frozen=True, slots=True)
class PolicyQuery:
    """A listing: in what order (`SORTS`), which page, narrowed by name."""

    sort: str
    offset: int
    limit: int
    with_total: bool = False
    name_contains: str | None = None


def _not_found(policy_id: str) -> errors.ApiError:
    return errors.not_found(f"no retry policy with id '{policy_id}'")


class RetryPolicyStore:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    async def create(
        self, account_id: str, policy_id: str, name: str, rules: RetryPolicy
    ) -> NamedRetryPolicy:
        now_us = to_us(self._clock.now())

        def tx(conn: sqlite3.Connection) -> NamedRetryPolicy:
            if _row(conn, account_id, policy_id) is not None:
                raise errors.conflict(
                    "id_taken", f"a retry policy with id '{policy_id}' already exists", "/data/id"
                )
            held = conn.execute(
                "SELECT count(*) FROM retry_policies WHERE account_id = ?", (account_id,)
            ).fetchone()[0]
            if held >= MAX_POLICIES:
                raise errors.forbidden(
                    "retry_policies_limit",
                    f"an account may hold {MAX_POLICIES} retry policies and this one has "
                    "reached it: delete one it no longer uses",
                )
            values = {
                "account_id": account_id,
                "id": policy_id,
                **_writable(name, rules),
                "created_at_us": now_us,
                "updated_at_us": now_us,
            }
            names = ", ".join(values)
            marks = ", ".join(f":{n}" for n in values)
            conn.execute(f"INSERT INTO retry_policies ({names}) VALUES ({marks})", values)
            return _fetch(conn, account_id, policy_id)

        return await self._engine.write(tx)

    async def replace(
        self,
        account_id: str,
        policy_id: str,
        name: str,
        rules: RetryPolicy,
        *,
        out_of_reach: Collection[str] = (),
    ) -> NamedRetryPolicy:
        """Replace; 403 when the policy is in effect in an enabled environment of
        `out_of_reach` (a scoped token's: the account's environments it cannot see)."""
        now_us = to_us(self._clock.now())

        def tx(conn: sqlite3.Connection) -> NamedRetryPolicy:
            refuse_reaching_out(conn, account_id, policy_id, out_of_reach)
            values = {**_writable(name, rules), "updated_at_us": now_us}
            assignments = ", ".join(f"{n} = :{n}" for n in values)
            cur = conn.execute(
                f"UPDATE retry_policies SET {assignments}, version = version + 1 "
                "WHERE account_id = :account_id AND id = :id",
                {**values, "account_id": account_id, "id": policy_id},
            )
            if cur.rowcount != 1:
                raise _not_found(policy_id)
            return _fetch(conn, account_id, policy_id)

        return await self._engine.write(tx)

    async def get(self, account_id: str, policy_id: str) -> NamedRetryPolicy:
        def q(conn: sqlite3.Connection) -> NamedRetryPolicy:
            row = _row(conn, account_id, policy_id)
            if row is None:
                raise _not_found(policy_id)
            return _to_policy(row)

        return await self._engine.read(q, account_id)

    async def list(
        self, account_id: str, query: PolicyQuery
    ) -> tuple[list[NamedRetryPolicy], int | None]:
        where = "account_id = ?"
        params: list[object] = [account_id]
        if query.name_contains is not None:
            where += " AND instr(name_key, ?) > 0"
            params.append(query.name_contains.casefold())

        def q(conn: sqlite3.Connection) -> tuple[list[NamedRetryPolicy], int | None]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM retry_policies WHERE {where} "
                f"ORDER BY {SORTS[query.sort]} LIMIT ? OFFSET ?",
                (*params, query.limit, query.offset),
            ).fetchall()
            total = None
            if query.with_total:
                sql = f"SELECT count(*) FROM retry_policies WHERE {where}"
                total = int(conn.execute(sql, params).fetchone()[0])
            return [_to_policy(r) for r in rows], total

        return await self._engine.read(q, account_id)

    async def delete(self, account_id: str, policy_id: str) -> None:
        """Delete; 409 naming the jobs that still use it, in the error's meta."""

        def tx(conn: sqlite3.Connection) -> None:
            if _row(conn, account_id, policy_id) is None:
                raise _not_found(policy_id)
            users = referencing_jobs(conn, account_id, policy_id)
            if users:
                listed = users[:MAX_REFERENCING_LISTED]
                more = "" if len(users) == len(listed) else f" (the first {len(listed)} listed)"
                raise errors.ApiError(
                    409,
                    [
                        errors.ErrorItem(
                            409,
                            "retry_policy_in_use",
                            "Conflict",
                            f"retry policy '{policy_id}' is used by {len(users)} "
                            f"job{'s' if len(users) != 1 else ''}{more}: set their "
                            "retry_policy, and their environments' overrides, to another "
                            "policy or null first",
                            meta={
                                "referencing_jobs": listed,
                                "referencing_jobs_total": len(users),
                            },
                        )
                    ],
                )
            conn.execute(
                "DELETE FROM retry_policies WHERE account_id = ? AND id = ?",
                (account_id, policy_id),
            )

        await self._engine.write(tx)


# -- on a connection, inside another store's transaction ---------------------------


def policy_rules(conn: sqlite3.Connection, account_id: str, policy_id: str) -> RetryPolicy | None:
    """The rules of the account's policy `policy_id`; None when it has none by that id."""
    row = _row(conn, account_id, policy_id)
    return None if row is None else _to_policy(row).rules


def unknown_policies(
    conn: sqlite3.Connection, account_id: str, policy_ids: Collection[str]
) -> set[str]:
    """Those of `policy_ids` the account has no policy for."""
    return {p for p in policy_ids if _row(conn, account_id, p) is None}


def referencing_jobs(conn: sqlite3.Connection, account_id: str, policy_id: str) -> list[str]:
    """The live jobs (their ids, sorted) that name the policy, in the base or an environment."""
    rows = conn.execute(
        "SELECT slug FROM jobs WHERE account_id = ? AND retry_policy = ? "
        "AND deleted_at_us IS NULL "
        "UNION SELECT j.slug FROM job_environments AS e JOIN jobs AS j ON j.id = e.job_id "
        "WHERE e.retry_policy = ? AND j.account_id = ? AND j.deleted_at_us IS NULL "
        "ORDER BY 1",
        (account_id, policy_id, policy_id, account_id),
    ).fetchall()
    return [str(r[0]) for r in rows]


def _writable(name: str, rules: RetryPolicy) -> dict[str, object]:
    return {
        "name": name,
        "name_key": name.casefold(),
        "max_retries": rules.max_retries,
        "backoff": rules.backoff.value,
        "delay_seconds": rules.delay_seconds,
        "max_delay_seconds": rules.max_delay_seconds,
        "retry_on_timeout": int(rules.retry_on_timeout),
        "retry_on_connection_error": int(rules.retry_on_connection_error),
        "retry_statuses": json.dumps(list(rules.retry_statuses)),
        "retry_statuses_except": json.dumps(list(rules.retry_statuses_except)),
    }


def _row(conn: sqlite3.Connection, account_id: str, policy_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        f"SELECT {_COLUMNS} FROM retry_policies WHERE account_id = ? AND id = ?",
        (account_id, policy_id),
    ).fetchone()
    return row


def _fetch(conn: sqlite3.Connection, account_id: str, policy_id: str) -> NamedRetryPolicy:
    row = _row(conn, account_id, policy_id)
    assert row is not None
    return _to_policy(row)


def _to_policy(row: sqlite3.Row) -> NamedRetryPolicy:
    rules = RetryPolicy(
        max_retries=row["max_retries"],
        backoff=Backoff(row["backoff"]),
        delay_seconds=row["delay_seconds"],
        max_delay_seconds=row["max_delay_seconds"],
        retry_on_timeout=bool(row["retry_on_timeout"]),
        retry_on_connection_error=bool(row["retry_on_connection_error"]),
        retry_statuses=tuple(json.loads(row["retry_statuses"])),
        retry_statuses_except=tuple(json.loads(row["retry_statuses_except"])),
    )
    return NamedRetryPolicy(
        id=row["id"],
        name=row["name"],
        rules=rules,
        created_at=from_us(row["created_at_us"]),
        updated_at=from_us(row["updated_at_us"]),
        version=row["version"],
    )
