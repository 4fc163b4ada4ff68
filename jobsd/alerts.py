"""The alert actor: delivers the outbox's alerts to each account's `alert_url`.

An actor of its own, with its own small concurrency (`concurrency`, and at
most `per_account` alerts of one account in flight), so alerts never take
an executor from a run, and an account whose receiver hangs or refuses
delays its own alerts only. Alerts go out through the same `Delivery` as
job runs: the same address policy where the socket is opened, the same
bounds, `POST` with `Content-Type: application/json`, and, when the
account's `sign_requests` is on, Standard Webhooks signatures whose
`webhook-id` is the alert's id (`jobsd.signing_secrets.RequestSigner`).
An unsigned alert carries that `webhook-id` too: OPERATIONS.md has
receivers deduplicate alerts on it, whether or not they are signed.

What it sends is what the store wrote (`jobsd.store.outbox`): the body is
fixed, so every attempt of an id carries the same bytes; `webhook-timestamp`
is each attempt's own, as the Standard Webhooks spec has it. A 2xx answer
delivers; anything else (another status, a timeout, a refused address, a
signing secret gone) is tried again after `jobsd.alert_rules.backoff_us`
(10 s doubling, at most an hour), until 24 hours after the alert was due;
then it is dropped, with a warning line and `jobsd_alerts_dropped_total`.
An alert whose account no longer has an `alert_url` (a reload removed it)
is dropped the same way. An unexpected exception while one alert is tried
(a bug) is a failed try too, logged with its type and line only: it used
to end the actor (an essential one) and so the daemon, and the durable
alert met it again after each restart. A store that fails while a try is
settled still ends the actor. Log lines name the account, the alert's type and
id and, for a failed try, the failure reason and HTTP status: never the
URL, a header or the body.

It wakes when a commit writes an alert (`AlertRecorder.next_write`), when
a delivery ends (room for the next), at the next due instant, read from
the store, or when the daemon's clock is re-anchored (a step, or a machine
that slept: `jobsd.clock_watch`), since the wait for that instant was
reckoned on the old anchor; the clock is the daemon's (`jobsd.clock`), so
tests drive the backoff and the 24 hours on trio's MockClock. At start it puts back in line
what a crash left in flight (`OutboxStore.reset_sending`). Stopping cancels
deliveries in flight: they stay in the outbox and go out after the next
start.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import trio

from jobsd.alert_rules import next_attempt
from jobsd.clock import Clock, from_us, to_us
from jobsd.errors import SigningError
from jobsd.job_model import Header, HttpConfig
from jobsd.logs import failure, fields
from jobsd.lookup_threads import LOOKUP_SCOPE
from jobsd.messages import Outcome
from jobsd.runs import RunStatus
from jobsd.store.outbox import AlertRecorder
from jobsd.store.outbox_queue import OutboxAlert, OutboxStore

log = logging.getLogger("jobsd.alerts")

TIMEOUT_S = 10
CONCURRENCY = 8
PER_ACCOUNT = 2
JSON = Header("Content-Type", "application/json")


@dataclass(frozen=True, slots=True)
class AlertTarget:
    url: str
    signs: bool


class Performer(Protocol):
    async def perform(
        self, config: HttpConfig, *, stamp: Sequence[tuple[str, str]] = ()
    ) -> Outcome: ...


class Signer(Protocol):
    def headers_for(self, account: str, run_id: str, body: bytes) -> list[tuple[str, str]]: ...


class AlertMetrics(Protocol):
    def alert_sent(self, account: str, alert_type: str) -> None: ...

    def alert_failed(self, account: str, alert_type: str) -> None: ...

    def alerts_dropped(self, account: str, alert_type: str, outcome: str) -> None: ...


class AlertSender:
    def __init__(
        self,
        outbox: OutboxStore,
        recorder: AlertRecorder,
        delivery: Performer,
        target_of: Callable[[str], AlertTarget | None],
        clock: Clock,
        *,
        signer: Signer | None = None,
        metrics: AlertMetrics | None = None,
        concurrency: int = CONCURRENCY,
        per_account: int = PER_ACCOUNT,
    ) -> None:
        self._outbox = outbox
        self._recorder = recorder
        self._delivery = delivery
        self._target_of = target_of
        self._clock = clock
        self._signer = signer
        self._metrics = metrics
        self._concurrency = concurrency
        self._per_account = per_account
        self._busy: dict[str, int] = {}
        self._freed = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        again = await self._outbox.reset_sending()
        if again:
            log.info("alerts in flight at the last stop are due again", extra=fields(count=again))
        reached_us = 0  # a due instant waited for: reached, whatever rounding says
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                written, freed = self._recorder.next_write(), self._freed
                moved = self._clock.moved()  # a wait reckoned on the old anchor is stale
                now_us = max(to_us(self._clock.now()), reached_us)
                room = self._concurrency - sum(self._busy.values())
                taken = await self._outbox.take(now_us, room, self._busy, self._per_account)
                for alert in taken.expired:
                    self._dropped(alert, "expired")
                for alert in taken.alerts:
                    self._busy[alert.account_id] = self._busy.get(alert.account_id, 0) + 1
                    nursery.start_soon(self._send, alert)
                next_us = await self._outbox.next_due_us(now_us)
                deadline = math.inf if next_us is None else self._clock.to_trio(from_us(next_us))
                with trio.move_on_at(deadline) as waited:
                    async with trio.open_nursery() as waiting:
                        for event in (written, freed, moved):
                            waiting.start_soon(_wait_then_cancel, event, waiting.cancel_scope)
                reached_us = next_us if waited.cancelled_caught and next_us is not None else 0

    async def _send(self, alert: OutboxAlert) -> None:
        try:
            try:
                await self._attempt(alert)
            except Exception as exc:  # the per-alert boundary
                # Raised here it ended the actor and the daemon, and the alert, durable,
                # met the same bug after the restart: a crash loop. A failed try instead.
                # Never the message: it may hold the URL, a header or a secret.
                log.error(
                    "alert failed inside jobsd",
                    extra=fields(
                        account=alert.account_id,
                        type=alert.type,
                        alert=alert.id,
                        **failure(exc),
                    ),
                )
                await self._failed(alert, "JOBSD_ERROR", None)
        finally:
            self._busy[alert.account_id] -= 1
            if not self._busy[alert.account_id]:
                del self._busy[alert.account_id]
            self._freed.set()
            self._freed = trio.Event()

    async def _attempt(self, alert: OutboxAlert) -> None:
        target = self._target_of(alert.account_id)
        if target is None:
            await self._outbox.drop(alert.id)
            self._dropped(alert, "no_alert_url")
            return
        config = HttpConfig(
            url=target.url, method="POST", headers=(JSON,), body=alert.body, timeout_s=TIMEOUT_S
        )
        stamp = [("X-Jobsd-Alert-Id", alert.id)]
        outcome: Outcome | None = None
        try:
            if target.signs and self._signer is not None:
                stamp += self._signer.headers_for(alert.account_id, alert.id, config.payload())
            if all(name != "webhook-id" for name, _ in stamp):  # unsigned: still named by it
                stamp.append(("webhook-id", alert.id))
        except SigningError:
            reason, status = "SIGNING_SECRET_MISSING", None
        else:
            # Its name lookups count against its account's share (`jobsd.lookup_threads`).
            scope = LOOKUP_SCOPE.set(alert.account_id)
            try:
                outcome = await self._delivery.perform(config, stamp=stamp)
            finally:
                LOOKUP_SCOPE.reset(scope)
            if outcome.status is RunStatus.SUCCEEDED:
                await self._outbox.delivered(alert.id)
                if self._metrics is not None:
                    self._metrics.alert_sent(alert.account_id, alert.type)
                return
            reason = "" if outcome.failure_reason is None else outcome.failure_reason.value
            status = None if outcome.result is None else outcome.result.get("status")
        await self._failed(alert, reason, status)

    async def _failed(self, alert: OutboxAlert, reason: str, status: object) -> None:
        if self._metrics is not None:
            self._metrics.alert_failed(alert.account_id, alert.type)
        now_us = to_us(self._clock.now())
        due_us = next_attempt(alert.attempts, now_us, alert.expires_at_us)
        if due_us is None:
            await self._outbox.drop(alert.id)
            self._dropped(alert, "expired")
            return
        log.info(
            "alert not delivered; tried again later",
            extra=fields(
                account=alert.account_id,
                type=alert.type,
                alert=alert.id,
                attempt=alert.attempts,
                reason=reason,
                http_status=status,
                retry_in_s=(due_us - now_us) // 1_000_000,
            ),
        )
        await self._outbox.retry_at(alert.id, due_us)

    def _dropped(self, alert: OutboxAlert, outcome: str) -> None:
        log.warning(
            "alert dropped",
            extra=fields(
                account=alert.account_id,
                type=alert.type,
                alert=alert.id,
                attempts=alert.attempts,
                outcome=outcome,
            ),
        )
        if self._metrics is not None:
            self._metrics.alerts_dropped(alert.account_id, alert.type, outcome)


async def _wait_then_cancel(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
