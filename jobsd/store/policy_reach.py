"""Where a retry policy is in effect, for the scoped tokens that would replace it.

Split from `jobsd.store.policies`: the one check that reads jobs and their
environments to judge a policy's write.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection

from jobsd import errors


def refuse_reaching_out(
    conn: sqlite3.Connection, account_id: str, policy_id: str, environments: Collection[str]
) -> None:
    """403 when the policy decides how a job retries in an enabled one of `environments`.

    A policy belongs to the account, but a token scoped to staging that could
    rewrite the policy production's jobs retry by would choose how often
    production's requests, its header overrides included, are sent again: the
    rule a scoped job `PUT` follows (`jobsd.store.job_reach.refuse_reaching_out`).
    An environment's own `retry_policy` wins over the job's. A run going
    (PENDING or RUNNING) where its job is paused retries by the policy in
    force when it fails, so its environment is reached as an enabled one is.
    """
    if not environments:
        return
    marks = ", ".join("?" for _ in environments)
    rows = conn.execute(
        "SELECT e.environment, j.slug FROM job_environments AS e JOIN jobs AS j "
        "ON j.id = e.job_id WHERE j.account_id = ? AND j.deleted_at_us IS NULL "
        f"AND e.enabled = 1 AND e.environment IN ({marks}) "
        "AND coalesce(e.retry_policy, j.retry_policy) = ? "
        "UNION SELECT r.environment, j.slug FROM jobs AS j "
        "JOIN runs AS r INDEXED BY runs_going ON r.job_id = j.id "
        "AND r.status IN ('PENDING', 'RUNNING') "
        "LEFT JOIN job_environments AS e ON e.job_id = j.id AND e.environment = r.environment "
        f"WHERE j.account_id = ? AND j.deleted_at_us IS NULL AND r.environment IN ({marks}) "
        "AND coalesce(e.retry_policy, j.retry_policy) = ? ORDER BY 1, 2 LIMIT 11",
        (account_id, *environments, policy_id, account_id, *environments, policy_id),
    ).fetchall()
    if rows:
        where = sorted({str(r[0]) for r in rows})
        jobs = sorted({str(r[1]) for r in rows})[:10]
        raise errors.forbidden(
            "environment_scope",
            f"retry policy '{policy_id}' decides how jobs retry in {', '.join(where)}, "
            f"outside this token's environments (jobs {', '.join(jobs)}"
            f"{', ...' if len(rows) > 10 else ''}): replace it with a token that can reach "
            "them, or create another policy for this token's environments",
        )
