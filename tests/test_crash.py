"""The crash test: SIGKILL the real daemon under load, many times, and audit.

The harness (tests/crash_harness.py) says what is checked and why. The
default run does a few kill rounds (well under 30 s); the long run behind
`-m slow` does `JOBSD_CRASH_ROUNDS` of them (default 30). `JOBSD_CRASH_SEED`
replays a run's kill moments and load mix (process timings still vary).
`JOBSD_CRASH_KEEPALIVE_S` overrides `[outbound] keepalive_s` (the shipped
default otherwise). A daemon that never drains logs its and its workers'
trio task trees (SIGUSR1) into the failure.
The first tests show that the audit bites: a record that breaks a promise
is refused.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest

from tests.crash_alerts import check_alerts
from tests.crash_flood import FLOOD_ACCOUNT, MAX_PENDING_RUNS
from tests.crash_harness import (
    Ledger,
    Snapshot,
    audit,
    recount,
    recount_jobs,
    run_crash_test,
)
from tests.crash_retries import POLICY, check_retries

US = 1_000_000


def _run(run_id: str, status: str, **cols: Any) -> dict[str, Any]:
    started = None if status == "PENDING" else 2 * US
    run = {
        "id": run_id,
        "account_id": "acme",
        "job_id": 1,
        "job_slug": "j",
        "environment": "production",
        "trigger": "MANUAL",
        "scheduled_for_us": None,
        "status": status,
        "failure_reason": None,
        "error": None,
        "created_at_us": 1 * US,
        "started_at_us": started,
        "finished_at_us": None if status in ("PENDING", "RUNNING") else 3 * US,
        "metered_period": None if started is None else "2026-06",
    }
    run.update(cols)
    return run


def _snapshot(*runs: dict[str, Any], log: tuple[str, ...] = ()) -> Snapshot:
    jobs = {1: {"id": 1, "account_id": "acme", "slug": "j", "deleted_at_us": None}}
    entries = [{"run_id": r, "job": "j", "scheduled_for": None, "env": "production"} for r in log]
    metered = sum(1 for r in runs if r["started_at_us"] is not None)
    by_id = {r["id"]: r for r in runs}
    return Snapshot(
        by_id, jobs, metered, entries, counts=recount(by_id), job_counts=recount_jobs(jobs)
    )


def test_the_audit_passes_a_sound_record() -> None:
    audit(
        _snapshot(_run("a", "SUCCEEDED"), _run("b", "PENDING"), log=("a",)), Ledger(), final=False
    )


@pytest.mark.parametrize(
    ("snap", "complaint"),
    [
        (_snapshot(_run("a", "SUCCEEDED"), log=("a", "a")), "more than once"),
        (_snapshot(_run("a", "PENDING"), log=("a",)), "PENDING run"),
        (_snapshot(log=("ghost",)), "no run accounts for"),
        (_snapshot(_run("a", "SUCCEEDED", started_at_us=4 * US)), "run a"),
        (_snapshot(_run("a", "FAILED")), "run a"),
        (
            _snapshot(
                _run("a", "SUCCEEDED", trigger="SCHEDULE", scheduled_for_us=US),
                _run("b", "SUCCEEDED", trigger="SCHEDULE", scheduled_for_us=US),
                log=("a", "b"),
            ),
            "slots with more than one run",
        ),
        (
            _snapshot(
                _run("a", "SUCCEEDED", trigger="SCHEDULE", scheduled_for_us=US),
                _run(
                    "b", "SUCCEEDED", trigger="SCHEDULE", scheduled_for_us=US, environment="staging"
                ),
                _run(
                    "c", "SUCCEEDED", trigger="SCHEDULE", scheduled_for_us=US, environment="staging"
                ),
                log=("a", "b", "c"),
            ),
            r"slots with more than one run: \[\(1, 'staging'",
        ),
    ],
)
def test_the_audit_refuses_a_broken_record(snap: Snapshot, complaint: str) -> None:
    with pytest.raises(AssertionError, match=complaint):
        audit(snap, Ledger(), final=False)


def test_the_audit_refuses_counts_that_disagree_with_the_runs() -> None:
    snap = _snapshot(_run("a", "SUCCEEDED"), log=("a",))
    snap.counts = recount({"a": _run("a", "FAILED")})
    with pytest.raises(AssertionError, match="counts disagree"):
        audit(snap, Ledger(), final=False)


def test_the_audit_refuses_a_queued_count_that_disagrees_with_the_runs() -> None:
    queued = _run("a", "PENDING")
    snap = _snapshot(queued)
    assert ("pending_counts", queued["account_id"], 1) in snap.counts
    audit(snap, Ledger(), final=False)
    snap.counts = (snap.counts - {("pending_counts", queued["account_id"], 1)}) | {
        ("pending_counts", queued["account_id"], 2)
    }
    with pytest.raises(AssertionError, match="counts disagree"):
        audit(snap, Ledger(), final=False)


def test_the_audit_refuses_a_held_count_that_disagrees_with_the_runs() -> None:
    held = _run(
        "a",
        "PENDING",
        trigger="RETRY",
        created_at_us=3 * US,
        scheduled_for_us=4 * US,  # its failure's end plus the policy's 1 s
        held_until_us=4 * US,
        retry_of="first",
        retry_attempt=1,
        retried_run="first",
    )
    failed = _run(
        "first",
        "FAILED",
        failure_reason="NON_SUCCESS_STATUS",
        retry_of=None,
        retry_attempt=None,
        retried_run=None,
    )
    snap = _snapshot(failed, held, log=("first",))
    assert ("held_counts", "acme", 1) in snap.counts
    assert not any(row[0] == "pending_counts" for row in snap.counts)  # held, not queued
    audit(snap, Ledger(), final=False)
    snap.counts = snap.counts - {("held_counts", "acme", 1)}
    with pytest.raises(AssertionError, match="counts disagree"):
        audit(snap, Ledger(), final=False)


def test_the_audit_refuses_a_job_count_that_disagrees_with_the_jobs() -> None:
    snap = _snapshot(_run("a", "SUCCEEDED"), log=("a",))
    assert snap.job_counts == {"acme": 1}
    audit(snap, Ledger(), final=False)
    snap.jobs[2] = {"id": 2, "account_id": "acme", "slug": "k", "deleted_at_us": None}
    with pytest.raises(AssertionError, match="job counts disagree"):
        audit(snap, Ledger(), final=False)
    snap.jobs[2]["deleted_at_us"] = 5 * US  # a tombstone is not counted
    ledger = Ledger()
    ledger.delete_attempts.add("k")
    audit(snap, ledger, final=False)


def test_the_audit_refuses_a_flood_past_its_bound() -> None:
    flood = [
        _run(f"f{n}", "PENDING", account_id=FLOOD_ACCOUNT) for n in range(MAX_PENDING_RUNS + 1)
    ]
    audit(_snapshot(*flood[:-1]), Ledger(), final=False)
    with pytest.raises(AssertionError, match="flood runs PENDING"):
        audit(_snapshot(*flood), Ledger(), final=False)


def test_the_final_audit_refuses_lost_and_unexplained_runs() -> None:
    lost = _run("a", "FAILED", failure_reason="WORKER_LOST", error="x")
    with pytest.raises(AssertionError, match="WORKER_LOST 1 vs RUNNING at a kill 0"):
        audit(_snapshot(lost), Ledger(), final=True)
    with pytest.raises(AssertionError, match="acknowledged run-now runs missing"):
        audit(_snapshot(), Ledger(manual_runs={"gone"}), final=False)
    with pytest.raises(AssertionError, match="never logged"):
        audit(_snapshot(_run("a", "SUCCEEDED")), Ledger(), final=True)


def _retry(run_id: str, before: dict[str, Any], attempt: int, **cols: Any) -> dict[str, Any]:
    """A retry of `before`, as the store writes one (due 1 s after its creation)."""
    created = before["finished_at_us"]
    values = {
        "trigger": "RETRY",
        "retry_of": before.get("retry_of") or before["id"],
        "retry_attempt": attempt,
        "retried_run": before["id"],
        "held_until_us": None,
        "created_at_us": created,
        "scheduled_for_us": created + US,
        "started_at_us": created + US,
        "finished_at_us": created + 2 * US,
    }
    return _run(run_id, "SUCCEEDED", **{**values, **cols})


def test_the_retry_audit_refuses_doubled_early_or_lost_attempts() -> None:
    failed = _run("a", "FAILED", failure_reason="NON_SUCCESS_STATUS", error="500")
    jobs = {1: {"id": 1, "slug": "j", "deleted_at_us": None, "retry_policy": POLICY}}
    sound = _retry("b", failed, 1)
    assert check_retries({"a": failed, "b": sound}, jobs, [], final=True) == 1
    doubled = _retry("c", failed, 1)
    with pytest.raises(AssertionError, match="exist twice"):
        check_retries({"a": failed, "b": sound, "c": doubled}, jobs, [], final=False)
    late_due = _retry("b", failed, 1, scheduled_for_us=failed["finished_at_us"] + 2 * US)
    with pytest.raises(AssertionError, match="retry"):
        check_retries({"a": failed, "b": late_due}, jobs, [], final=False)
    early = [{"run_id": "b", "received_ns": (sound["scheduled_for_us"] - US) * 1000}]
    with pytest.raises(AssertionError):
        check_retries({"a": failed, "b": sound}, jobs, early, final=False)
    with pytest.raises(AssertionError, match="has no retry"):
        check_retries({"a": failed}, jobs, [], final=True)
    lost = _run("a", "FAILED", failure_reason="WORKER_LOST", error="lost")
    with pytest.raises(AssertionError):
        check_retries({"a": lost, "b": _retry("b", lost, 1)}, jobs, [], final=True)


def test_the_alert_audit_refuses_changed_lost_and_untold_alerts() -> None:
    failed = _run("a", "FAILED", failure_reason="TIMEOUT", error="x", account_id="crash")
    runs = {"a": failed}
    jobs = {1: {"id": 1, "account_id": "acme", "slug": "j", "deleted_at_us": None}}

    def sent(alert_id: str, digest: str) -> dict[str, Any]:
        alert = {"id": alert_id, "sha256": digest, "type": "job.failed"}
        return {"alert": {**alert, "job": "j", "environment": "production", "run": "a"}}

    row = {"id": "x", "body": "{}", "attempts": 1, "due_us": 1, "created_at_us": 1}
    bodies: dict[str, str] = {}
    owed: set[str] = set()
    assert check_alerts({"x": row}, runs, jobs, [], bodies, owed, final=False) == 0
    with pytest.raises(AssertionError, match="lost"):
        check_alerts({}, runs, jobs, [], bodies, owed, final=True)
    with pytest.raises(AssertionError, match="another body"):
        check_alerts({}, runs, jobs, [sent("x", "0" * 64)], bodies, owed, final=False)
    with pytest.raises(AssertionError, match="changed after it was taken"):
        check_alerts({"x": {**row, "body": "[]"}}, runs, jobs, [], bodies, owed, final=False)
    twice = [sent("y", "1" * 64), sent("y", "2" * 64)]
    with pytest.raises(AssertionError, match="different bodies"):
        check_alerts({}, runs, jobs, twice, {}, set(), final=False)
    with pytest.raises(AssertionError, match="never told"):
        check_alerts({}, runs, jobs, [], {}, set(), final=True)
    good = sent("x", bodies["x"])
    assert check_alerts({}, runs, jobs, [good, good], bodies, owed, final=True) == 1


def _seed() -> int:
    return int(os.environ.get("JOBSD_CRASH_SEED") or random.randrange(1 << 32))


def test_sigkill_under_load_loses_and_doubles_nothing(tmp_path: Path) -> None:
    seed = _seed()
    stats = run_crash_test(tmp_path, rounds=4, max_delay_s=1.5, seed=seed)
    print(f"crash test (seed {seed}): {stats.summary()}")
    assert stats.rounds == 4 and stats.requests > 0 and stats.flood_accepted > 0
    assert stats.retries > 0 and stats.alerts > 0 and stats.alerts_sending_at_kill > 0
    assert stats.worker_kills == 1


@pytest.mark.slow
def test_sigkill_many_times(tmp_path: Path) -> None:
    seed = _seed()
    rounds = int(os.environ.get("JOBSD_CRASH_ROUNDS", "30"))
    stats = run_crash_test(tmp_path, rounds=rounds, max_delay_s=2.5, seed=seed)
    print(f"crash test (seed {seed}): {stats.summary()}")
    assert stats.rounds == rounds and stats.requests > 0
    assert stats.worker_kills == (rounds + 1) // 4
    # Over this many rounds the flood reaches its bound and callers hang up mid-flood.
    assert stats.flood_refused > 0 and stats.flood_hung_up > 0
    # ...and kills catch alerts being sent, which go out again, the same.
    assert stats.alerts_resent > 0
