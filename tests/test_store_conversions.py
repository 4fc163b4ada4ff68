"""Run rows to `Run` and `RunEnded`: the writer's lookups give what the Enums give.

`jobsd.store.ended_sql` maps stored values to members with dicts (cheaper on
the writer thread than calling the Enum); this compares both conversions
with the plain one, written here with Enum calls, over every stored value.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from jobsd.clock import from_us
from jobsd.messages import Run, RunEnded
from jobsd.runs import FailureReason, RunStatus, Trigger
from jobsd.store.ended_sql import to_ended
from jobsd.store.runs_sql import to_run

_US = st.integers(min_value=0, max_value=4_102_444_800_000_000)  # to 2100
_TEXT = st.text(max_size=12)
_JSON = st.none() | st.dictionaries(st.text(max_size=5), st.integers(), max_size=3).map(json.dumps)


def _row() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "id": _TEXT,
            "account_id": _TEXT,
            "job_id": st.integers(min_value=1, max_value=10**9),
            "job_slug": _TEXT,
            "job_version": st.none() | st.integers(min_value=1, max_value=10**6),
            "environment": _TEXT,
            "trigger": st.sampled_from([t.value for t in Trigger]),
            "rerun_of": st.none() | _TEXT,
            "scheduled_for_us": st.none() | _US,
            "status": st.sampled_from([s.value for s in RunStatus]),
            "created_at_us": _US,
            "started_at_us": st.none() | _US,
            "finished_at_us": _US,  # never None for an ended run
            "failure_reason": st.none() | st.sampled_from([r.value for r in FailureReason]),
            "error": st.none() | _TEXT,
            "request": _JSON,
            "result": _JSON,
            "retry_of": st.none() | _TEXT,
            "retry_attempt": st.none() | st.integers(min_value=1, max_value=10),
            "retried_run": st.none() | _TEXT,
        }
    )


def _time(us: int | None) -> Any:
    return None if us is None else from_us(us)


@given(_row())
def test_to_run_is_the_enum_conversion(row: dict[str, Any]) -> None:
    reason = row["failure_reason"]
    assert to_run(row) == Run(  # type: ignore[arg-type]
        id=row["id"],
        account_id=row["account_id"],
        job_pk=row["job_id"],
        job_slug=row["job_slug"],
        job_version=row["job_version"],
        environment=row["environment"],
        trigger=Trigger(row["trigger"]),
        rerun_of=row["rerun_of"],
        scheduled_for=_time(row["scheduled_for_us"]),
        status=RunStatus(row["status"]),
        created_at=from_us(row["created_at_us"]),
        started_at=_time(row["started_at_us"]),
        finished_at=_time(row["finished_at_us"]),
        failure_reason=None if reason is None else FailureReason(reason),
        error=row["error"],
        request=None if row["request"] is None else json.loads(row["request"]),
        result=None if row["result"] is None else json.loads(row["result"]),
        retry_of=row["retry_of"],
        retry_attempt=row["retry_attempt"],
        retried_run=row["retried_run"],
    )


@given(_row())
def test_to_ended_is_the_enum_conversion(row: dict[str, Any]) -> None:
    reason = row["failure_reason"]
    end = to_ended(row)  # type: ignore[arg-type]
    assert end == RunEnded(
        run_id=row["id"],
        account_id=row["account_id"],
        job_slug=row["job_slug"],
        environment=row["environment"],
        trigger=Trigger(row["trigger"]),
        status=RunStatus(row["status"]),
        failure_reason=None if reason is None else FailureReason(reason),
        created_at=from_us(row["created_at_us"]),
        scheduled_for=_time(row["scheduled_for_us"]),
        started_at=_time(row["started_at_us"]),
        finished_at=from_us(row["finished_at_us"]),
    )
    assert type(end.trigger) is Trigger and type(end.status) is RunStatus
