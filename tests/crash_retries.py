"""The crash harness's retry chains, and what the audit demands of them.

Every job the harness creates names the retry policy `crash-retry` (fixed
1 s, up to 3 retries of a 5xx), so each run answered `500` starts a chain:
its retries are held for their instant, released by the scheduler, sent,
fail again, until the third. Kills land in every phase of a chain: a retry
held, released but not yet claimed, in flight, just failed.

`check_retries` is the issue's promise for them, on the file and the log:
- each attempt of a chain exists at most once, and each retry follows from
  the run before it: same job and environment, that run FAILED on its
  response, attempt numbers 1, 2, 3 in order, its due instant exactly
  1 s after that run's failure was recorded (both from one clock reading);
- a retry is held only while PENDING, for exactly its due instant, and no
  request is sent for it before that instant;
- finally, none is lost: every run that failed on its response (under the
  policy) and is not the third retry has its retry, unless its job was
  deleted; a run lost in flight (WORKER_LOST) never has one.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx2

POLICY = "crash-retry"
DELAY_US = 1_000_000
MAX_RETRIES = 3
JSONAPI = "application/vnd.api+json"
# Target and daemon read the same system clock, the daemon through trio's
# clock anchored once at its start: allow them that much apart.
CLOCK_SLACK_US = 50_000


def create_retry_policy(url: str, token: str) -> None:
    doc = {
        "data": {
            "type": "retry_policy",
            "id": POLICY,
            "attributes": {
                "name": "crash retries",
                "max_retries": MAX_RETRIES,
                "backoff": "fixed",
                "delay_seconds": DELAY_US // 1_000_000,
                "retry_statuses": ["5xx"],
            },
        }
    }
    r = httpx2.post(
        f"{url}/api/v1/retry-policies",
        json=doc,
        headers={"Authorization": f"Bearer {token}", "Content-Type": JSONAPI},
        trust_env=False,
    )
    assert r.status_code == 201, r.text


def check_retries(
    runs: dict[str, dict[str, Any]],
    jobs: dict[int, dict[str, Any]],
    log: list[dict[str, Any]],
    *,
    final: bool,
) -> int:
    """Audit every retry (see the module note); returns how many there are."""
    retries = [r for r in runs.values() if r["trigger"] == "RETRY"]
    attempts = Counter((r["retry_of"], r["retry_attempt"]) for r in retries)
    doubled = [key for key, n in attempts.items() if n > 1]
    assert not doubled, f"retry attempts that exist twice: {doubled}"
    for retry in retries:
        where = f"retry {retry}"
        before = runs.get(retry["retried_run"])
        original = runs.get(retry["retry_of"])
        assert before is not None and original is not None, where
        assert original["trigger"] != "RETRY", where
        expected_of = before["id"] if before["trigger"] != "RETRY" else before.get("retry_of")
        assert retry["retry_of"] == expected_of, where
        assert retry["retry_attempt"] == (before.get("retry_attempt") or 0) + 1 <= MAX_RETRIES, (
            where
        )
        for key in ("job_id", "environment", "account_id"):
            assert retry[key] == before[key], where
        assert (before["status"], before["failure_reason"]) == ("FAILED", "NON_SUCCESS_STATUS")
        assert retry["scheduled_for_us"] == retry["created_at_us"] + DELAY_US, where
        assert before["finished_at_us"] >= retry["created_at_us"] - CLOCK_SLACK_US, where
        held = retry["held_until_us"]
        assert held is None or (
            held == retry["scheduled_for_us"] and retry["status"] == "PENDING"
        ), where
        if retry["started_at_us"] is not None:
            assert retry["started_at_us"] >= retry["scheduled_for_us"], where
    for entry in log:
        run = runs.get(entry["run_id"])
        if run is not None and run["trigger"] == "RETRY":
            due_ns = run["scheduled_for_us"] * 1000
            assert entry["received_ns"] >= due_ns - CLOCK_SLACK_US * 1000, (entry, run)
    if final:
        retried = {r["retried_run"] for r in retries}
        for run in runs.values():
            job = jobs[run["job_id"]]
            if run["failure_reason"] == "WORKER_LOST":
                assert run["id"] not in retried, f"a run lost in flight was retried: {run}"
            owed = (
                run["failure_reason"] == "NON_SUCCESS_STATUS"
                and job.get("retry_policy") == POLICY
                and (run.get("retry_attempt") or 0) < MAX_RETRIES
                and job["deleted_at_us"] is None
            )
            if owed:
                assert run["id"] in retried, f"a failure its policy retries has no retry: {run}"
    return len(retries)
