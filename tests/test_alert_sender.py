"""The alert actor over a real store, a real `Delivery` and a real target, on MockClock.

No scheduler or executors here (their periodic wake-ups would make a mock
day cost minutes of real time): runs end through the store's own API, as
an executor ends them, and the actor delivers what their transactions
wrote. Proved at exact mock instants: one `job.failed` per 10 minutes,
deferred to the window's end and folded, or dropped by a success; the
backoff (10 s doubling to an hour) until the alert expires, then a drop
with one warning line and the metric; alerts of one job in order even while the
older one is retried.
"""

from __future__ import annotations

import itertools
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from jobsd.address_policy import AddressPolicy
from jobsd.alerts import CONCURRENCY, AlertSender, AlertTarget, Signer
from jobsd.clock import Clock, to_us
from jobsd.crypto import KeyRing
from jobsd.delivery import Delivery, default_resolver
from jobsd.job_model import HttpConfig
from jobsd.lookup_threads import LookupThreads
from jobsd.observer import Observer
from jobsd.settings import Settings
from jobsd.store import Store, open_store
from tests.conftest import make_config
from tests.idle_clock import jump_when_idle
from tests.model import ENV, create_job, seed_job
from tests.target import Received, Target, open_target
from tests.test_outbox import FAILED_500, OK, Policies, ended, make_job

T0 = datetime(2026, 6, 5, 2, 0, tzinfo=UTC)
MINUTE = 60.0


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock()  # moved by `jump_when_idle`, started in `rig`


@dataclass
class Rig:
    store: Store
    observer: Observer
    target: Target
    clock: Clock

    def sent(self, path: str) -> list[Received]:
        return [r for r in self.target.received if r.path == path]

    def counted(self, name: str, **labels: str) -> float:
        value = self.observer.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@asynccontextmanager
async def rig(
    tmp_path: Path,
    path: str | None,
    signer: Signer | None = None,
    concurrency: int = CONCURRENCY,
) -> AsyncIterator[Rig]:
    """The alert actor on a real store and a real target; `signer`: the account signs;
    `path` None: the account has no `alert_url` (any more)."""
    observer = Observer(Settings(make_config(tmp_path)))
    clock = Clock(T0)
    keyring = KeyRing.load_or_create(tmp_path / "key")
    async with (
        open_target() as target,
        open_store(
            tmp_path / "db", keyring, clock, None, observer, alert_policies=Policies()
        ) as store,
    ):
        assert store.alerts is not None
        sender = AlertSender(
            store.outbox,
            store.alerts,
            Delivery(AddressPolicy(["127.0.0.1/32"])),
            lambda account: (
                None if path is None else AlertTarget(f"{target.url}{path}", signer is not None)
            ),
            clock,
            signer=signer,
            metrics=observer,
            concurrency=concurrency,
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(jump_when_idle)
            await nursery.start(sender.run)
            await make_job(store, "j")
            yield Rig(store, observer, target, clock)
            nursery.cancel_scope.cancel()


def kind(received: Received) -> str:
    return str(json.loads(received.body)["type"])


def run_of(received: Received) -> str:
    return str(json.loads(received.body)["data"]["run"]["id"])


async def test_one_failed_alert_per_window_deferred_folded_or_dropped(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    async with rig(tmp_path, "/alerts") as r:
        t0 = trio.current_time()

        async def at(minutes: float, outcome: object) -> str:
            await trio.sleep_until(t0 + minutes * MINUTE)
            return await ended(r.store, "j", outcome)  # type: ignore[arg-type]

        await at(0, FAILED_500)  # job.failed at once
        await at(1, OK)  # job.recovered
        await at(2, FAILED_500)  # inside the window, after a recovery: deferred
        newest = await at(3, FAILED_500)  # folded into the deferred one
        await trio.sleep_until(t0 + 11 * MINUTE)
        got = r.sent("/alerts")
        assert [kind(a) for a in got] == ["job.failed", "job.recovered", "job.failed"]
        assert run_of(got[2]) == newest
        assert got[2].at == pytest.approx(t0 + 10 * MINUTE, abs=0.01)  # the window's end
        await at(12, OK)  # job.recovered
        await at(13, FAILED_500)  # deferred to minute 20...
        await at(14, OK)  # ...and dropped: the receiver never hears of that failure
        await trio.sleep_until(t0 + 25 * MINUTE)
        assert len(r.sent("/alerts")) == 4
        await at(26, FAILED_500)  # a new window: at once
        await at(27, FAILED_500)  # still failing, inside it: suppressed
        await trio.sleep_until(t0 + 40 * MINUTE)
        kinds = [kind(a) for a in r.sent("/alerts")]
        failed_at = [a.at for a in r.sent("/alerts") if kind(a) == "job.failed"]
        suppressed = r.counted(
            "jobsd_alerts_dropped_total", account="acme", type="job.failed", outcome="suppressed"
        )
        sent = r.counted("jobsd_alerts_sent_total", account="acme", type="job.recovered")
    assert kinds == ["job.failed", "job.recovered", "job.failed", "job.recovered", "job.failed"]
    assert all(b - a >= 10 * MINUTE for a, b in itertools.pairwise(failed_at))
    assert (suppressed, sent) == (3, 2)  # folded, dropped, suppressed


async def test_an_alert_is_retried_with_backoff_until_it_expires_then_dropped(
    tmp_path: Path, mock_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The store gives an alert 24 hours (tests/test_outbox.py) and the rules try it
    through them (tests/test_alert_rules.py); here, what the actor does with the
    expiry an alert carries, made 3 hours so the walk costs 13 tries, not 34."""
    async with rig(tmp_path, "/status/503") as r:
        with caplog.at_level(logging.INFO, logger="jobsd.alerts"):
            await ended(r.store, "j", FAILED_500)
            await r.store.engine.write(
                lambda c: c.execute(
                    "UPDATE alert_outbox SET expires_at_us = due_us + ?", (3 * 3600 * 1_000_000,)
                )
            )
            await trio.sleep(4 * 3600)
        tries = r.sent("/status/503")
        failed = r.counted("jobsd_alerts_failed_total", account="acme", type="job.failed")
        expired = r.counted(
            "jobsd_alerts_dropped_total", account="acme", type="job.failed", outcome="expired"
        )
        held = await r.store.outbox.held()
    gaps = [round(b.at - a.at) for a, b in itertools.pairwise(tries)]
    assert gaps[:10] == [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]
    assert set(gaps[10:-1]) <= {3600} and 0 < gaps[-1] <= 3600
    assert round(tries[-1].at - tries[0].at) == 3 * 3600  # the last at the expiry itself
    assert len({a.headers["x-jobsd-alert-id"] for a in tries}) == 1
    # Unsigned (this rig has no signer), each try still names itself by webhook-id,
    # which receivers deduplicate on (OPERATIONS.md), and carries no signature.
    assert {a.headers.get("webhook-id") for a in tries} == {tries[0].headers["x-jobsd-alert-id"]}
    assert not any("webhook-signature" in a.headers for a in tries)
    assert len({a.body for a in tries}) == 1  # one id, one content
    assert (failed, expired, held) == (len(tries), 1, {})
    dropped = [x for x in caplog.records if x.getMessage() == "alert dropped"]
    assert len(dropped) == 1 and dropped[0].levelno == logging.WARNING
    assert dropped[0].fields["outcome"] == "expired"  # type: ignore[attr-defined]
    port = r.target.url.rsplit(":", 1)[1]
    allowed = {"account", "type", "alert", "attempt", "attempts", "reason", "http_status"}
    for record in caplog.records:  # never the URL, a header or the body
        fields = getattr(record, "fields", {})
        assert set(fields) <= allowed | {"outcome", "retry_in_s"}, fields
        text = f"{record.getMessage()} {fields}"
        assert port not in text and "127.0.0.1" not in text and "finished_at" not in text


async def test_an_alert_waits_for_the_older_one_of_its_job_while_that_is_retried(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    path = "/flaky/order/2/503"  # two refusals, then 200
    async with rig(tmp_path, path) as r:
        await ended(r.store, "j", FAILED_500)
        await ended(r.store, "j", OK)
        await trio.sleep(5 * MINUTE)
        got = r.sent(path)
    assert [kind(a) for a in got] == ["job.failed"] * 3 + ["job.recovered"]
    assert [round(b.at - a.at) for a, b in itertools.pairwise(got[:3])] == [10, 20]


async def test_a_clock_that_moved_ahead_sends_what_came_due_meanwhile_at_once(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    """The machine slept, or the clock was stepped ahead (`jobsd.clock_watch` re-anchors
    the daemon's clock): a deferred `job.failed` whose wall instant passed meanwhile
    goes out then, not after the rest of a wait reckoned on the old anchor."""
    async with rig(tmp_path, "/alerts") as r:
        await ended(r.store, "j", FAILED_500)  # job.failed at once
        await ended(r.store, "j", OK)  # job.recovered
        await ended(r.store, "j", FAILED_500)  # deferred to the window's end, 10 min on
        await trio.sleep(MINUTE)
        assert [kind(a) for a in r.sent("/alerts")] == ["job.failed", "job.recovered"]
        moved_at = trio.current_time()
        r.clock.reanchor(r.clock.now() + timedelta(minutes=30))  # asleep for 30 minutes
        await trio.sleep(MINUTE)
        got = r.sent("/alerts")
    assert [kind(a) for a in got] == ["job.failed", "job.recovered", "job.failed"]
    assert got[2].at - moved_at < 1


async def test_a_clock_stepped_back_sends_a_deferred_alert_no_earlier_than_its_instant(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    async with rig(tmp_path, "/alerts") as r:
        await ended(r.store, "j", FAILED_500)
        await ended(r.store, "j", OK)
        await ended(r.store, "j", FAILED_500)  # deferred to the window's end, 10 min on
        await trio.sleep(MINUTE)
        moved_at = trio.current_time()
        r.clock.reanchor(r.clock.now() - timedelta(minutes=30))  # stepped back 30 minutes
        await trio.sleep(45 * MINUTE)
        got = r.sent("/alerts")
    assert [kind(a) for a in got] == ["job.failed", "job.recovered", "job.failed"]
    assert got[2].at - moved_at == pytest.approx(39 * MINUTE, abs=1)  # 9 + 30 minutes on


async def test_an_alert_url_whose_name_never_resolves_holds_only_its_accounts_lookups(
    tmp_path: Path,
) -> None:
    """Alerts of every account shared one share of the name-lookup threads: two
    accounts whose alert_url names a host whose nameserver never answers held
    all of it, and every other account's alerts to any name then waited out
    their timeout. An alert's lookups count against its account, as its runs'
    do. Real time: a hanging lookup is a thread mock time would wait for."""
    never = threading.Event()
    hanging: list[str] = []

    def lookup(host: str, port: int, *args: object) -> list[Any]:
        if host == "fine.test":
            return socket.getaddrinfo("127.0.0.1", port, *args)  # type: ignore[arg-type]
        hanging.append(host)
        never.wait(30)  # a nameserver that never answers, until the test ends
        return []

    noisy = ("noisy-a", "noisy-b")
    policies = Policies(alerting={*noisy, "quiet"})
    keyring = KeyRing.load_or_create(tmp_path / "key")
    delivery = Delivery(
        AddressPolicy(["127.0.0.1/32"]), resolver=default_resolver(LookupThreads(8), lookup)
    )
    try:
        async with (
            open_target() as target,
            open_store(
                tmp_path / "db", keyring, Clock(), None, None, alert_policies=policies
            ) as store,
        ):
            assert store.alerts is not None
            port = target.url.rsplit(":", 1)[1]

            def target_of(account: str) -> AlertTarget:
                host = "fine.test" if account == "quiet" else "hang.test"
                return AlertTarget(f"http://{host}:{port}/alert/{account}", False)

            sender = AlertSender(store.outbox, store.alerts, delivery, target_of, Clock())
            async with trio.open_nursery() as nursery:
                await nursery.start(sender.run)
                for account in noisy:  # two jobs each: an account's 2 alerts in flight
                    for slug in ("j1", "j2"):
                        await fail_once(store, account, slug)
                with trio.fail_after(5):
                    while len(hanging) < 4:
                        await trio.sleep(0.01)
                await fail_once(store, "quiet", "j1")
                with trio.move_on_after(5):
                    while not any(r.path == "/alert/quiet" for r in target.received):
                        await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
        assert [r.path for r in target.received] == ["/alert/quiet"]
    finally:
        never.set()


async def fail_once(store: Store, account: str, slug: str) -> None:
    """A job of `account` whose one run fails for good: a `job.failed` due now."""
    write = seed_job(slug, slug, None, True, "0 0 1 1 *", HttpConfig(url="https://x.invalid/"))
    await create_job(store, account, write)
    run = await store.runs.enqueue_manual(account, slug, ENV, require_enabled=False, max_pending=10)
    claim = await store.runs.claim(run.id, lambda _: -1)
    assert claim is not None
    assert await store.runs.finish(run.id, FAILED_500)


async def test_no_more_alerts_in_flight_than_the_actors_concurrency(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    # One account may hold two places (PER_ACCOUNT), but never more than the actor has.
    async with rig(tmp_path, "/hang", concurrency=1) as r:
        await make_job(r.store, "k")
        await ended(r.store, "j", FAILED_500)
        await ended(r.store, "k", FAILED_500)  # another job: nothing holds it back but room
        await trio.sleep(5)  # inside the first try's 10 s
        in_flight = len(r.sent("/hang"))
        await trio.sleep(10)  # the first try timed out: its place went to the other
        tried = {run_of(a) for a in r.sent("/hang")}
    assert in_flight == 1 and len(tried) == 2


async def test_an_alert_whose_account_has_no_alert_url_left_leaves_the_outbox(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    # Dropped only in words, it stayed in the outbox taken for ever, and held back
    # every later alert of its job until a restart.
    async with rig(tmp_path, None) as r:
        await ended(r.store, "j", FAILED_500)
        await trio.sleep(MINUTE)
        held = await r.store.outbox.held()
        dropped = r.counted(
            "jobsd_alerts_dropped_total", account="acme", type="job.failed", outcome="no_alert_url"
        )
    assert (held, dropped) == ({}, 1) and r.target.received == []


async def test_an_alert_that_expired_while_it_waited_is_dropped_and_counted(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    # Found expired when the actor takes (it waited, held back, for 24 hours): it
    # leaves the outbox with a warning line and jobsd_alerts_dropped_total, as one
    # that expired while retried does.
    async with rig(tmp_path, "/alerts") as r:
        now_us = to_us(r.clock.now())
        hour_us = 3600 * 1_000_000
        await r.store.engine.write(
            lambda c: c.execute(
                "INSERT INTO alert_outbox (id, account_id, job_id, environment, type, body,"
                " created_at_us, due_us, expires_at_us) VALUES ('late', 'acme', 1,"
                " 'production', 'job.failed', '{}', ?, ?, ?)",
                (now_us - 2 * hour_us, now_us - 2 * hour_us, now_us - hour_us),
            )
        )
        r.clock.reanchor(r.clock.now())  # wakes the actor: it takes afresh
        await trio.sleep(MINUTE)
        held = await r.store.outbox.held()
        expired = r.counted(
            "jobsd_alerts_dropped_total", account="acme", type="job.failed", outcome="expired"
        )
    assert (held, expired, r.sent("/alerts")) == ({}, 1, [])
