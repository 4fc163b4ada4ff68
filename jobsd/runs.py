"""The run state machine, written once.

The enum values are the wire strings and the database strings: there is no
mapping layer in which the three could drift apart. The allowed transitions
sit beside the states: every conditional update in the store names in its
WHERE the state it leaves, each such edge is one listed here, and
`sources_of` writes that WHERE where more than one state may be left.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


class Trigger(StrEnum):
    SCHEDULE = "SCHEDULE"
    MANUAL = "MANUAL"
    RERUN = "RERUN"
    RETRY = "RETRY"  # an automatic retry of a failed run, per its job's retry policy


class FailureReason(StrEnum):
    TIMEOUT = "TIMEOUT"
    CONNECTION_ERROR = "CONNECTION_ERROR"
    NON_SUCCESS_STATUS = "NON_SUCCESS_STATUS"
    SSRF_BLOCKED = "SSRF_BLOCKED"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    WORKER_LOST = "WORKER_LOST"


TERMINAL: frozenset[RunStatus] = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED}
)

# PENDING -> FAILED is the quota refusal (and recovery of a lost claim):
# the run never starts, so it never passes through RUNNING.
ALLOWED: frozenset[tuple[RunStatus, RunStatus]] = frozenset(
    {
        (RunStatus.PENDING, RunStatus.RUNNING),
        (RunStatus.PENDING, RunStatus.CANCELED),
        (RunStatus.PENDING, RunStatus.FAILED),
        (RunStatus.RUNNING, RunStatus.SUCCEEDED),
        (RunStatus.RUNNING, RunStatus.FAILED),
        (RunStatus.RUNNING, RunStatus.CANCELED),
    }
)


def sources_of(dst: RunStatus) -> tuple[RunStatus, ...]:
    """The states a run may be in for a move to `dst`: the WHERE of an update."""
    return tuple(sorted(src for src, d in ALLOWED if d is dst))
