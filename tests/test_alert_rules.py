"""The alert rules (`jobsd.alert_rules`), pure: tables, and hypothesis walks
of long histories against what the receiver must end up hearing."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsd.alert_rules import (
    FAILED_WINDOW_US,
    FIRST_RETRY_US,
    GIVE_UP_AFTER_US,
    MAX_RETRY_US,
    Act,
    AlertState,
    Decision,
    Verdict,
    backoff_us,
    decide,
    next_attempt,
    verdict,
)

S = 1_000_000
MINUTE = 60 * S


@pytest.mark.parametrize(
    ("status", "reason", "retried", "expected"),
    [
        ("SUCCEEDED", None, False, Verdict.SUCCESS),
        ("FAILED", "TIMEOUT", False, Verdict.FAILURE),
        ("FAILED", "NON_SUCCESS_STATUS", True, Verdict.NEUTRAL),  # a retry follows it
        ("FAILED", "WORKER_LOST", False, Verdict.FAILURE),
        ("FAILED", "SSRF_BLOCKED", False, Verdict.FAILURE),
        ("FAILED", "QUOTA_EXCEEDED", False, Verdict.NEUTRAL),
        ("CANCELED", None, False, Verdict.NEUTRAL),
    ],
)
def test_what_a_run_end_means(
    status: str, reason: str | None, retried: bool, expected: Verdict
) -> None:
    assert verdict(status, reason, retried=retried) is expected


def _decide(
    state: AlertState, seen: Verdict, at: int, **kw: object
) -> tuple[AlertState, tuple[Act, ...]]:
    options: dict[str, object] = {
        "deferred_open": True,
        "enabled": True,
        "auto_pause_after": 0,
        "alerting": True,
    }
    options.update(kw)
    decision = decide(state, seen, at, **options)  # type: ignore[arg-type]
    return decision.state, decision.acts


def test_a_failing_job_is_told_once_per_window_and_recovers_once() -> None:
    state, acts = _decide(AlertState(), Verdict.FAILURE, 0)
    assert acts == (Act.SEND_FAILED,) and state == AlertState(1, True, 0)
    state, acts = _decide(state, Verdict.FAILURE, 5 * MINUTE)
    assert acts == (Act.SUPPRESS_FAILED,) and state.streak == 2
    state, acts = _decide(state, Verdict.FAILURE, 10 * MINUTE)  # the window is over
    assert acts == (Act.SEND_FAILED,) and state.last_failed_us == 10 * MINUTE
    state, acts = _decide(state, Verdict.SUCCESS, 11 * MINUTE)
    assert acts == (Act.SEND_RECOVERED,) and state == AlertState(0, False, 10 * MINUTE)
    state, acts = _decide(state, Verdict.SUCCESS, 12 * MINUTE)
    assert acts == () and state == AlertState(0, False, 10 * MINUTE)


def test_a_failure_after_a_recovery_inside_the_window_waits_for_its_end() -> None:
    state, _ = _decide(AlertState(), Verdict.FAILURE, 0)
    state, _ = _decide(state, Verdict.SUCCESS, MINUTE)
    decision = decide(
        state,
        Verdict.FAILURE,
        2 * MINUTE,
        deferred_open=False,
        enabled=True,
        auto_pause_after=0,
        alerting=True,
    )
    assert decision.acts == (Act.DEFER_FAILED,) and decision.due_us == FAILED_WINDOW_US
    state = decision.state.__class__(**{**_fields(decision.state), "deferred": "d1"})
    state, acts = _decide(state, Verdict.FAILURE, 3 * MINUTE)
    assert acts == (Act.FOLD_FAILED,) and state.deferred == "d1"
    # A success before it is sent: the receiver never hears of that failure.
    state, acts = _decide(state, Verdict.SUCCESS, 4 * MINUTE)
    assert acts == (Act.DROP_DEFERRED,)
    assert state == AlertState(0, False, 0, None)  # the window of the alert that was sent


def _fields(state: AlertState) -> dict[str, object]:
    return {
        "streak": state.streak,
        "failing": state.failing,
        "last_failed_us": state.last_failed_us,
        "deferred": state.deferred,
    }


def test_auto_pause_counts_failures_and_starts_again() -> None:
    state = AlertState()
    acts: tuple[Act, ...] = ()
    for n in range(3):
        state, acts = _decide(state, Verdict.FAILURE, n * S, auto_pause_after=3)
    assert Act.PAUSE in acts and state.streak == 0
    state, acts = _decide(state, Verdict.FAILURE, 4 * S, auto_pause_after=3, enabled=False)
    assert Act.PAUSE not in acts and state.streak == 1
    # Neutral ends change nothing; a success resets the count.
    assert _decide(state, Verdict.NEUTRAL, 5 * S, auto_pause_after=3) == (state, ())
    state, _ = _decide(state, Verdict.SUCCESS, 6 * S, auto_pause_after=3)
    assert state.streak == 0


def test_without_an_alert_url_only_the_count_and_the_pause_are_kept() -> None:
    state, acts = _decide(AlertState(), Verdict.FAILURE, 0, alerting=False, auto_pause_after=1)
    assert acts == (Act.PAUSE,) and state == AlertState()
    state, acts = _decide(AlertState(streak=1), Verdict.SUCCESS, 0, alerting=False)
    assert acts == () and state == AlertState()


def test_a_pause_drops_a_deferred_failure_and_tells_it_at_once() -> None:
    state = AlertState(streak=1, failing=True, last_failed_us=10 * MINUTE, deferred="d")
    state, acts = _decide(state, Verdict.FAILURE, 2 * MINUTE, auto_pause_after=2)
    assert acts == (Act.DROP_DEFERRED, Act.PAUSE)
    assert state.deferred is None and state.failing and state.streak == 0


# -- long histories ------------------------------------------------------------------


@dataclass
class Receiver:
    """What a receiver hears, with deferred alerts sent at their instant."""

    failed_sent_at: list[int] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    pauses: int = 0
    deferred_due: int | None = None

    def advance(self, now: int) -> None:
        if self.deferred_due is not None and self.deferred_due <= now:
            self.failed_sent_at.append(self.deferred_due)
            self.words.append("failed")
            self.deferred_due = None


steps = st.lists(
    st.tuples(
        st.sampled_from([Verdict.SUCCESS, Verdict.FAILURE, Verdict.FAILURE, Verdict.NEUTRAL]),
        st.integers(0, 15 * MINUTE),
        st.booleans(),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(steps, st.integers(0, 4))
def test_histories_against_the_receiver(
    history: list[tuple[Verdict, int, bool]], pause_after: int
) -> None:
    """Whatever happens, `job.failed` goes out at most once per window, a
    recovery is told only after a failure, and the last word the receiver
    hears matches the job's last outcome."""
    state = AlertState()
    heard = Receiver()
    now = 0
    enabled = True
    for seen, gap, reenable in history:
        now += gap
        heard.advance(now)
        enabled = enabled or reenable
        decision = decide(
            state,
            seen,
            now,
            deferred_open=heard.deferred_due is not None,
            enabled=enabled,
            auto_pause_after=pause_after,
            alerting=True,
        )
        state = decision.state
        for act in decision.acts:
            if act is Act.SEND_FAILED:
                heard.failed_sent_at.append(now)
                heard.words.append("failed")
            elif act is Act.DEFER_FAILED:
                assert decision.due_us is not None
                assert now < decision.due_us <= now + FAILED_WINDOW_US
                heard.deferred_due = decision.due_us
                state = AlertState(state.streak, state.failing, state.last_failed_us, "d")
            elif act is Act.DROP_DEFERRED:
                heard.deferred_due = None
            elif act is Act.SEND_RECOVERED:
                assert heard.words and heard.words[-1] != "recovered"
                heard.words.append("recovered")
            elif act is Act.PAUSE:
                heard.words.append("paused")
                enabled = False
    heard.advance(now + 2 * FAILED_WINDOW_US)
    sent = heard.failed_sent_at
    assert all(b - a >= FAILED_WINDOW_US for a, b in itertools.pairwise(sent))
    last = next((s for s, _, _ in reversed(history) if s is not Verdict.NEUTRAL), None)
    if last is Verdict.FAILURE:
        assert heard.words[-1] in ("failed", "paused")
    elif last is Verdict.SUCCESS and heard.words:
        assert heard.words[-1] == "recovered"


def _pauses(history: list[Verdict], n: int) -> int:
    """The naive count: a pause at every n-th failure in a row (no success between)."""
    pauses = run = 0
    for seen in history:
        if seen is Verdict.SUCCESS:
            run = 0
        elif seen is Verdict.FAILURE:
            run += 1
            if run == n:
                pauses, run = pauses + 1, 0
    return pauses


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(list(Verdict)), max_size=80), st.integers(1, 5))
def test_pauses_against_a_naive_count(history: list[Verdict], n: int) -> None:
    state = AlertState()
    pauses = 0
    for i, seen in enumerate(history):
        decision = decide(
            state, seen, i * S, deferred_open=False, enabled=True, auto_pause_after=n, alerting=True
        )
        state = decision.state
        pauses += Act.PAUSE in decision.acts
    assert pauses == _pauses(history, n)


def test_backoff_doubles_from_ten_seconds_to_an_hour() -> None:
    assert [backoff_us(n) // S for n in range(1, 11)] == [
        10,
        20,
        40,
        80,
        160,
        320,
        640,
        1280,
        2560,
        3600,
    ]
    assert backoff_us(10_000) == MAX_RETRY_US and backoff_us(1) == FIRST_RETRY_US
    with pytest.raises(ValueError):
        backoff_us(0)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, GIVE_UP_AFTER_US))
def test_an_alert_is_tried_until_it_expires_and_never_after(start: int) -> None:
    expires = start + GIVE_UP_AFTER_US
    now, attempts = start, 0
    while True:
        attempts += 1
        due = next_attempt(attempts, now, expires)
        if due is None:
            break
        assert now < due <= expires
        now = due
    assert now == expires  # the last try is at the expiry instant itself
    assert 20 <= attempts <= 40


# -- edges that mutation testing found unpinned --------------------------------------


def test_a_disabled_environment_is_not_paused_again() -> None:
    d = decide(
        AlertState(streak=2, failing=True, last_failed_us=0),
        Verdict.FAILURE,
        1,
        deferred_open=False,
        enabled=False,
        auto_pause_after=3,
        alerting=True,
    )
    assert Act.PAUSE not in d.acts and d.state.streak == 3


def test_without_an_alert_url_a_success_keeps_the_receiver_side_fields() -> None:
    told = AlertState(streak=2, failing=True, last_failed_us=0)
    d = decide(
        told,
        Verdict.SUCCESS,
        1,
        deferred_open=False,
        enabled=True,
        auto_pause_after=0,
        alerting=False,
    )
    assert d == Decision(AlertState(streak=0, failing=True, last_failed_us=0))


def test_a_deferred_alert_already_taken_by_the_actor_is_recovered_not_dropped() -> None:
    due = FAILED_WINDOW_US
    sent = AlertState(streak=1, failing=True, last_failed_us=due, deferred="alert-1")
    d = decide(
        sent,
        Verdict.SUCCESS,
        due + 1,
        deferred_open=False,
        enabled=True,
        auto_pause_after=0,
        alerting=True,
    )
    assert d.acts == (Act.SEND_RECOVERED,) and not d.state.failing
