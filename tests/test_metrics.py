"""The Prometheus endpoint: who may scrape, what it says, and that it agrees with the store.

Expositions are parsed with prometheus-client's own parser and, where
Debian's `prometheus` package is installed, checked by `promtool check
metrics`. Peers are real sockets: the daemon listens on 127.0.0.1 and a
refused scraper connects from 127.0.0.2 (its socket bound there).
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import subprocess
from collections import Counter as Tally
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from jobsd.clock import iso
from jobsd.config import parse_config, token_sha256
from jobsd.messages import RunEnded
from jobsd.metrics import Metrics
from jobsd.observer import Observer
from jobsd.runs import FailureReason, RunStatus, Trigger
from jobsd.settings import Settings
from tests.conftest import JSONAPI, TOKEN_A, TOKEN_B, auth, config_text
from tests.target import open_target
from tests.test_limits import Live, serving_daemon
from tests.wire import read_answer, request

SCRAPE_TOKEN = "scrape-token-5b6c7d"
OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
NAMES = {  # family name (as the parser gives it) -> its labels, from spec/OPERATIONS.md
    "jobsd_runs_finished": {"account", "environment", "status", "failure_reason", "trigger"},
    "jobsd_run_lateness_seconds": {"account"},
    "jobsd_run_request_duration_seconds": {"account"},
    "jobsd_runs_pending": set(),
    "jobsd_runs_running": set(),
    "jobsd_scheduler_lag_seconds": set(),
    "jobsd_retries_scheduled": set(),
    "jobsd_quota_refusals": {"account"},
    "jobsd_api_requests": {"route", "method", "status"},
    "jobsd_api_request_duration_seconds": {"route", "method"},
    "jobsd_store_transaction_seconds": set(),
    "jobsd_store_batch_size": set(),
}


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (s.labels, s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name
    ]


def total(text: str, name: str, **match: str) -> float:
    return sum(
        v for labels, v in samples(text, name) if all(labels.get(k) == x for k, x in match.items())
    )


@asynccontextmanager
async def client_from(live: Live, address: str, **kw: Any) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.AsyncHTTPTransport(local_address=address)
    async with httpx2.AsyncClient(
        base_url=live.url, transport=transport, trust_env=False, **kw
    ) as client:
        yield client


def store_counts(db: Path) -> Tally[tuple[str, str, str, str]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT account_id, status, coalesce(failure_reason, ''), trigger, COUNT(*) "
            "FROM runs WHERE finished_at_us IS NOT NULL GROUP BY 1, 2, 3, 4"
        ).fetchall()
    finally:
        conn.close()
    return Tally({(a, s, r, t): n for a, s, r, t, n in rows})


def counted(text: str) -> Tally[tuple[str, str, str, str]]:
    found: Tally[tuple[str, str, str, str]] = Tally()
    for labels, value in samples(text, "jobsd_runs_finished_total"):
        key = (labels["account"], labels["status"], labels["failure_reason"], labels["trigger"])
        found[key] += int(value)
    return found


# -- the exposition -----------------------------------------------------------------


def test_every_metric_of_the_spec_with_its_labels() -> None:
    metrics = Metrics()
    end = RunEnded(
        "r1", "acme", "nightly", "production", Trigger.SCHEDULE, RunStatus.FAILED,
        FailureReason.QUOTA_EXCEEDED, datetime(2026, 6, 5, tzinfo=UTC),
        datetime(2026, 6, 5, tzinfo=UTC), None, datetime(2026, 6, 5, 0, 0, 1, tzinfo=UTC),
    )  # fmt: skip
    metrics.run_ended(end, {"acme": {"production"}})
    metrics.api_request("/api/v1/jobs/{job_id}", "GET", 200, 0.01)
    metrics.retries_scheduled.inc()
    metrics.scheduler_lag.observe(0.2)
    metrics.store_batch.observe(3)
    metrics.store_transaction.observe(0.001)
    metrics.lateness.labels("acme").observe(1)
    metrics.request_duration.labels("acme").observe(1)
    text = metrics.exposition(pending=3, running=1)[0].decode()
    found = families(text)
    for name, labels in NAMES.items():
        assert name in found, name
        for sample in found[name].samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample.labels)
    assert "process_cpu_seconds" in found and "process_resident_memory_bytes" in found
    assert total(text, "jobsd_runs_pending") == 3 and total(text, "jobsd_runs_running") == 1
    assert total(text, "jobsd_quota_refusals_total", account="acme") == 1


def test_two_daemons_in_one_process_have_their_own_registries() -> None:
    a, b = Metrics(), Metrics()
    a.retries_scheduled.inc()
    assert total(b.exposition(0, 0)[0].decode(), "jobsd_retries_scheduled_total") == 0
    assert total(a.exposition(0, 0)[0].decode(), "jobsd_retries_scheduled_total") == 1


def test_labels_stay_bounded_to_the_config(tmp_path: Path) -> None:
    observer = Observer(Settings(parse_config(config_text(tmp_path))))
    t = datetime(2026, 6, 5, tzinfo=UTC)
    ends = [
        RunEnded(f"run-{i}", account, f"job-{i}", "production", Trigger.MANUAL, RunStatus.SUCCEEDED,
                 None, t, None, t, t + timedelta(seconds=1))
        for i, account in enumerate(["acme", "gone-1", "gone-2", "other"])
    ]  # fmt: skip
    observer.runs_ended(ends)
    # An environment the account no longer has (edited out of the config).
    observer.runs_ended([replace(ends[0], run_id="run-x", environment="gone-env")])
    for i in range(50):
        observer.api_request("GET", "(unmatched)", 404, 0.001, "127.0.0.1")
        observer.api_request(f"X{i}", "(unmatched)", 405, 0.001, "127.0.0.1")
    text = observer.metrics.exposition(0, 0)[0].decode()
    accounts = {labels["account"] for labels, _ in samples(text, "jobsd_runs_finished_total")}
    assert accounts == {"acme", "other", "(other)"}
    assert total(text, "jobsd_runs_finished_total", account="(other)") == 2
    methods = {labels["method"] for labels, _ in samples(text, "jobsd_api_requests_total")}
    assert methods == {"GET", "OTHER"}
    assert "job-" not in text and "run-" not in text
    environments = {
        labels["environment"] for labels, _ in samples(text, "jobsd_runs_finished_total")
    }
    assert environments == {"production", "(other)"}
    assert "gone-env" not in text
    assert len(samples(text, "jobsd_runs_finished_total")) == 4
    # The run's request duration: 1 s, per account.
    assert total(text, "jobsd_run_request_duration_seconds_sum", account="acme") == 2.0


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian: prometheus) absent")
async def test_promtool_accepts_the_exposition(tmp_path: Path) -> None:
    async with open_target() as target, serving_daemon(tmp_path) as live, live.client() as c:
        await exercise(c, target.url, runs=5)
        await settle(c)
        r = await c.get("/metrics")
    assert r.status_code == 200
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=r.content, capture_output=True, timeout=60
    )
    assert check.returncode == 0, (check.stdout, check.stderr)


# -- who may scrape -------------------------------------------------------------------------


async def test_loopback_scrapes_and_another_peer_gets_403_and_learns_nothing(
    tmp_path: Path,
) -> None:
    async with serving_daemon(tmp_path) as live, client_from(live, "127.0.0.2") as c:
        assert (await c.get("/metrics")).status_code == 200  # the default: all of 127.0.0.0/8
    extra = '[metrics]\nallow_cidrs = ["127.0.0.1/32", "::1/128"]\n'
    async with serving_daemon(tmp_path / "narrow", extra=extra) as live:
        async with client_from(live, "127.0.0.1") as c:
            r = await c.get("/metrics")
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
            assert "jobsd_runs_pending" in r.text
            # OpenMetrics when asked for, as Prometheus does (prometheus-client negotiates).
            r = await c.get("/metrics", headers={"Accept": OPENMETRICS})
            assert r.headers["content-type"].startswith("application/openmetrics-text")
            names = {f.name for f in openmetrics_families(r.text)}
            assert {"jobsd_runs_finished", "jobsd_api_requests"} <= names
        async with client_from(live, "127.0.0.2") as c:
            for headers in ({}, {"Authorization": f"Bearer {TOKEN_A}"}):
                r = await c.get("/metrics", headers=headers)
                assert r.status_code == 403
                assert r.headers["content-type"] == JSONAPI
                assert r.json()["errors"][0]["code"] == "forbidden"
                assert "jobsd_" not in r.text and "process_" not in r.text
            r = await c.get("/healthz")  # the rest of the API is not affected
            assert r.status_code == 200


async def test_an_accept_version_the_library_cannot_compare_gets_text_not_a_500(
    tmp_path: Path,
) -> None:
    odd = [
        "application/openmetrics-text; version=abc",
        "text/plain; version=1.x",
        "application/openmetrics-text; version=1.0.0 x, text/plain;q=0.5",
    ]
    async with serving_daemon(tmp_path) as live, client_from(live, "127.0.0.1") as c:
        for accept in odd:
            r = await c.get("/metrics", headers={"Accept": accept})
            assert r.status_code == 200, (accept, r.text)
            assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
            assert "jobsd_runs_pending" in families(r.text)
        r = await c.get("/metrics", headers={"Accept": OPENMETRICS})  # still negotiated
        assert r.headers["content-type"].startswith("application/openmetrics-text")


async def test_a_token_is_required_when_configured(tmp_path: Path) -> None:
    extra = f'[metrics]\ntoken_sha256 = "{token_sha256(SCRAPE_TOKEN)}"\n'
    async with serving_daemon(tmp_path, extra=extra) as live, client_from(live, "127.0.0.1") as c:
        refusals = [
            await c.get("/metrics"),
            await c.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}x"}),
            await c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN_A}"}),
            await c.get("/metrics", headers={"Authorization": SCRAPE_TOKEN}),
        ]
        twice = [("Authorization", f"Bearer {SCRAPE_TOKEN}")] * 2  # not one token: refused
        refusals.append(await c.get("/metrics", headers=twice))
        assert [r.status_code for r in refusals] == [403] * 5
        assert len({r.content for r in refusals}) == 1  # the same answer whatever failed
        r = await c.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})
        assert r.status_code == 200 and "jobsd_api_requests_total" in r.text
    extra += 'allow_cidrs = ["127.0.0.1/32"]\n'
    async with (
        serving_daemon(tmp_path / "b", extra=extra) as live,
        client_from(live, "127.0.0.2") as c,  # the right token from a refused peer
    ):
        r = await c.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})
        assert r.status_code == 403
        r = await c.get("/metrics", headers=[("Authorization", "Bearer x")] * 2)
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == "forbidden"


async def test_a_path_of_its_own_or_none_at_all(tmp_path: Path) -> None:
    extra = '[metrics]\npath = "/internal/prom"\n'
    async with serving_daemon(tmp_path, extra=extra) as live, live.client() as c:
        assert (await c.get("/internal/prom")).status_code == 200
        assert (await c.get("/metrics")).status_code == 404
    extra = "[metrics]\nenabled = false\n"
    async with serving_daemon(tmp_path / "off", extra=extra) as live, live.client() as c:
        r = await c.get("/metrics")
        assert r.status_code == 404 and r.headers["content-type"] == JSONAPI


# -- what it says -----------------------------------------------------------------------------


def job(slug: str, url: str) -> dict[str, Any]:
    attributes = {"name": slug, "schedule": "0 0 1 1 *", "configuration": {"url": url}}
    return {"data": {"type": "job", "id": slug, "attributes": attributes}}


async def exercise(c: httpx2.AsyncClient, target_url: str, *, runs: int) -> None:
    for slug, path in (("ok", "/slow"), ("bad", "/status/500")):
        r = await c.post(
            "/api/v1/jobs", json=job(slug, target_url + path), headers={"Content-Type": JSONAPI}
        )
        assert r.status_code == 201, r.text
    for i in range(runs):
        r = await c.post(f"/api/v1/jobs/{'ok' if i % 3 else 'bad'}/actions/run")
        assert r.status_code == 200


async def settle(c: httpx2.AsyncClient) -> None:
    with trio.fail_after(60):
        while True:
            r = await c.get("/api/v1/runs", params={"page[size]": "1000"})
            if all(
                x["attributes"]["status"] not in ("PENDING", "RUNNING") for x in r.json()["data"]
            ):
                return
            await trio.sleep(0.05)


async def test_api_requests_are_counted_by_route_template(tmp_path: Path) -> None:
    async with serving_daemon(tmp_path) as live, live.client() as c:
        for slug in ("a-1", "b-2", "c-3"):
            assert (await c.get(f"/api/v1/jobs/{slug}?token=secret-q")).status_code == 404
        assert (await c.get("/nowhere/at/all")).status_code == 404
        assert (await c.request("BREW", "/api/v1/jobs")).status_code in (400, 405, 501)
        assert (
            await c.get("/api/v1/jobs", headers={"Authorization": "Bearer nope"})
        ).status_code == 401
        text = (await c.get("/metrics")).text
    route = "/api/v1/jobs/{job_id}"
    assert total(text, "jobsd_api_requests_total", route=route, method="GET", status="404") == 3
    assert total(text, "jobsd_api_requests_total", route="(unmatched)", status="404") == 1
    assert total(text, "jobsd_api_requests_total", route="/api/v1/jobs", status="401") == 1
    assert total(text, "jobsd_api_requests_total", method="OTHER") == 1
    assert total(text, "jobsd_api_request_duration_seconds_count", route=route) == 3
    for needle in ("a-1", "b-2", "secret-q", "nowhere", "BREW"):
        assert needle not in text


async def test_requests_refused_on_the_wire_are_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Framing that could be read two ways (400) and other HTTP versions (505)
    are refused before any route: counted under route "(refused)", not timed,
    and logged with their code."""
    both = request("POST", "/api/v1/jobs", "Content-Length: 5", "Transfer-Encoding: chunked")
    http2 = request("GET", "/healthz", version="2.0")
    caplog.set_level(logging.INFO, logger="jobsd.access")
    async with serving_daemon(tmp_path) as live, live.client() as c:
        for raw, status in ((both + b"0\r\n\r\n", 400), (http2, 505), (http2, 505)):
            async with await trio.open_tcp_stream(live.host, live.port) as stream:
                await stream.send_all(raw)
                assert (await read_answer(stream)).status == status
        text = (await c.get("/metrics")).text
    refused = {"route": "(refused)"}
    assert total(text, "jobsd_api_requests_total", **refused, method="POST", status="400") == 1
    assert total(text, "jobsd_api_requests_total", **refused, method="GET", status="505") == 2
    assert total(text, "jobsd_api_request_duration_seconds_count", **refused) == 0
    lines = [r for r in caplog.records if r.getMessage() == "request refused"]
    assert sorted(r.fields["status"] for r in lines) == [400, 505, 505]  # type: ignore[attr-defined]
    assert {r.fields["code"] for r in lines} >= {"http_version_not_supported"}  # type: ignore[attr-defined]


async def test_a_scrape_during_a_burst_moves_with_the_store(tmp_path: Path) -> None:
    """Counters never run ahead of the database, move during the burst, and end equal to it."""
    runs = 120
    async with (
        open_target() as target,
        serving_daemon(tmp_path, runs_included=80) as live,
        live.client() as c,
        httpx2.AsyncClient(base_url=live.url, headers=auth(TOKEN_B), trust_env=False) as b,
    ):
        await exercise(c, target.url, runs=runs)
        r = await b.post(
            "/api/v1/jobs",
            json=job("theirs", target.url + "/slow"),
            headers={"Content-Type": JSONAPI},
        )
        assert r.status_code == 201
        for _ in range(20):
            assert (await b.post("/api/v1/jobs/theirs/actions/run")).status_code == 200
        seen: list[int] = []
        with trio.fail_after(90):
            while True:
                text = (await c.get("/metrics")).text
                in_store = store_counts(live.db)
                metric = counted(text)
                # Told only after the commit: never ahead of the store.
                for key, n in metric.items():
                    assert n <= in_store[key], (key, n, in_store[key])
                seen.append(sum(metric.values()))
                live_runs = total(text, "jobsd_runs_pending") + total(text, "jobsd_runs_running")
                if sum(in_store.values()) == runs + 20 and live_runs == 0 and seen[-1] == runs + 20:
                    break
                await trio.sleep(0.02)
        final = (await c.get("/metrics")).text
    assert seen == sorted(seen)  # counters only grow
    assert any(0 < n < runs + 20 for n in seen), seen  # and were seen moving
    assert counted(final) == store_counts(live.db)
    quota = store_counts(live.db)[("acme", "FAILED", "QUOTA_EXCEEDED", "MANUAL")]
    assert quota == runs - 80
    assert total(final, "jobsd_quota_refusals_total", account="acme") == quota
    started = sum(n for (a, s, r, _), n in store_counts(live.db).items() if r != "QUOTA_EXCEEDED")
    assert total(final, "jobsd_run_request_duration_seconds_count") == started
    assert total(final, "jobsd_store_batch_size_count") > 0
    assert total(final, "jobsd_store_transaction_seconds_count") == total(
        final, "jobsd_store_batch_size_count"
    )
    assert total(final, "jobsd_runs_finished_total", environment="production") == runs + 20


async def test_the_scheduler_lag_and_lateness_of_scheduled_runs(tmp_path: Path) -> None:
    async with open_target() as target, serving_daemon(tmp_path) as live, live.client() as c:
        r = await c.post(
            "/api/v1/jobs",
            json={"data": {"type": "job", "id": "soon", "attributes": {
                "name": "soon", "schedule": iso(live.clock.now() + timedelta(seconds=1)),
                "configuration": {"url": target.url + "/x"}}}},
            headers={"Content-Type": JSONAPI},
        )  # fmt: skip
        assert r.status_code == 201
        with trio.fail_after(90):
            while not target.received:
                await trio.sleep(0.05)
            await settle(c)
        text = (await c.get("/metrics")).text
    assert total(text, "jobsd_scheduler_lag_seconds_count") >= 1
    assert total(text, "jobsd_run_lateness_seconds_count", account="acme") >= 1
    assert total(text, "jobsd_runs_finished_total", trigger="SCHEDULE", status="SUCCEEDED") >= 1


def test_api_requests_count_the_same_with_the_children_kept_and_past_their_bound() -> None:
    """`Metrics.api_request` keeps each labelled child; past the bound it looks them up."""
    metrics = Metrics()
    # More (route, status) pairs than are kept (no real app has this many routes).
    pairs = [(f"/r{i // 400}", 100 + i % 400) for i in range(5000)]
    for route, status in pairs:
        metrics.api_request(route, "PUT", status, 0.001)
    for _ in range(3):
        metrics.api_request("/api/v1/jobs/{job_id}", "GET", 200, 0.002)
    assert len(metrics._api_children) == 4096
    counted = {
        (s.labels["route"], s.labels["method"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(metrics.exposition(0, 0)[0].decode())
        if family.name == "jobsd_api_requests"
        for s in family.samples
        if s.name == "jobsd_api_requests_total"
    }
    assert counted == {
        **{(route, "PUT", str(status)): 1.0 for route, status in pairs},
        ("/api/v1/jobs/{job_id}", "GET", "200"): 3.0,
    }


def outbox_of(accounts: list[str]) -> Callable[[sqlite3.Connection], None]:
    """A store write putting one alert per entry of `accounts` in the outbox, due
    long after the test (so none is tried while it runs)."""
    now = 1_796_400_000_000_000

    def fill(conn: sqlite3.Connection) -> None:
        conn.executemany(
            "INSERT INTO alert_outbox (id, account_id, job_id, environment, type, body, "
            "created_at_us, due_us, expires_at_us) VALUES (?, ?, 0, 'production', "
            "'job.failed', '{}', ?, ?, ?)",
            [
                (f"a-{n}", account, now, now + 10**12, now + 2 * 10**12)
                for n, account in enumerate(accounts)
            ],
        )

    return fill


async def test_the_alerts_waiting_in_the_outbox_are_a_gauge_per_account(tmp_path: Path) -> None:
    """`jobsd_alerts_pending{account}`: alerts not yet delivered (due, deferred or to be
    tried again), read from the store at each scrape like the run gauges. A receiver
    slower than its account's failures shows as this gauge rising (the crash test's
    seed 3000759135 left ~430 waiting); an account with none has no sample."""
    async with serving_daemon(tmp_path) as live, client_from(live, "127.0.0.1") as c:
        fill = outbox_of(["acme"] * 7)
        text = (await c.get("/metrics")).text
        assert samples(text, "jobsd_alerts_pending") == []
        await live.ctx.store.engine.write(fill)
        text = (await c.get("/metrics")).text
        assert samples(text, "jobsd_alerts_pending") == [({"account": "acme"}, 7.0)]
        await live.ctx.store.engine.write(lambda conn: conn.execute("DELETE FROM alert_outbox"))
        text = (await c.get("/metrics")).text
        assert samples(text, "jobsd_alerts_pending") == []


async def test_alerts_waiting_for_an_account_no_longer_configured_count_as_other(
    tmp_path: Path,
) -> None:
    """A reload that removes an account leaves its alerts waiting for a retry or a
    deferred instant in the outbox until then (up to an hour's backoff): the gauge
    counts them under `(other)`, as every account label does, never under an
    account the config no longer names (a label that outlived the config)."""
    async with serving_daemon(tmp_path) as live, client_from(live, "127.0.0.1") as c:
        fill = outbox_of(["acme", "acme", "gone", "gone", "left"])
        await live.ctx.store.engine.write(fill)
        text = (await c.get("/metrics")).text
        assert sorted(samples(text, "jobsd_alerts_pending"), key=str) == sorted(
            [({"account": "acme"}, 2.0), ({"account": "(other)"}, 3.0)], key=str
        )


def test_odd_methods_do_not_fill_the_kept_label_children() -> None:
    """The children kept per (route, method, status) are keyed as labelled: a client's
    odd methods all count as OTHER, so they take one entry, not the 4,096 the
    cache holds, which left every later route and status to `labels()` each time."""
    metrics = Metrics()
    for i in range(5000):
        metrics.api_request("(unmatched)", f"X{i}", 405, 0.001)
    metrics.api_request("/api/v1/jobs", "GET", 200, 0.001)
    assert len(metrics._api_children) == 2
    text = metrics.exposition(0, 0)[0].decode()
    assert total(text, "jobsd_api_requests_total", method="OTHER") == 5000


def test_alert_counters_label_by_the_config_in_force(tmp_path: Path) -> None:
    """An account no longer configured counts under (other), and the observer
    follows a reload's config: an account it removed is (other) from then on."""
    settings = Settings(parse_config(config_text(tmp_path)))
    observer = Observer(settings)
    observer.alert_sent("acme", "job.failed")
    observer.alert_sent("gone", "job.failed")
    config = settings.config
    settings.config = config.model_copy(
        update={"accounts": tuple(a for a in config.accounts if a.id != "acme")}
    )
    observer.alert_failed("acme", "job.failed")
    text = observer.metrics.exposition(0, 0)[0].decode()
    sent = {labels["account"]: v for labels, v in samples(text, "jobsd_alerts_sent_total")}
    failed = {labels["account"]: v for labels, v in samples(text, "jobsd_alerts_failed_total")}
    assert sent == {"acme": 1.0, "(other)": 1.0}
    assert failed == {"(other)": 1.0}


def test_a_run_started_before_its_slot_is_not_late_by_a_negative_time() -> None:
    """A run fired just before the clock stepped back starts 'before' its slot:
    it counts as on time, and the histogram's sum never goes down."""
    metrics = Metrics()
    t = datetime(2026, 6, 5, tzinfo=UTC)
    end = RunEnded(
        "r1", "acme", "nightly", "production", Trigger.SCHEDULE, RunStatus.SUCCEEDED, None,
        t, t + timedelta(hours=1), t, t + timedelta(seconds=1),
    )  # fmt: skip
    metrics.run_ended(end, {"acme": {"production"}})
    text = metrics.exposition(0, 0)[0].decode()
    assert total(text, "jobsd_run_lateness_seconds_count", account="acme") == 1
    assert total(text, "jobsd_run_lateness_seconds_sum", account="acme") == 0.0


def test_the_run_line_carries_each_duration(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    observer = Observer(Settings(parse_config(config_text(tmp_path))))
    t = datetime(2026, 6, 5, tzinfo=UTC)
    end = RunEnded(
        "r1", "acme", "nightly", "production", Trigger.SCHEDULE, RunStatus.SUCCEEDED, None,
        t, t - timedelta(seconds=1), t + timedelta(seconds=2.5), t + timedelta(seconds=10),
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="jobsd.runs"):
        observer.runs_ended([end])
    (line,) = [r for r in caplog.records if r.name == "jobsd.runs"]
    found = line.fields  # type: ignore[attr-defined]
    assert (found["lateness_ms"], found["pending_ms"]) == (3500, 2500)
    assert (found["run_ms"], found["total_ms"]) == (7500, 10000)


def test_the_observers_reports_land_in_their_metrics(tmp_path: Path) -> None:
    observer = Observer(Settings(parse_config(config_text(tmp_path))))
    observer.store_batch(3, 0.002)
    observer.fired_late(-0.5)  # woken a little early by a step of the clock: on time
    observer.fired_late(2.0)
    observer.retry_scheduled()
    observer.write_waited("acme", 0.1)
    observer.write_waited("gone", 0.2)
    observer.write_waited(None, 0.3)
    held = observer.alerts_held({"acme": 2, "gone": 3, "gone-too": 4})
    assert held == {"acme": 2, "(other)": 7}
    text = observer.metrics.exposition(0, 0)[0].decode()
    assert total(text, "jobsd_store_batch_size_sum") == 3
    assert total(text, "jobsd_store_transaction_seconds_sum") == 0.002
    assert total(text, "jobsd_scheduler_lag_seconds_sum") == 2.0
    assert total(text, "jobsd_retries_scheduled_total") == 1
    waits = {
        labels["account"]: v for labels, v in samples(text, "jobsd_api_write_wait_seconds_count")
    }
    assert waits == {"acme": 1.0, "(other)": 2.0}


def test_a_refusal_on_the_wire_logs_the_method_as_labelled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    observer = Observer(Settings(parse_config(config_text(tmp_path))))
    with caplog.at_level(logging.INFO, logger="jobsd.access"):
        observer.api_refused("BREW", 400, "bad_request", "127.0.0.1")
    (line,) = [r for r in caplog.records if r.name == "jobsd.access"]
    assert line.fields["method"] == "OTHER"  # type: ignore[attr-defined]
