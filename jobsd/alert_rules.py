"""When a run's end makes an alert, and when an alert is tried again: pure rules.

No I/O, instants in integer microseconds passed in, so hypothesis can walk
long histories against a naive oracle (tests/test_alert_rules.py). The store
applies `decide` inside the transaction that records each run's end
(`jobsd.store.outbox`); the alert actor applies `next_attempt` after each
failed delivery (`jobsd.alerts`).

What counts (README, "Alerts"), per job and environment, in the order the
ends are recorded:
- a *failure* is a run that ended FAILED with no retry following it (the
  last of a chain, or a run its policy does not retry), whatever started it
  (a slot, a run-now, a rerun, a retry); QUOTA_EXCEEDED is not one: no
  request was sent, the account's quota and not the job failed;
- a *success* is a run that ended SUCCEEDED;
- anything else (a cancel, a slot skipped by `overlap_policy`, a refusal
  for quota, a failure that a retry follows) leaves the count as it was.

`streak` counts failures since the last success. A failure sends
`job.failed`, at most one per `FAILED_WINDOW` (by the instants they are
sent for): one inside the window, after the receiver heard `job.recovered`,
is *deferred* to the window's end, and later failures inside it are folded
into that deferred alert (it then names the newest failed run), so the
receiver always hears the last word; one inside the window while the
receiver still holds the last `job.failed` is dropped (`suppressed`). A
success drops a deferred `job.failed` that has not been sent (the receiver
never heard of that failure) and otherwise, if the receiver was told of a
failure, sends `job.recovered`. With `auto_pause_after` N > 0, the failure
that brings `streak` to N pauses the environment (if it is enabled) and
sends `job.paused`, never deferred (a `job.failed` that would wait for the
window's end is then dropped: `job.paused` tells that failure at once, and
the receiver counts the job as failing until `job.recovered`); the pause
starts the count again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum, StrEnum

FAILED_WINDOW_US = 10 * 60 * 1_000_000
GIVE_UP_AFTER_US = 24 * 3600 * 1_000_000
FIRST_RETRY_US = 10 * 1_000_000
MAX_RETRY_US = 3600 * 1_000_000


class AlertType(StrEnum):
    FAILED = "job.failed"
    RECOVERED = "job.recovered"
    PAUSED = "job.paused"


class Verdict(Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"


def verdict(status: str, failure_reason: str | None, *, retried: bool) -> Verdict:
    """What a run's end means for its job's alerts (see the module note)."""
    if status == "SUCCEEDED":
        return Verdict.SUCCESS
    if status == "FAILED" and failure_reason != "QUOTA_EXCEEDED" and not retried:
        return Verdict.FAILURE
    return Verdict.NEUTRAL


@dataclass(frozen=True, slots=True)
class AlertState:
    """One job and environment. `failing`: the receiver was told `job.failed`
    (or will be, by the deferred one) and not yet `job.recovered`.
    `last_failed_us`: the instant the latest `job.failed` is sent for (a
    deferred one's due instant). `deferred`: that alert's id while it waits."""

    streak: int = 0
    failing: bool = False
    last_failed_us: int | None = None
    deferred: str | None = None


class Act(Enum):
    SEND_FAILED = "send job.failed now"
    DEFER_FAILED = "write job.failed due at `due_us`"
    FOLD_FAILED = "the deferred job.failed names this run now"
    SUPPRESS_FAILED = "drop this job.failed (counted)"
    DROP_DEFERRED = "delete the deferred job.failed (counted as suppressed)"
    SEND_RECOVERED = "send job.recovered now"
    PAUSE = "pause the environment and send job.paused"


@dataclass(frozen=True, slots=True)
class Decision:
    state: AlertState
    acts: tuple[Act, ...] = ()
    due_us: int | None = None  # for DEFER_FAILED


def decide(
    state: AlertState,
    seen: Verdict,
    at_us: int,
    *,
    deferred_open: bool,
    enabled: bool,
    auto_pause_after: int,
    alerting: bool,
) -> Decision:
    """The new state and what to do, for one run's end at `at_us`.

    `deferred_open`: `state.deferred` still waits unsent (the alert actor has
    not taken it). `enabled`: the environment is enabled now. `alerting`:
    the account has an `alert_url`; without one only the count and the
    pause are kept (the receiver-side fields stay as they are).
    """
    if seen is Verdict.NEUTRAL:
        return Decision(state)
    deferred = state.deferred if deferred_open else None
    state = replace(state, deferred=deferred)
    if seen is Verdict.SUCCESS:
        return _success(state, alerting)
    streak = state.streak + 1
    pause = auto_pause_after > 0 and streak >= auto_pause_after and enabled
    acts: list[Act] = []
    due: int | None = None
    if alerting and pause and state.deferred is not None:
        # `job.paused` says it at once, naming this run; waiting for the
        # deferred `job.failed` would hold it back until the window ends.
        assert state.last_failed_us is not None
        state = replace(state, deferred=None, last_failed_us=_unsent(state.last_failed_us))
        acts.append(Act.DROP_DEFERRED)
    elif alerting:
        told, act, due = _failure(state, at_us)
        if pause and act is Act.DEFER_FAILED:
            state, due = replace(state, failing=True), None  # `job.paused` tells it, at once
        else:
            state = told
            acts.append(act)
    if pause:
        acts.append(Act.PAUSE)
        streak = 0
    return Decision(replace(state, streak=streak), tuple(acts), due)


def _success(state: AlertState, alerting: bool) -> Decision:
    if not alerting:
        return Decision(replace(state, streak=0))
    if state.deferred is not None:
        assert state.last_failed_us is not None
        # The receiver never heard of this failure: forget it, window included.
        fresh = AlertState(last_failed_us=_unsent(state.last_failed_us))
        return Decision(fresh, (Act.DROP_DEFERRED,))
    if state.failing:
        return Decision(replace(state, streak=0, failing=False), (Act.SEND_RECOVERED,))
    return Decision(replace(state, streak=0))


def _unsent(deferred_due_us: int) -> int:
    """The window start before a deferred `job.failed` that will never be sent."""
    return deferred_due_us - FAILED_WINDOW_US


def _failure(state: AlertState, at_us: int) -> tuple[AlertState, Act, int | None]:
    if state.deferred is not None:
        return state, Act.FOLD_FAILED, None
    last = state.last_failed_us
    if last is None or at_us >= last + FAILED_WINDOW_US:
        return replace(state, failing=True, last_failed_us=at_us), Act.SEND_FAILED, None
    if state.failing:
        return state, Act.SUPPRESS_FAILED, None
    due = last + FAILED_WINDOW_US
    return replace(state, failing=True, last_failed_us=due), Act.DEFER_FAILED, due


def backoff_us(attempts: int) -> int:
    """How long to wait after the `attempts`-th failed delivery: 10 s, doubling, at most 1 h."""
    if attempts < 1:
        raise ValueError("attempts counts from 1")
    return min(FIRST_RETRY_US << min(attempts - 1, 20), MAX_RETRY_US)


def next_attempt(attempts: int, now_us: int, expires_us: int) -> int | None:
    """When to try again after the `attempts`-th failure; None once it has expired.

    The last attempt is made at the expiry instant itself, so an alert is
    tried for the whole of its `GIVE_UP_AFTER_US`.
    """
    if now_us >= expires_us:
        return None
    return min(now_us + backoff_us(attempts), expires_us)
