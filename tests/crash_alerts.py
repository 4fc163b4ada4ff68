"""The crash harness's alerts, and what the audit demands of them.

The harness's account `crash` has an `alert_url` on the target
(`/sleep/<ms>`: each alert is answered after a pause, so kills catch
alerts in flight), and its jobs fail for good all the time: one-offs
answered `500` after their three retries, the `500` cron job, runs lost at
a kill. Kills land while alerts wait in the outbox, while one is being
sent, and between its arrival and the commit that deletes it.

`check_alerts` is the issue's promise, on the file and the target's log:
- no alert id (`webhook-id`) ever reaches the target with two different
  bodies, and an alert taken for sending never changes in the outbox
  (compared across every kill's snapshot);
- every alert the target got names a run that ended as it says (job.failed:
  FAILED for good; job.recovered: SUCCEEDED), of its job and environment;
- none is lost: every alert seen owed in the outbox at a kill (due at once,
  or already tried) reaches the target, the outbox holds nothing owed at the
  end (only a `job.failed` deferred to the end of its window may wait), and
  every job and environment of `crash` that failed for good (its job still
  live) was told `job.failed` at least once.
"""

from __future__ import annotations

import hashlib
from typing import Any

ALERT_PATH = "/sleep/100"  # two in flight at a time per account: a backlog builds
ALERT_ACCOUNT = "crash"


def owed_by(alert: dict[str, Any], now_us: int) -> bool:
    """Due by `now_us`, or already tried: not a `job.failed` deferred to its window's end."""
    return bool(alert["attempts"] > 0 or alert["due_us"] <= now_us)


def alerts_in(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry["alert"] for entry in log if entry.get("alert") is not None]


def check_alerts(
    outbox: dict[str, dict[str, Any]],
    runs: dict[str, dict[str, Any]],
    jobs: dict[int, dict[str, Any]],
    log: list[dict[str, Any]],
    bodies: dict[str, str],
    owed: set[str],
    *,
    final: bool,
) -> int:
    """Audit the alerts (see the module note); `bodies` and `owed` carry what earlier
    snapshots saw. Returns how many alerts reached the target (repeats counted once)."""
    received = alerts_in(log)
    digests: dict[str, set[str]] = {}
    for alert in received:
        digests.setdefault(alert["id"], set()).add(alert["sha256"])
    changed = {i: d for i, d in digests.items() if len(d) > 1}
    assert not changed, f"alert ids delivered with different bodies: {changed}"
    for row in outbox.values():
        digest = hashlib.sha256(row["body"].encode()).hexdigest()
        if row["attempts"] > 0:
            kept = bodies.setdefault(row["id"], digest)
            assert kept == digest, f"alert {row['id']} changed after it was taken"
        if owed_by(row, row["created_at_us"]):
            owed.add(row["id"])
    for alert_id, seen in digests.items():
        if alert_id in bodies:
            assert seen == {bodies[alert_id]}, f"alert {alert_id} was sent with another body"
    for alert in received:
        run = runs.get(alert["run"])
        assert run is not None, f"an alert about a run the file does not have: {alert}"
        assert (run["account_id"], run["job_slug"], run["environment"]) == (
            ALERT_ACCOUNT,
            alert["job"],
            alert["environment"],
        ), (alert, run)
        if alert["type"] == "job.failed":
            assert run["status"] == "FAILED" and run["failure_reason"] != "QUOTA_EXCEEDED", run
            assert run["id"] not in {r.get("retried_run") for r in runs.values()}, run
        else:
            assert (alert["type"], run["status"]) == ("job.recovered", "SUCCEEDED"), (alert, run)
    if final:
        # Left: only a job.failed deferred to the end of its 10 minutes, never tried.
        left = [i for i, row in outbox.items() if owed_by(row, row["created_at_us"])]
        assert not left, f"alerts never delivered: {sorted(left)}"
        lost = owed - digests.keys()
        assert not lost, f"alerts lost: {sorted(lost)}"
        retried = {r.get("retried_run") for r in runs.values()}
        live = {j["id"] for j in jobs.values() if j["deleted_at_us"] is None}
        failed = {
            (r["job_slug"], r["environment"])
            for r in runs.values()
            if r["account_id"] == ALERT_ACCOUNT
            and r["job_id"] in live
            and r["status"] == "FAILED"
            and r["failure_reason"] != "QUOTA_EXCEEDED"
            and r["id"] not in retried
        }
        told = {(a["job"], a["environment"]) for a in received if a["type"] == "job.failed"}
        assert failed <= told, f"failed for good, never told: {sorted(failed - told)}"
    return len(digests)
