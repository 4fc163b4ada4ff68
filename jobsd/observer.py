"""What the actors report as they work, turned into metrics and log lines.

One `Observer` per daemon is handed to the actors at their seams: the store
tells it of every committed batch and of every run that ended (after the
commit, `jobsd.store.ends`), the scheduler of how late it fired each due
job, the API edge of every request answered. Each report becomes Prometheus
samples (`jobsd.metrics`) and, for runs and requests, one structured log
line at INFO. Nothing here decides anything; it only counts and tells.

The run line (logger `jobsd.runs`, message `run finished`) carries the
account, job, environment, run id, trigger, status, failure reason,
lateness (started_at - scheduled_for, scheduled runs only) and the three
durations in milliseconds; never the error text, request or result, which
may quote what a log must not hold. The request line (logger
`jobsd.access`, message `request`) carries the method, the route template
(never the concrete path or its query string), the status, the duration
and the client address (the forwarded one behind a trusted proxy).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from jobsd.clock import duration_ms
from jobsd.config import Config
from jobsd.logs import fields
from jobsd.messages import RunEnded
from jobsd.metrics import OTHER_ACCOUNT, REFUSED_ROUTE, Metrics, method_label
from jobsd.settings import Settings

runs_log = logging.getLogger("jobsd.runs")
access_log = logging.getLogger("jobsd.access")


class Observer:
    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.metrics = Metrics() if metrics is None else metrics
        self._settings = settings
        self._config: Config | None = None
        self._accounts: dict[str, frozenset[str]] = {}

    def _known_accounts(self) -> dict[str, frozenset[str]]:
        """Each configured account's environments: what labels may say."""
        config = self._settings.config
        if config is not self._config:  # a reload swapped it
            self._config = config
            self._accounts = {a.id: frozenset(a.environments) for a in config.accounts}
        return self._accounts

    # -- the store ----------------------------------------------------------------

    def runs_ended(self, ends: Sequence[RunEnded]) -> None:
        accounts = self._known_accounts()
        for end in ends:
            self.metrics.run_ended(end, accounts)
            lateness = None
            if end.scheduled_for is not None and end.started_at is not None:
                lateness = duration_ms(end.scheduled_for, end.started_at)
            runs_log.info(
                "run finished",
                extra=fields(
                    account=end.account_id,
                    job=end.job_slug,
                    environment=end.environment,
                    run=end.run_id,
                    trigger=end.trigger.value,
                    status=end.status.value,
                    reason=None if end.failure_reason is None else end.failure_reason.value,
                    lateness_ms=lateness,
                    pending_ms=duration_ms(end.created_at, end.started_at),
                    run_ms=duration_ms(end.started_at, end.finished_at),
                    total_ms=duration_ms(end.created_at, end.finished_at),
                ),
            )

    def store_batch(self, size: int, seconds: float) -> None:
        """Called from the store's writer thread; the metrics are thread-safe."""
        self.metrics.store_batch.observe(size)
        self.metrics.store_transaction.observe(seconds)

    # -- the scheduler and the executors -------------------------------------------

    def fired_late(self, seconds: float) -> None:
        self.metrics.scheduler_lag.observe(max(0.0, seconds))

    def retry_scheduled(self) -> None:
        """For the retry policy (issue 9): call once per retry it schedules."""
        self.metrics.retries_scheduled.inc()

    # -- alerts (the store as it writes them, the alert actor as it sends them) ------

    def alerts_held(self, held: Mapping[str, int]) -> dict[str, int]:
        """The outbox's counts per account as `jobsd_alerts_pending` labels them: an
        account no longer configured (a reload removed it; its alerts waiting for a
        retry or a deferred instant stay until then) counts under `(other)`, as
        every other account label does, so the label never outlives the config."""
        known = self._known_accounts()
        labelled: dict[str, int] = {}
        for account, count in held.items():
            label = account if account in known else OTHER_ACCOUNT
            labelled[label] = labelled.get(label, 0) + count
        return labelled

    def alert_sent(self, account: str, alert_type: str) -> None:
        self.metrics.alert(self.metrics.alerts_sent, account, self._known_accounts(), alert_type)

    def alert_failed(self, account: str, alert_type: str) -> None:
        self.metrics.alert(self.metrics.alerts_failed, account, self._known_accounts(), alert_type)

    def alerts_dropped(self, account: str, alert_type: str, outcome: str) -> None:
        self.metrics.alert(
            self.metrics.alerts_dropped, account, self._known_accounts(), alert_type, outcome
        )

    # -- the API --------------------------------------------------------------------

    def api_refused(self, method: str, status: int, code: str, client: str | None) -> None:
        """A request the connection refused before the app (`jobsd.api.connection`)."""
        self.metrics.api_refused(method, status)
        access_log.info(
            "request refused",
            extra=fields(
                method=method_label(method),
                route=REFUSED_ROUTE,
                status=status,
                code=code,
                client=client,
            ),
        )

    def write_waited(self, account: str | None, seconds: float) -> None:
        """A write held for its account's share (`jobsd.api.admission`); a request
        naming no account, or one no longer configured, counts as `(other)`."""
        known = account is not None and account in self._known_accounts()
        label = account if known and account is not None else OTHER_ACCOUNT
        self.metrics.write_waits.labels(label).observe(seconds)

    def api_request(
        self, method: str, route: str, status: int, seconds: float, client: str | None
    ) -> None:
        self.metrics.api_request(route, method, status, seconds)
        access_log.info(
            "request",
            extra=fields(
                method=method_label(method),
                route=route,
                status=status,
                duration_ms=round(seconds * 1000, 3),
                client=client,
            ),
        )
