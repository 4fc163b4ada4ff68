"""The Prometheus metrics: names, labels and buckets, in one registry per daemon.

Names and labels are fixed by spec/OPERATIONS.md so dashboards can rely on
them. Every label is bounded by something the operator controls or by an
enum: `account` is an account of the config (a run of an account no longer
configured counts under `(other)`), `environment` one of that account's
configured environments (else `(other)` too), `status`/`failure_reason`/
`trigger` are the run enums, `route` is a route template
(`/api/v1/jobs/{job_id}`) or `(unmatched)`, `method` one of the HTTP
methods the API knows or `OTHER`, and `status` an HTTP status code.
Never a job id, a run id, a URL or a concrete path.

A registry per `Metrics` (not prometheus-client's global one) so several
daemons in one test process do not collide; it carries the library's
process collector. Recording is thread-safe (the store's writer thread
records its batches directly).

Decisions where OPERATIONS.md is silent: `jobsd_scheduler_lag_seconds` is a
histogram of how late each due job was fired (the scheduler's `now` minus
the job's due instant); the two store metrics are histograms per committed
transaction; `jobsd_quota_refusals_total` counts runs refused because the
month's runs were used up (the 403 for `active_jobs_limit` is an API
answer and shows under `jobsd_api_requests_total`); succeeded runs have
`failure_reason=""`. The alert counters (`jobsd_alerts_sent_total`,
`jobsd_alerts_failed_total`, `jobsd_alerts_dropped_total`) are labelled by
`account`, `type` (`job.failed`, `job.recovered`, `job.paused`) and, for
drops, `outcome` (`suppressed`, `overflow`, `expired`, `no_alert_url`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder, generate_latest

from jobsd.messages import RunEnded
from jobsd.runs import FailureReason

OTHER_ACCOUNT = "(other)"  # also the environment label of one no longer configured
UNMATCHED_ROUTE = "(unmatched)"
# A request refused on the wire, before any route (framing, version, head size).
REFUSED_ROUTE = "(refused)"
OTHER_METHOD = "OTHER"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_LATENESS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_REQUEST_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
_API_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_STORE_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_API_CHILDREN = 4096  # routes x method labels x statuses seen


def method_label(method: str) -> str:
    return method if method in METHODS else OTHER_METHOD


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        self.runs_finished = Counter(
            "jobsd_runs_finished",
            "Runs that reached a terminal state.",
            ["account", "environment", "status", "failure_reason", "trigger"],
            registry=r,
        )
        self.lateness = Histogram(
            "jobsd_run_lateness_seconds",
            "started_at minus scheduled_for, for scheduled runs that started.",
            ["account"],
            buckets=_LATENESS_S,
            registry=r,
        )
        self.request_duration = Histogram(
            "jobsd_run_request_duration_seconds",
            "How long a run's request took (started_at to finished_at).",
            ["account"],
            buckets=_REQUEST_S,
            registry=r,
        )
        self.pending = Gauge("jobsd_runs_pending", "Runs PENDING in the store.", registry=r)
        self.running = Gauge("jobsd_runs_running", "Runs RUNNING in the store.", registry=r)
        self.alerts_pending = Gauge(
            "jobsd_alerts_pending",
            "Alerts in the store's outbox not yet delivered (due, deferred or to be tried again).",
            ["account"],
            registry=r,
        )
        self.scheduler_lag = Histogram(
            "jobsd_scheduler_lag_seconds",
            "How late the scheduler fired each due job (its now minus the due instant).",
            buckets=_LATENESS_S,
            registry=r,
        )
        self.retries_scheduled = Counter(
            "jobsd_retries_scheduled", "Retries of failed runs scheduled.", registry=r
        )
        self.quota_refusals = Counter(
            "jobsd_quota_refusals",
            "Runs refused because the month's included runs were used up.",
            ["account"],
            registry=r,
        )
        self.api_requests = Counter(
            "jobsd_api_requests",
            "API requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.api_duration = Histogram(
            "jobsd_api_request_duration_seconds",
            "Time from a request's arrival to the end of its response.",
            ["route", "method"],
            buckets=_API_S,
            registry=r,
        )
        self.write_waits = Histogram(
            "jobsd_api_write_wait_seconds",
            "How long writes waited for their account's share of the API's writes"
            " (jobsd.api.admission); only writes that waited are counted.",
            ["account"],
            buckets=_API_S,
            registry=r,
        )
        self.store_transaction = Histogram(
            "jobsd_store_transaction_seconds",
            "Time from BEGIN to COMMIT of each store write transaction.",
            buckets=_STORE_S,
            registry=r,
        )
        self.store_batch = Histogram(
            "jobsd_store_batch_size",
            "Writes committed together in one store transaction.",
            buckets=_BATCH,
            registry=r,
        )
        self.alerts_sent = Counter(
            "jobsd_alerts_sent",
            "Alerts delivered (a 2xx answer from the account's alert_url).",
            ["account", "type"],
            registry=r,
        )
        self.alerts_failed = Counter(
            "jobsd_alerts_failed",
            "Alert deliveries that failed and will be tried again or given up.",
            ["account", "type"],
            registry=r,
        )
        self.alerts_dropped = Counter(
            "jobsd_alerts_dropped",
            "Alerts never delivered: suppressed by the rate limit, pushed out of a full"
            " outbox, expired after 24 hours of tries, or left without an alert_url.",
            ["account", "type", "outcome"],
            registry=r,
        )
        # Each run's samples go to label children made once (`labels()` validates
        # and locks on every call); as bounded as the labels themselves.
        self._finished: dict[tuple[str, str, str, str, str], Any] = {}
        self._timing: dict[str, tuple[Any, Any]] = {}

        # (route, method label, status) -> its counter and histogram children
        self._api_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def run_ended(self, end: RunEnded, accounts: Mapping[str, Collection[str]]) -> None:
        """`accounts`: each configured account's environments."""
        known = accounts.get(end.account_id)
        account = OTHER_ACCOUNT if known is None else end.account_id
        environment = end.environment if known and end.environment in known else OTHER_ACCOUNT
        reason = "" if end.failure_reason is None else end.failure_reason.value
        labels = (account, environment, end.status.value, reason, end.trigger.value)
        finished = self._finished.get(labels)
        if finished is None:
            finished = self._finished[labels] = self.runs_finished.labels(*labels)
        finished.inc()
        if end.failure_reason is FailureReason.QUOTA_EXCEEDED:
            self.quota_refusals.labels(account).inc()
        if end.started_at is not None:
            timing = self._timing.get(account)
            if timing is None:
                timing = self._timing[account] = (
                    self.lateness.labels(account),
                    self.request_duration.labels(account),
                )
            if end.scheduled_for is not None:
                late_s = (end.started_at - end.scheduled_for).total_seconds()
                timing[0].observe(max(0.0, late_s))
            took_s = (end.finished_at - end.started_at).total_seconds()
            timing[1].observe(max(0.0, took_s))

    def alert(
        self, counter: Counter, account: str, accounts: Collection[str], *labels: str
    ) -> None:
        """Count an alert under its account, or `(other)` if no longer configured."""
        counter.labels(account if account in accounts else OTHER_ACCOUNT, *labels).inc()

    def api_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Called for every request, so the labelled children are kept, not looked up
        again (`labels` validates and locks each time); at most `_API_CHILDREN` kept."""
        label = method_label(method)  # the key as labelled: odd methods share one entry
        key = (route, label, status)
        children = self._api_children.get(key)
        if children is None:
            children = (
                self.api_requests.labels(route, label, str(status)),
                self.api_duration.labels(route, label),
            )
            if len(self._api_children) < _API_CHILDREN:
                self._api_children[key] = children
        requests, duration = children
        requests.inc()
        duration.observe(seconds)

    def api_refused(self, method: str, status: int) -> None:
        """A refusal on the wire is counted, not timed: no app handled it."""
        self.api_requests.labels(REFUSED_ROUTE, method_label(method), str(status)).inc()

    def exposition(
        self,
        pending: int,
        running: int,
        accept: str | None = None,
        alerts: Mapping[str, int] | None = None,
    ) -> tuple[bytes, str]:
        """The exposition and its content type, with the gauges set from the store's
        counts just read (`alerts`: the outbox's, per account; an account with none
        has no sample, so a removed account leaves none behind). The format is
        negotiated on `accept` as the library's own handler does: Prometheus text
        0.0.4 unless OpenMetrics is asked for. A `version` the library cannot
        compare (`version=abc`: its `parse_version` keeps the text, and comparing
        that with a number raised a TypeError, a 500) gets text 0.0.4, as any
        Accept it does not understand."""
        self.pending.set(pending)
        self.running.set(running)
        self.alerts_pending.clear()
        for account, held in (alerts or {}).items():
            self.alerts_pending.labels(account).set(held)
        try:
            encode, content_type = choose_encoder(accept or "")
        except (TypeError, ValueError):
            encode, content_type = generate_latest, CONTENT_TYPE_PLAIN_0_0_4
        return encode(self.registry), content_type
