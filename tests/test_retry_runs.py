"""Retry chains through the real daemon, against real HTTP servers on 127.0.0.1.

The daemon (`tests.inprocess.daemon_at`) runs on trio's MockClock: a chain
whose retries wait seconds to minutes plays out in a moment, and every
instant the store records is the mock clock's. The clock jumps only when
the process has been idle for a few real milliseconds and no task waits on
a thread (`tests.idle_clock`), so a write on the store's thread is never
overtaken by a jump to some timeout, however loaded the machine.

What is proven, each on a real chain: the attempts and their numbers, the
delays exactly (a retry's `scheduled_for` minus the `finished_at` of the
run it retries, both read from one clock instant in the failure's
transaction), the release at that instant, the end of a chain by policy
(attempts, statuses, reasons), by quota, by a cancel and by a delete, and
how a retry reads through each API version.
"""

from __future__ import annotations

import itertools
import socket
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
import pytest
import trio
import trio.testing

from tests.api.conformance import check
from tests.conftest import JSONAPI, make_config
from tests.idle_clock import jump_when_idle
from tests.inprocess import Daemon, daemon_at
from tests.target import Target, open_target

T = datetime(2026, 6, 5, 2, 0, tzinfo=UTC)
NEW = {"Jobsd-Version": "2026-08-07"}
SEED = {"Jobsd-Version": "2026-06-04"}
ACME = 'api_version = "2026-08-07"\nenvironments = ["production", "staging"]'


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock()  # moved by `jump_when_idle`, started in `running`


def iso_at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Rig:
    client: httpx2.AsyncClient
    target: Target
    db: Path
    daemon: Daemon


@asynccontextmanager
async def running(
    tmp_path: Path, *, runs_included: int = -1, anchor: datetime = T
) -> AsyncIterator[Rig]:
    """A daemon on `tmp_path`'s files (its account on 2026-08-07), its wall clock
    anchored at `anchor`, and a target; leaving it stops it, `rig.daemon.crash()`
    as the last thing inside kills it (no stop sequence, as a SIGKILL)."""
    config = make_config(
        tmp_path, acme=ACME, runs_included=runs_included, active_jobs_limit=-1, max_timeout=300
    )
    async with trio.open_nursery() as clock_hand:
        clock_hand.start_soon(jump_when_idle)
        async with open_target() as target, daemon_at(config, anchor) as daemon:
            # No client deadline: the mock clock may jump while a request is answered.
            daemon.client.timeout = httpx2.Timeout(None)
            yield Rig(daemon.client, target, config.storage.path, daemon)
        clock_hand.cancel_scope.cancel()


async def post(client: httpx2.AsyncClient, path: str, doc: Any, **headers: str) -> Any:
    r = await client.post(path, json=doc, headers={"Content-Type": JSONAPI, **NEW, **headers})
    assert r.status_code in (200, 201), r.text
    return r.json()["data"]


async def policy(client: httpx2.AsyncClient, policy_id: str, **attrs: Any) -> None:
    attributes = {
        "name": policy_id,
        "max_retries": 3,
        "backoff": "fixed",
        "delay_seconds": 5,
        **attrs,
    }
    doc = {"data": {"type": "retry_policy", "id": policy_id, "attributes": attributes}}
    await post(client, "/api/v1/retry-policies", doc)


async def manual_job(
    client: httpx2.AsyncClient, slug: str, url: str, *, timeout: int = 30, **attrs: Any
) -> None:
    environments = attrs.pop("environments", {"production": {"enabled": True}})
    attributes = {
        "name": slug,
        "schedule": None,
        "configuration": {"url": url, "timeout": timeout},
        "environments": environments,
        **attrs,
    }
    await post(
        client, "/api/v1/jobs", {"data": {"type": "job", "id": slug, "attributes": attributes}}
    )


async def run_now(client: httpx2.AsyncClient, slug: str, environment: str = "production") -> str:
    data = await post(client, f"/api/v1/jobs/{slug}/actions/run", {"environment": environment})
    return str(data["id"])


async def runs_of(client: httpx2.AsyncClient, slug: str, **headers: str) -> list[dict[str, Any]]:
    """The job's runs, oldest first, each checked against its version's served spec."""
    r = await client.get(f"/api/v1/runs?filter[job]={slug}", headers={**NEW, **headers})
    assert r.status_code == 200, r.text
    check(r.headers["Jobsd-Version"], "GET", "/api/v1/runs", 200, r.json())
    return list(reversed(r.json()["data"]))


def db_counts(db: Path, slug: str) -> tuple[int, int]:
    """(runs of the job, those still PENDING or RUNNING), read from the file itself.

    A blocking read: the mock clock cannot jump while it runs, as it may
    while an API request waits on the store's threads.
    """
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (total, live) = conn.execute(
            "SELECT count(*), coalesce(sum(status IN ('PENDING', 'RUNNING')), 0) FROM runs "
            "WHERE job_slug = ?",
            (slug,),
        ).fetchone()
    finally:
        conn.close()
    return int(total), int(live)


async def settled(rig: Rig, **counts: int) -> dict[str, list[dict[str, Any]]]:
    """Wait until each job (`slug=count`) has its count of runs, all finished, then
    a minute more to be sure no further retry comes; their runs, through the API."""
    with trio.fail_after(3600):
        while any(db_counts(rig.db, slug) != (n, 0) for slug, n in counts.items()):
            await trio.sleep(5)  # mock seconds: a poll costs a little real time
    await trio.sleep(60)
    assert {slug: db_counts(rig.db, slug) for slug in counts} == {
        s: (n, 0) for s, n in counts.items()
    }
    return {slug: await runs_of(rig.client, slug) for slug in counts}


def chain_facts(runs: list[dict[str, Any]]) -> list[tuple[str, str, int | None]]:
    """(trigger, status or failure reason, attempt) per run."""
    facts = []
    for run in runs:
        a = run["attributes"]
        outcome = a["failure_reason"] or a["status"]
        facts.append((a["trigger"], outcome, None if a["retry"] is None else a["retry"]["attempt"]))
    return facts


def delays(runs: list[dict[str, Any]]) -> list[timedelta]:
    """Each retry's due instant minus the end of the run it retries."""
    return [
        iso_at(run["attributes"]["scheduled_for"]) - iso_at(before["attributes"]["finished_at"])
        for before, run in itertools.pairwise(runs)
    ]


async def test_a_flaky_target_is_retried_until_it_answers(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    async with running(tmp_path) as rig:
        client, target = rig.client, rig.target
        await policy(
            client,
            "exp",
            max_retries=5,
            backoff="exponential",
            delay_seconds=10,
            max_delay_seconds=30,
            retry_statuses=["5xx"],
        )
        await manual_job(client, "flaky", f"{target.url}/flaky/a/3/503", retry_policy="exp")
        original = await run_now(client, "flaky")
        runs = (await settled(rig, flaky=4))["flaky"]
        seed_view = await runs_of(client, "flaky", **SEED)
    assert runs[0]["id"] == original
    assert chain_facts(runs) == [
        ("MANUAL", "NON_SUCCESS_STATUS", None),
        ("RETRY", "NON_SUCCESS_STATUS", 1),
        ("RETRY", "NON_SUCCESS_STATUS", 2),
        ("RETRY", "SUCCEEDED", 3),
    ]
    assert all(r["attributes"]["retry"]["of"] == original for r in runs[1:])
    assert delays(runs) == [timedelta(seconds=s) for s in (10, 20, 30)]  # 40 capped at 30
    for run in runs[1:]:
        a = run["attributes"]
        assert a["rerun_of"] is None and iso_at(a["started_at"]) >= iso_at(a["scheduled_for"])
    # The target saw each attempt once, stamped with the chain.
    sent = [r for r in target.received if r.path == "/flaky/a/3/503"]
    assert [r.headers["x-jobsd-run-id"] for r in sent] == [r["id"] for r in runs]
    assert [r.headers.get("x-jobsd-retry-attempt") for r in sent] == [None, "1", "2", "3"]
    assert {r.headers.get("x-jobsd-retry-of") for r in sent[1:]} == {original}
    # Through the seed version a retry is a RERUN of the run it retries.
    assert [r["attributes"]["trigger"] for r in seed_view] == ["MANUAL", "RERUN", "RERUN", "RERUN"]
    assert [r["attributes"]["rerun_of"] for r in seed_view] == [None] + [r["id"] for r in runs[:-1]]
    assert all(r["attributes"]["scheduled_for"] is None for r in seed_view)


def closed_port() -> int:
    """A loopback port nothing listens on: connections to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("rules", "path", "expected"),
    [
        # The policy's attempts run out: the chain ends with the last failure.
        (
            {"max_retries": 2, "retry_statuses": ["5xx"]},
            "/status/500",
            [
                ("MANUAL", "NON_SUCCESS_STATUS", None),
                ("RETRY", "NON_SUCCESS_STATUS", 1),
                ("RETRY", "NON_SUCCESS_STATUS", 2),
            ],
        ),
        # The exception list wins over the allow-list: 5xx minus 501.
        (
            {"retry_statuses": ["5xx"], "retry_statuses_except": ["501"]},
            "/status/501",
            [("MANUAL", "NON_SUCCESS_STATUS", None)],
        ),
        # A status the allow-list does not name is not retried.
        ({"retry_statuses": ["5xx"]}, "/status/404", [("MANUAL", "NON_SUCCESS_STATUS", None)]),
        # max_retries 0: a policy that retries nothing.
        (
            {"max_retries": 0, "retry_statuses": ["5xx"]},
            "/status/500",
            [("MANUAL", "NON_SUCCESS_STATUS", None)],
        ),
    ],
)
async def test_a_chain_ends_when_its_policy_says_so(
    tmp_path: Path,
    mock_clock: trio.testing.MockClock,
    rules: dict[str, Any],
    path: str,
    expected: list[tuple[str, str, int | None]],
) -> None:
    async with running(tmp_path) as rig:
        client, target = rig.client, rig.target
        await policy(client, "p", **rules)
        await manual_job(client, "j", f"{target.url}{path}", retry_policy="p")
        await run_now(client, "j")
        runs = (await settled(rig, j=len(expected)))["j"]
    assert chain_facts(runs) == expected
    assert delays(runs) == [timedelta(seconds=5)] * (len(expected) - 1)
    assert len(target.received) == len(expected)


async def test_retry_after_on_429_and_503_sets_the_delay(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    date = quote(format_datetime(T + timedelta(seconds=45), usegmt=True))
    async with running(tmp_path) as rig:
        client, target = rig.client, rig.target
        await policy(client, "fixed", max_retries=1, delay_seconds=1, retry_statuses=["429", "503"])
        await policy(
            client,
            "capped",
            max_retries=1,
            backoff="exponential",
            delay_seconds=1,
            max_delay_seconds=10,
            retry_statuses=["429"],
        )
        await manual_job(
            client, "secs", f"{target.url}/status/429?retry_after=30", retry_policy="fixed"
        )
        await manual_job(
            client, "date", f"{target.url}/status/503?retry_after={date}", retry_policy="fixed"
        )
        await manual_job(
            client, "cap", f"{target.url}/status/429?retry_after=30", retry_policy="capped"
        )
        await manual_job(
            client, "junk", f"{target.url}/status/429?retry_after=soon", retry_policy="fixed"
        )
        for slug in ("secs", "date", "cap", "junk"):
            await run_now(client, slug)
        found = await settled(rig, secs=2, date=2, cap=2, junk=2)
        secs, dated, cap, junk = (found[k] for k in ("secs", "date", "cap", "junk"))
    assert delays(secs) == [timedelta(seconds=30)]  # the header's 30 s over the policy's 1 s
    assert delays(dated) == [
        T + timedelta(seconds=45) - iso_at(dated[0]["attributes"]["finished_at"])
    ]
    assert delays(cap) == [timedelta(seconds=10)]  # capped by max_delay_seconds
    assert delays(junk) == [timedelta(seconds=1)]  # neither form: ignored


async def test_failures_retried_only_as_the_policy_says(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    refused = f"http://127.0.0.1:{closed_port()}/"
    async with running(tmp_path) as rig:
        client, target = rig.client, rig.target
        everything = {
            "retry_on_timeout": True,
            "retry_on_connection_error": True,
            "retry_statuses": ["1xx", "2xx", "3xx", "4xx", "5xx"],
            "max_retries": 1,
        }
        await policy(client, "all", **everything)
        await policy(client, "none", max_retries=3)
        await manual_job(client, "timeout", f"{target.url}/hang", timeout=1, retry_policy="all")
        await manual_job(client, "refused", refused, retry_policy="all")
        await manual_job(client, "ssrf", "http://127.0.0.2:9/", retry_policy="all")
        await manual_job(client, "opted-out", f"{target.url}/hang", timeout=1, retry_policy="none")
        await manual_job(client, "no-policy", f"{target.url}/status/500")
        for slug in ("timeout", "refused", "ssrf", "opted-out", "no-policy"):
            await run_now(client, slug)
        found = await settled(rig, timeout=2, refused=2, ssrf=1, **{"opted-out": 1, "no-policy": 1})
        timeout, refused_runs, ssrf = found["timeout"], found["refused"], found["ssrf"]
        opted_out, no_policy = found["opted-out"], found["no-policy"]
    assert chain_facts(timeout) == [("MANUAL", "TIMEOUT", None), ("RETRY", "TIMEOUT", 1)]
    assert chain_facts(refused_runs) == [
        ("MANUAL", "CONNECTION_ERROR", None),
        ("RETRY", "CONNECTION_ERROR", 1),
    ]
    assert chain_facts(ssrf) == [("MANUAL", "SSRF_BLOCKED", None)]  # never retried
    assert chain_facts(opted_out) == [("MANUAL", "TIMEOUT", None)]
    assert chain_facts(no_policy) == [("MANUAL", "NON_SUCCESS_STATUS", None)]


async def test_a_retry_is_metered_and_the_quota_ends_the_chain(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    async with running(tmp_path, runs_included=2) as rig:
        client, target = rig.client, rig.target
        await policy(client, "p", max_retries=5, retry_statuses=["5xx"])
        await manual_job(client, "j", f"{target.url}/status/500", retry_policy="p")
        await run_now(client, "j")
        runs = (await settled(rig, j=3))["j"]
        usage = (await client.get("/api/v1/usage", headers=NEW)).json()["data"]["attributes"]
    assert chain_facts(runs) == [
        ("MANUAL", "NON_SUCCESS_STATUS", None),
        ("RETRY", "NON_SUCCESS_STATUS", 1),
        ("RETRY", "QUOTA_EXCEEDED", 2),
    ]
    assert usage["runs_used"] == 2 and len(target.received) == 2


@pytest.mark.parametrize("how", ["cancel", "delete"])
async def test_canceling_a_held_retry_or_deleting_its_job_ends_the_chain(
    tmp_path: Path, mock_clock: trio.testing.MockClock, how: str
) -> None:
    async with running(tmp_path) as rig:
        client, target = rig.client, rig.target
        await policy(client, "slow", max_retries=5, delay_seconds=60, retry_statuses=["5xx"])
        await manual_job(client, "j", f"{target.url}/status/500", retry_policy="slow")
        await run_now(client, "j")
        with trio.fail_after(60):
            while db_counts(rig.db, "j")[0] < 2:
                await trio.sleep(0.5)
        held = (await runs_of(client, "j"))[1]
        assert held["attributes"]["status"] == "PENDING"
        assert held["attributes"]["trigger"] == "RETRY"
        if how == "cancel":
            r = await client.post(f"/api/v1/runs/{held['id']}/actions/cancel", headers=NEW)
            assert r.status_code == 200 and r.json()["data"]["attributes"]["status"] == "CANCELED"
        else:
            assert (await client.delete("/api/v1/jobs/j", headers=NEW)).status_code == 204
        await trio.sleep(180)
        after = await client.get(f"/api/v1/runs/{held['id']}", headers=NEW)
        runs = await runs_of(client, "j")
    a = after.json()["data"]["attributes"]
    assert a["status"] == "CANCELED" and a["started_at"] is None
    if how == "delete":
        assert a["error"] == "the job was deleted before this run started"
    assert len(runs) == 2 and len(target.received) == 1  # the chain ended; nothing more sent


async def test_an_environment_overrides_the_policy_and_metrics_count_retries(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    async with running(tmp_path) as rig:
        client, target = rig.client, rig.target
        await policy(client, "base", max_retries=1, retry_statuses=["5xx"])
        await policy(client, "staging", max_retries=2, retry_statuses=["5xx"], delay_seconds=7)
        environments = {
            "production": {"enabled": True},
            "staging": {"enabled": True, "retry_policy": "staging"},
        }
        await manual_job(
            client, "j", f"{target.url}/status/500", retry_policy="base", environments=environments
        )
        await run_now(client, "j", "production")
        await settled(rig, j=2)
        await run_now(client, "j", "staging")
        runs = (await settled(rig, j=5))["j"]
        metrics = (await client.get("/metrics")).text
    staging = [r for r in runs if r["attributes"]["environment"] == "staging"]
    assert chain_facts(staging)[-1] == ("RETRY", "NON_SUCCESS_STATUS", 2)
    assert delays(staging) == [timedelta(seconds=7)] * 2
    assert "jobsd_retries_scheduled_total 3.0" in metrics
