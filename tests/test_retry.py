"""Retry policy math: examples from the spec's own words, refusals with their
pointers, and hypothesis against a naive oracle that reads the rules
literally (sets of codes spelled out, powers by repeated doubling)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsd.errors import RetryPolicyError
from jobsd.retry import (
    MAX_POLICY_DELAY_S,
    MAX_RETRIES,
    MAX_STATUS_PATTERNS,
    Backoff,
    RetryPolicy,
    retry_after_delay,
    retry_delay,
    should_retry,
    status_pattern_problem,
)
from jobsd.runs import FailureReason

NOW = datetime(2026, 6, 1, 12, 0, 0, 250_000, tzinfo=UTC)
R = FailureReason


def policy(**kw: object) -> RetryPolicy:
    base: dict[str, object] = {"max_retries": 3, "backoff": Backoff.FIXED, "delay_seconds": 10}
    return RetryPolicy(**(base | kw))  # type: ignore[arg-type]


# -- the spec's examples ------------------------------------------------------------


def test_five_xx_minus_501() -> None:
    p = policy(retry_statuses=("5xx",), retry_statuses_except=("501",))
    assert should_retry(p, R.NON_SUCCESS_STATUS, 500, 1)
    assert should_retry(p, R.NON_SUCCESS_STATUS, 599, 1)
    assert not should_retry(p, R.NON_SUCCESS_STATUS, 501, 1)
    assert not should_retry(p, R.NON_SUCCESS_STATUS, 429, 1)
    assert not should_retry(p, R.NON_SUCCESS_STATUS, None, 1)


def test_except_wins_and_an_exception_that_overlaps_nothing_is_harmless() -> None:
    p = policy(retry_statuses=("429", "5xx"), retry_statuses_except=("5xx", "404"))
    assert should_retry(p, R.NON_SUCCESS_STATUS, 429, 1)
    assert not should_retry(p, R.NON_SUCCESS_STATUS, 503, 1)
    assert not should_retry(p, R.NON_SUCCESS_STATUS, 404, 1)


def test_empty_lists_retry_no_status() -> None:
    assert not should_retry(policy(), R.NON_SUCCESS_STATUS, 500, 1)


@pytest.mark.parametrize("reason", [R.SSRF_BLOCKED, R.QUOTA_EXCEEDED, R.WORKER_LOST])
def test_never_retried_whatever_the_policy_says(reason: FailureReason) -> None:
    everything = policy(
        retry_on_timeout=True,
        retry_on_connection_error=True,
        retry_statuses=("1xx", "2xx", "3xx", "4xx", "5xx"),
    )
    for status in (None, 200, 429, 500):
        assert not should_retry(everything, reason, status, 1)


def test_timeouts_and_connection_errors_follow_their_switches() -> None:
    off, on = policy(), policy(retry_on_timeout=True, retry_on_connection_error=True)
    for reason in (R.TIMEOUT, R.CONNECTION_ERROR):
        assert not should_retry(off, reason, None, 1)
        assert should_retry(on, reason, None, 1)
    only_timeout = policy(retry_on_timeout=True)
    assert not should_retry(only_timeout, R.CONNECTION_ERROR, None, 1)


def test_max_retries_counts_retries_after_the_first_attempt() -> None:
    p = policy(max_retries=3, retry_on_timeout=True)
    assert [should_retry(p, R.TIMEOUT, None, a) for a in range(0, 6)] == [
        False,
        True,
        True,
        True,
        False,
        False,
    ]
    assert not should_retry(policy(max_retries=0, retry_on_timeout=True), R.TIMEOUT, None, 1)
    assert not should_retry(None, R.TIMEOUT, None, 1)  # no policy: never retried


def test_fixed_and_exponential_delays() -> None:
    fixed = policy(delay_seconds=30)
    assert [retry_delay(fixed, a, None, NOW, http_status=500) for a in (1, 2, 9)] == [
        timedelta(seconds=30)
    ] * 3
    exp = policy(backoff=Backoff.EXPONENTIAL, delay_seconds=5, max_delay_seconds=60, max_retries=10)
    assert [
        retry_delay(exp, a, None, NOW, http_status=500).total_seconds() for a in range(1, 7)
    ] == [
        5,
        10,
        20,
        40,
        60,
        60,
    ]
    uncapped = policy(backoff="exponential", delay_seconds=1, max_retries=10)
    assert retry_delay(uncapped, 10, None, NOW, http_status=None) == timedelta(seconds=512)
    with pytest.raises(ValueError):
        retry_delay(fixed, 0, None, NOW, http_status=500)


# -- Retry-After (our extension) ----------------------------------------------------


@pytest.mark.parametrize(
    ("status", "header", "expected_s"),
    [
        (429, "120", 120),  # larger than the policy's 10 s
        (503, "120", 120),
        (429, "3", 10),  # smaller: the policy's delay stands
        (500, "120", 10),  # only 429 and 503 are honoured
        (429, None, 10),
        (429, " 120 ", 120),
        (429, "99999999999999999999", 86_400),  # never beyond 24 hours
        (429, "0", 10),
        # garbage is ignored
        (429, "-120", 10),
        (429, "1.5", 10),
        (429, "1e3", 10),
        (429, "soon", 10),
        (429, "", 10),
        (429, "\u0661\u0662\u0660", 10),  # Arabic-Indic digits are not HTTP's
        (429, "Wed, 32 Oct 2026 07:28:00 GMT", 10),
        (429, "1" * 65, 10),
    ],
)
def test_retry_after_seconds(status: int, header: str | None, expected_s: int) -> None:
    got = retry_delay(policy(), 1, header, NOW, http_status=status)
    assert got == timedelta(seconds=expected_s)


def test_retry_after_as_an_http_date_in_every_form_http_allows() -> None:
    at = NOW.replace(microsecond=0) + timedelta(minutes=5)
    forms = [
        format_datetime(at, usegmt=True),  # IMF-fixdate
        at.strftime("%A, %d-%b-%y %H:%M:%S GMT"),  # obsolete RFC 850
        at.strftime("%a %b %d %H:%M:%S %Y"),  # obsolete asctime
    ]
    for form in forms:
        assert retry_delay(policy(), 1, form, NOW, http_status=503) == at - NOW, form
    past = format_datetime(NOW - timedelta(hours=1), usegmt=True)
    assert retry_delay(policy(), 1, past, NOW, http_status=503) == timedelta(seconds=10)
    far = format_datetime(NOW + timedelta(days=30), usegmt=True)
    assert retry_delay(policy(), 1, far, NOW, http_status=503) == timedelta(hours=24)


def test_retry_after_is_still_capped_by_max_delay() -> None:
    exp = policy(backoff=Backoff.EXPONENTIAL, delay_seconds=5, max_delay_seconds=60)
    assert retry_delay(exp, 1, "3600", NOW, http_status=429) == timedelta(seconds=60)
    assert retry_delay(exp, 1, "30", NOW, http_status=429) == timedelta(seconds=30)


def test_a_long_policy_delay_is_not_cut_by_the_headers_ceiling() -> None:
    """The 24-hour ceiling bounds what the header can ask; a policy that asks
    for two days itself keeps them."""
    two_days = policy(delay_seconds=2 * 86_400)
    assert retry_delay(two_days, 1, "60", NOW, http_status=429) == timedelta(days=2)


# -- refusals, each with its pointer ----------------------------------------------


@pytest.mark.parametrize(
    ("kw", "pointer", "words"),
    [
        ({"max_retries": -1}, "max_retries", "0-10"),
        ({"max_retries": MAX_RETRIES + 1}, "max_retries", "0-10"),
        ({"backoff": "linear"}, "backoff", "fixed or exponential"),
        ({"delay_seconds": 0}, "delay_seconds", "1-"),
        ({"delay_seconds": MAX_POLICY_DELAY_S + 1}, "delay_seconds", "1-"),
        ({"max_delay_seconds": 60}, "max_delay_seconds", "only to exponential"),
        (
            {"backoff": "exponential", "max_delay_seconds": 0},
            "max_delay_seconds",
            "1-",
        ),
        ({"retry_statuses": ("5xx", "6xx")}, "retry_statuses/1", "not a status pattern"),
        ({"retry_statuses_except": ("50",)}, "retry_statuses_except/0", "exact code"),
        (
            {"retry_statuses": ("429",) * (MAX_STATUS_PATTERNS + 1)},
            "retry_statuses",
            "at most 100",
        ),
    ],
)
def test_refusals_point_at_the_field(kw: dict[str, object], pointer: str, words: str) -> None:
    with pytest.raises(RetryPolicyError) as info:
        policy(**kw)
    assert [p for p, _ in info.value.problems] == [pointer]
    assert words in info.value.problems[0][1]


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(RetryPolicyError) as info:
        policy(max_retries=11, delay_seconds=0, max_delay_seconds=5, retry_statuses=("x",))
    assert [p for p, _ in info.value.problems] == [
        "max_retries",
        "delay_seconds",
        "max_delay_seconds",
        "retry_statuses/0",
    ]


@pytest.mark.parametrize(
    "pattern",
    [
        "099",
        "600",
        "6xx",
        "0xx",
        "xx",
        "5XX",
        "5x",
        "5xxx",
        "42",
        "4290",
        " 429",
        "429 ",
        "+429",
        "\uff14\uff12\uff19",
        "4\u0662\u0669",
        "",
        "5xX",
        "*",
        "5**",
        "4.29",
    ],
)
def test_status_patterns_that_are_refused(pattern: str) -> None:
    assert status_pattern_problem(pattern) is not None


@pytest.mark.parametrize("pattern", ["100", "199", "200", "429", "599", "1xx", "5xx"])
def test_status_patterns_that_are_accepted(pattern: str) -> None:
    assert status_pattern_problem(pattern) is None


def test_the_policy_is_a_frozen_value() -> None:
    p = policy(retry_statuses=("5xx",))
    with pytest.raises(AttributeError):
        p.max_retries = 5  # type: ignore[misc]
    assert p == policy(retry_statuses=("5xx",))
    assert p.backoff is Backoff.FIXED and policy(backoff="fixed").backoff is Backoff.FIXED


# -- hypothesis against the naive oracle --------------------------------------------

codes = st.integers(100, 599).map(str)
classes = st.sampled_from(["1xx", "2xx", "3xx", "4xx", "5xx"])
patterns = st.lists(st.one_of(codes, classes), max_size=6).map(tuple)


@st.composite
def policies(draw: st.DrawFn) -> RetryPolicy:
    backoff = draw(st.sampled_from(list(Backoff)))
    return RetryPolicy(
        max_retries=draw(st.integers(0, MAX_RETRIES)),
        backoff=backoff,
        delay_seconds=draw(st.integers(1, 100_000)),
        max_delay_seconds=(
            draw(st.none() | st.integers(1, 10**6)) if backoff is Backoff.EXPONENTIAL else None
        ),
        retry_on_timeout=draw(st.booleans()),
        retry_on_connection_error=draw(st.booleans()),
        retry_statuses=draw(patterns),
        retry_statuses_except=draw(patterns),
    )


def naive_matches(status: int, pats: tuple[str, ...]) -> bool:
    return any(p == str(status) or (p[1:] == "xx" and str(status)[0] == p[0]) for p in pats)


@settings(max_examples=500)
@given(
    policies(),
    st.sampled_from(list(FailureReason)),
    st.none() | st.integers(100, 599),
    st.integers(-2, 13),
)
def test_should_retry_matches_the_oracle(
    p: RetryPolicy, reason: FailureReason, status: int | None, attempt: int
) -> None:
    if not 1 <= attempt <= p.max_retries:
        expected = False
    elif reason == "TIMEOUT":
        expected = p.retry_on_timeout
    elif reason == "CONNECTION_ERROR":
        expected = p.retry_on_connection_error
    elif reason == "NON_SUCCESS_STATUS":
        expected = (
            status is not None
            and naive_matches(status, p.retry_statuses)
            and not naive_matches(status, p.retry_statuses_except)
        )
    else:
        expected = False
    assert should_retry(p, reason, status, attempt) is expected


retry_afters = st.one_of(
    st.none(),
    st.integers(0, 200_000).map(str),
    st.integers(-3600, 40 * 86_400).map(
        lambda s: format_datetime(NOW.replace(microsecond=0) + timedelta(seconds=s), usegmt=True)
    ),
    st.text(alphabet="abcdefGMTxyz ,:-+.", max_size=20),  # no digit: never a delay or date
)


@settings(max_examples=500)
@given(
    policies(),
    st.integers(1, MAX_RETRIES),
    retry_afters,
    st.sampled_from([None, 200, 429, 500, 503]),
)
def test_retry_delay_matches_the_oracle(
    p: RetryPolicy, attempt: int, header: str | None, status: int | None
) -> None:
    seconds = p.delay_seconds
    if p.backoff == "exponential":
        for _ in range(attempt - 1):
            seconds *= 2
        if p.max_delay_seconds is not None:
            seconds = min(seconds, p.max_delay_seconds)
    expected = timedelta(seconds=min(seconds, MAX_POLICY_DELAY_S))  # the year-long ceiling
    asked: timedelta | None = None
    if status in (429, 503) and header is not None:
        text = header.strip()
        if text.isascii() and text.isdigit():
            asked = timedelta(seconds=min(int(text), 86_400))
        elif any(c.isdigit() for c in text):  # a date: the junk above has no digit
            when = datetime.strptime(text, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC)
            asked = max(when - NOW, timedelta(0))
    if asked is not None:
        ceiling = timedelta(hours=24)
        if p.max_delay_seconds is not None:
            ceiling = min(ceiling, timedelta(seconds=p.max_delay_seconds))
        expected = max(expected, min(asked, ceiling))
    got = retry_delay(p, attempt, header, NOW, http_status=status)
    assert got == expected
    assert got >= timedelta(seconds=1)
    if p.max_delay_seconds is not None:
        assert got <= timedelta(seconds=p.max_delay_seconds)


@settings(max_examples=300)
@given(st.text(max_size=80))
def test_any_retry_after_text_is_a_delay_or_ignored(text: str) -> None:
    got = retry_after_delay(text, NOW)
    assert got is None or got >= timedelta(0)


# -- edges that mutation testing found unpinned --------------------------------------


def test_exponential_doubling_stops_at_the_year_ceiling() -> None:
    half_year = policy(backoff=Backoff.EXPONENTIAL, delay_seconds=MAX_POLICY_DELAY_S // 2)
    year = timedelta(seconds=MAX_POLICY_DELAY_S)
    assert retry_delay(half_year, 3, None, NOW, http_status=None) == year
    # 2^29 seconds is past a year: the doubling must not be cut short before that
    one_second = policy(backoff=Backoff.EXPONENTIAL, delay_seconds=1)
    assert retry_delay(one_second, 30, None, NOW, http_status=None) == year


def test_a_retry_after_date_in_the_past_is_no_wait() -> None:
    past = format_datetime(NOW - timedelta(hours=1), usegmt=True)
    assert retry_after_delay(past, NOW) == timedelta(0)


def test_a_retry_after_date_without_its_day_name_is_ignored() -> None:
    # RFC 2822 allows it, every HTTP-date form starts with the day's name
    assert retry_after_delay("21 Oct 2026 07:28:00 GMT", NOW) is None


def test_exactly_the_most_status_patterns_are_accepted() -> None:
    full = policy(retry_statuses=("429",) * MAX_STATUS_PATTERNS)
    assert full.retried_statuses == frozenset({429})
