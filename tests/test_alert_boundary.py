"""The alert actor's per-alert boundary: a bug met by one alert ends that try only.

Without it an unexpected exception while one alert was built or sent ended
the actor, and with it the daemon (an essential actor); the alert, durable,
was taken again after the restart and met the same bug: a crash loop. No
input was found that raises there (URLs the config accepts, bodies, key
files all end as a failed try), so the bug is stood in for by a signer
that raises: an injected dependency of the actor, not a mock of the
network, which is real (a real `Delivery`, a real target on 127.0.0.1).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
import trio.testing

from jobsd.errors import SigningError
from tests.test_alert_sender import rig
from tests.test_outbox import FAILED_500, ended

SECRET = "whsec_c2VjcmV0IHRoYXQgbXVzdCBuZXZlciBiZSBsb2dnZWQ="


class BrokenOnce:
    """Signs nothing, and raises the first time, with a secret in its message."""

    def __init__(self) -> None:
        self.calls = 0

    def headers_for(self, account: str, run_id: str, body: bytes) -> list[tuple[str, str]]:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError(f"a bug holding {SECRET}")
        return []


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock()  # moved by `jump_when_idle`


async def test_an_alert_that_meets_a_bug_is_tried_again_and_the_actor_lives_on(
    tmp_path: Path, mock_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    signer = BrokenOnce()
    with caplog.at_level(logging.INFO, logger="jobsd.alerts"):
        async with rig(tmp_path, "/alerts", signer) as r:
            t0 = trio.current_time()
            await ended(r.store, "j", FAILED_500)
            await trio.sleep(60)
            held = await r.store.outbox.held()
    failed = r.counted("jobsd_alerts_failed_total", account="acme", type="job.failed")
    (sent,) = r.sent("/alerts")
    assert round(sent.at - t0) == 10  # the first backoff: a failed try like any other
    assert (signer.calls, failed, held) == (2, 1.0, {})
    (bug,) = [r for r in caplog.records if r.getMessage() == "alert failed inside jobsd"]
    assert bug.levelno == logging.ERROR
    assert bug.fields["error"] == "RuntimeError"  # type: ignore[attr-defined]
    assert "test_alert_boundary.py" in bug.fields["where"]  # type: ignore[attr-defined]
    assert SECRET not in caplog.text and "whsec_" not in caplog.text  # never the message


class SecretGone:
    """The account signs, but the key file holds no secret for it (removed by hand)."""

    def headers_for(self, account: str, run_id: str, body: bytes) -> list[tuple[str, str]]:
        raise SigningError(f"account {account!r} has sign_requests on but no secret")


async def test_an_alert_whose_signing_secret_is_gone_is_a_failed_try_never_sent_unsigned(
    tmp_path: Path, mock_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="jobsd.alerts"):
        async with rig(tmp_path, "/alerts", SecretGone()) as r:
            await ended(r.store, "j", FAILED_500)
            await trio.sleep(25)  # two tries: at once and 10 s on
            held = await r.store.outbox.held()
    tries = [
        x for x in caplog.records if x.getMessage() == "alert not delivered; tried again later"
    ]
    assert [x.fields["reason"] for x in tries] == ["SIGNING_SECRET_MISSING"] * 2  # type: ignore[attr-defined]
    assert not [x for x in caplog.records if x.getMessage() == "alert failed inside jobsd"]
    assert r.sent("/alerts") == [] and held == {"acme": 1}
