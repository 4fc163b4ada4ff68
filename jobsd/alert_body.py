"""An alert's body: the bytes POSTed to an account's `alert_url`, fixed once written.

Pure. The format is spec/OPERATIONS.md's: `{"type", "timestamp", "data":
{"account", "job", "environment", "run"}}`. The body is built in the
transaction that records the run's end and stored whole in the outbox
(`jobsd.store.outbox`), so every delivery of an alert id sends the same
bytes, whatever happens to the run or the job afterwards.

`run` is the run's id and its attributes as 2026-08-07 shows them (its
`environment` and `retry` included; a retry is `trigger: RETRY` whatever
version the account speaks: the alert is jobsd's own format, not an API
response), except `request` and `result`: they can hold a megabyte of the
job's body and 64 KiB of the answer, and the alert target is often a chat
relay or a pager, not the place for a job's payload. Read them with
`GET /api/v1/runs/{id}`. `error` is cut to `MAX_ERROR_CHARS`. `timestamp`
is when the run's end was recorded (for `job.failed` folded into a
deferred alert, the newest run's).
"""

from __future__ import annotations

import json
from datetime import datetime

from jobsd.alert_rules import AlertType
from jobsd.clock import iso
from jobsd.messages import Run
from jobsd.run_attributes import retry_attribute, run_attributes

MAX_ERROR_CHARS = 2000


def alert_body(alert_type: AlertType, at: datetime, run: Run) -> str:
    attributes = run_attributes(run)
    del attributes["request"], attributes["result"]
    error = run.error
    if error is not None and len(error) > MAX_ERROR_CHARS:
        attributes["error"] = error[: MAX_ERROR_CHARS - 1] + "…"
    attributes["environment"] = run.environment
    attributes["retry"] = retry_attribute(run)
    document = {
        "type": alert_type.value,
        "timestamp": iso(at),
        "data": {
            "account": run.account_id,
            "job": run.job_slug,
            "environment": run.environment,
            "run": {"id": run.id, **attributes},
        },
    }
    return json.dumps(document, separators=(",", ":"))
