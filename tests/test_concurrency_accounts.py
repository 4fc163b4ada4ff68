"""One account floods the executor pool: every other account carries on.

Against the whole daemon in-process (`serving_daemon`: real hypercorn on an
ephemeral port, real store, real executors) and a target on 127.0.0.1 whose
`/hang` never answers, so each run of the flooding account (`acme`) holds
its worker for its whole timeout. The other account (`other`) must not
notice:

- saturation (the issue's case: 48 runs of acme, run-nows and due one-offs,
  on 8 workers): other's run-now and its one-off start at once, on the
  worker kept for accounts other than the busiest;
- a flood past `max_pending_runs`: acme's run-now and rerun answer at once,
  `429` with `Retry-After`, past the bound, while other's are accepted and
  start at once, other's one-off fires on time, and `/healthz` answers
  throughout;
- callers that hang up right after sending a run-now: every run that was
  committed reaches a worker without a restart, exactly once.

Every loop is bounded in count and time.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio

from jobsd.clock import iso
from tests.conftest import JSONAPI, TOKEN_A, TOKEN_B
from tests.cpu_wait import watching_cpu_wait
from tests.target import Target, open_target
from tests.test_limits import Live, serving_daemon

HANG_S = 3  # the flooding account's request timeout: "one request's time"
AT_ONCE_S = 1.0  # what "starts at once" is held to, on a loaded 2-core machine
ANSWER_S = 2.0  # the longest any API answer may take during a flood
FLOOD_CONCURRENCY = 16
# In the flood past the bound acme's requests hang for FLOOD_HANG_S: whatever
# waited for a worker held by acme (other's run without the worker kept for
# it, a run-now answered only once an executor took it) would wait ~30 s,
# six times FLOOD_PROMPT_S and more. At load 5-6 on 2 cores the flood's
# answers took up to 1.5 s and other's one-off fired 1.1 s late, past the
# 1 s and 2 s bounds this test used to share with the one above (whose
# 3 s hang left no room between working and broken).
FLOOD_HANG_S = 30
FLOOD_PROMPT_S = 5.0


@asynccontextmanager
async def api(live: Live, token: str) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(
        base_url=live.url,
        headers={"Authorization": f"Bearer {token}", "Content-Type": JSONAPI},
        trust_env=False,
        verify=False,
        timeout=10,
    ) as client:
        yield client


@asynccontextmanager
async def two_accounts(
    tmp_path: Path, *, max_pending_runs: int | None = None, shutdown_grace_s: int | None = None
) -> AsyncIterator[tuple[Target, Live, httpx2.AsyncClient, httpx2.AsyncClient]]:
    """The target, the daemon (8 workers, no quotas) and a client for each account."""
    plan: dict[str, Any] = {"workers": 8, "runs_included": -1, "active_jobs_limit": -1}
    lines = []
    if max_pending_runs is not None:
        lines.append(f"max_pending_runs = {max_pending_runs}")
    if shutdown_grace_s is not None:
        lines.append(f"shutdown_grace_s = {shutdown_grace_s}")
    plan["scheduler"] = "\n".join(lines)
    async with (
        open_target() as target,
        serving_daemon(tmp_path, **plan) as live,
        api(live, TOKEN_A) as acme,
        api(live, TOKEN_B) as other,
    ):
        yield target, live, acme, other


async def create(
    client: httpx2.AsyncClient, slug: str, schedule: str, url: str, timeout_s: int = 10
) -> None:
    attributes = {
        "name": slug,
        "schedule": schedule,
        "configuration": {"url": url, "timeout": timeout_s},
    }
    r = await client.post(
        "/api/v1/jobs", json={"data": {"type": "job", "id": slug, "attributes": attributes}}
    )
    assert r.status_code == 201, r.text


def runs_of(db: Path, account: str) -> list[sqlite3.Row]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(
            "SELECT * FROM runs WHERE account_id = ? ORDER BY seq", (account,)
        ).fetchall()
    finally:
        conn.close()


async def started_rows(live: Live, account: str, count: int, limit_s: float) -> list[sqlite3.Row]:
    """`account`'s runs once `count` of them have started (fails past `limit_s`)."""
    with trio.fail_after(limit_s):
        while True:
            rows = runs_of(live.db, account)
            if sum(r["started_at_us"] is not None for r in rows) >= count:
                return rows
            await trio.sleep(0.02)


async def hangs_received(target: Target, count: int, limit_s: float = 10) -> None:
    with trio.fail_after(limit_s):
        while sum(r.path == "/hang" for r in target.received) < count:
            await trio.sleep(0.01)


def waited_s(row: sqlite3.Row, since: str) -> float:
    return float(row["started_at_us"] - row[since]) / 1e6


def due_in(live: Live, seconds: float) -> tuple[str, datetime]:
    at = live.clock.now() + timedelta(seconds=seconds)
    return iso(at) or "", at


async def test_a_saturating_account_does_not_delay_another(tmp_path: Path) -> None:
    """The issue's case: 48 runs of acme at a silent target on 8 workers (17.8 s before)."""
    async with two_accounts(tmp_path) as (target, live, acme, other):
        hang = f"{target.url}/hang"
        await create(acme, "hang", "0 0 1 1 *", hang, HANG_S)
        for n in range(8):  # due scheduled runs of acme, as well as run-nows
            await create(acme, f"due-{n}", "now", hang, HANG_S)
        for _ in range(40):
            assert (await acme.post("/api/v1/jobs/hang/actions/run")).status_code == 200
        await hangs_received(target, 7)
        await create(other, "quick", "0 0 1 1 *", f"{target.url}/ok")
        r = await other.post("/api/v1/jobs/quick/actions/run")
        assert r.status_code == 200, r.text
        schedule, _ = due_in(live, 1.0)
        await create(other, "once", schedule, f"{target.url}/ok")
        rows = await started_rows(live, "other", 2, 10)
        acme_rows = await started_rows(live, "acme", 8, 2 * HANG_S + 5)

    by_trigger = {r["trigger"]: r for r in rows}
    run_now, once = by_trigger["MANUAL"], by_trigger["SCHEDULE"]
    print(
        f"other's run-now waited {waited_s(run_now, 'created_at_us'):.3f} s PENDING, its "
        f"one-off started {waited_s(once, 'scheduled_for_us'):.3f} s after its instant"
    )
    assert waited_s(run_now, "created_at_us") < AT_ONCE_S < HANG_S
    assert waited_s(once, "scheduled_for_us") < AT_ONCE_S
    assert len(acme_rows) == 48
    # acme never had more than 7 of the 8 workers: its 8th request started only
    # once one of its first ones had timed out.
    starts = sorted(r["started_at_us"] for r in acme_rows if r["started_at_us"] is not None)
    assert starts[7] - starts[0] >= (HANG_S - 0.5) * 1e6


async def test_a_flood_past_the_bound_is_refused_at_once_and_others_carry_on(
    tmp_path: Path,
) -> None:
    bound = 40
    # No grace at the end for acme's hanging requests: the test is over by then.
    rig = two_accounts(tmp_path, max_pending_runs=bound, shutdown_grace_s=0)
    async with rig as (target, live, acme, other):
        await create(acme, "hang", "0 0 1 1 *", f"{target.url}/hang", FLOOD_HANG_S)
        await create(other, "quick", "0 0 1 1 *", f"{target.url}/ok")
        first = (await acme.post("/api/v1/jobs/hang/actions/run")).json()["data"]["id"]
        other_first = (await other.post("/api/v1/jobs/quick/actions/run")).json()["data"]["id"]
        schedule, _ = due_in(live, 1.5)
        await create(other, "once", schedule, f"{target.url}/ok")

        answers: list[tuple[int, float, httpx2.Response]] = []
        health: list[tuple[int, float, float]] = []  # status, began, answered
        flooding = trio.Event()

        async def flood(count: int) -> None:
            for _ in range(count):
                began = trio.current_time()
                r = await acme.post("/api/v1/jobs/hang/actions/run")
                answers.append((r.status_code, trio.current_time() - began, r))

        async def probe_health() -> None:
            async with httpx2.AsyncClient(base_url=live.url, trust_env=False) as h:
                while not flooding.is_set():
                    began = trio.current_time()
                    r = await h.get("/healthz", timeout=10)
                    health.append((r.status_code, began, trio.current_time()))
                    await trio.sleep(0.05)

        with trio.fail_after(60):
            async with watching_cpu_wait() as cpu, trio.open_nursery() as nursery:
                nursery.start_soon(probe_health)
                async with trio.open_nursery() as floods:
                    for _ in range(FLOOD_CONCURRENCY):
                        floods.start_soon(flood, 200 // FLOOD_CONCURRENCY)
                # Past the bound acme's rerun is refused too; other's calls are not.
                rerun = await acme.post(f"/api/v1/runs/{first}/actions/rerun")
                began = trio.current_time()
                mine = await other.post("/api/v1/jobs/quick/actions/run")
                mine_s = trio.current_time() - began
                other_rerun = await other.post(f"/api/v1/runs/{other_first}/actions/rerun")
                rows = await started_rows(live, "other", 4, 10)
                flooding.set()

    statuses = [status for status, _, _ in answers]
    slowest = max(latency for _, latency, _ in answers)
    # /healthz is held to ANSWER_S net of the loop's waits for a CPU (tests.cpu_wait):
    # what would make it wait is the loop kept busy, which acme's 30 s hang does not widen.
    health_s = max(end - began for _, began, end in health)
    health_net_s = max(cpu.net_s(began, end) for _, began, end in health)
    print(
        f"flood: {statuses.count(200)} accepted, {statuses.count(429)} refused, slowest "
        f"answer {slowest * 1000:.0f} ms; other's run-now answered in {mine_s * 1000:.0f} ms; "
        f"/healthz slowest {health_s * 1000:.0f} ms ({health_net_s * 1000:.0f} net) over "
        f"{len(health)} probes; the loop waited {cpu.waited_s(0, math.inf):.3f} s for a CPU"
    )
    assert set(statuses) == {200, 429} and statuses.count(200) >= bound
    assert slowest < FLOOD_PROMPT_S, "no run-now may wait for the executors"
    for status, _, r in answers:
        if status == 429:
            assert r.headers["Retry-After"] == "5"
            assert r.headers["Content-Type"].startswith(JSONAPI)
            assert r.json()["errors"][0]["code"] == "too_many_pending_runs"
    assert rerun.status_code == 429 and rerun.headers["Retry-After"] == "5"
    assert mine.status_code == 200 and mine_s < FLOOD_PROMPT_S
    assert other_rerun.status_code == 200
    acme_rows = runs_of(live.db, "acme")
    assert sum(r["started_at_us"] is None for r in acme_rows) <= bound
    assert len(acme_rows) == 1 + statuses.count(200)
    assert health and all(s == 200 for s, _, _ in health) and health_net_s < ANSWER_S
    # other's runs: each started at once; its one-off fired on time during the flood.
    for row in rows:
        assert waited_s(row, "created_at_us") < FLOOD_PROMPT_S, dict(row)
    (once,) = [r for r in rows if r["trigger"] == "SCHEDULE"]
    assert (once["created_at_us"] - once["scheduled_for_us"]) / 1e6 < FLOOD_PROMPT_S


async def hang_up_after_sending(live: Live, path: str, token: str, after_s: float) -> None:
    """Send a POST, close `after_s` later, never reading the answer: a caller who gave up.

    With a body, so the app's route answers it (see the test below)."""
    stream = await trio.open_tcp_stream(live.host, live.port)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {live.host}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Length: 2\r\n\r\n{}"
    )
    await stream.send_all(head.encode())
    await trio.sleep(after_s)
    await stream.aclose()


RUN_NOW_ROUTE = "/api/v1/jobs/{job_id}/actions/run"


def answers_begun(caplog: pytest.LogCaptureFixture) -> int:
    """Run-now answers (200) that began: the access log counts each one as it starts."""
    return sum(
        1
        for record in caplog.records
        if getattr(record, "fields", {}).get("route") == RUN_NOW_ROUTE
        and getattr(record, "fields", {}).get("status") == 200
    )


async def test_runs_of_callers_who_hang_up_still_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Run-nows whose callers leave at once, during a flood: nothing committed is stranded.

    While acme floods, other's callers hang up in waves, each over a spread of
    moments around how long a run-now takes just then: some before their
    handler commits (no run), some after the answer, and some while the
    handler is committing: the write completes and the handler is cancelled
    right after it, never answering. That last case used to strand the run
    until the next restart; it shows as a run committed with no answer begun
    for it (the access log counts every answer as it begins). Waves go on
    until it has happened (at most 30).

    Other's run-nows carry a body (`{}`, which the seed version ignores), so
    Quart's route answers them, with awaits between its commit and its
    answer. The fast path (`jobsd.api.fast_paths`) answers acme's: it has
    none between its commit, its offer and the start of its answer (which
    the access log counts), so there the case cannot arise.
    """
    caplog.set_level("INFO", logger="jobsd.access")
    async with two_accounts(tmp_path, max_pending_runs=40) as (target, live, acme, other):
        # acme's runs hold a worker until their 1 s timeout while the waves go
        # on, then are released: the runs left PENDING need not each wait 1 s.
        await create(acme, "hang", "0 0 1 1 *", f"{target.url}/held", 1)
        await create(other, "quick", "0 0 1 1 *", f"{target.url}/ok")
        path = "/api/v1/jobs/quick/actions/run"
        answered = {"acme": 0, "other": 0}
        flooding = trio.Event()

        def unanswered() -> int:
            begun_for_other = answers_begun(caplog) - answered["acme"]
            return len(runs_of(live.db, "other")) - begun_for_other

        async def flood() -> None:
            while not flooding.is_set():
                r = await acme.post("/api/v1/jobs/hang/actions/run")
                answered["acme"] += r.status_code == 200

        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                for _ in range(12):
                    nursery.start_soon(flood)
                for _ in range(30):
                    began = trio.current_time()
                    assert (await other.post(path, content=b"{}")).status_code == 200
                    answered["other"] += 1
                    took = trio.current_time() - began
                    async with trio.open_nursery() as wave:
                        for n in range(12):
                            after_s = took * (0.2 + 0.1 * n)
                            wave.start_soon(hang_up_after_sending, live, path, TOKEN_B, after_s)
                    await trio.sleep(0.3)
                    if unanswered() > answered["other"]:
                        break
                flooding.set()
            target.released.set()
            # Every committed run leaves PENDING, without a restart.
            while any(
                r["status"] in ("PENDING", "RUNNING")
                for account in ("acme", "other")
                for r in runs_of(live.db, account)
            ):
                await trio.sleep(0.1)
        await trio.sleep(0.5)  # every handler has ended: the counts are final
        committed = {a: runs_of(live.db, a) for a in ("acme", "other")}
        received = [r.headers.get("x-jobsd-run-id") for r in target.received]
        cancelled_after_commit = unanswered() - answered["other"]
        r = await acme.get("/healthz")
        assert r.status_code == 200

    print(
        f"other: {len(committed['other']) - answered['other']} runs committed for callers "
        f"who hung up, {cancelled_after_commit} of them by handlers cancelled after the commit; "
        f"acme: {len(committed['acme'])}; all ran"
    )
    assert len(committed["acme"]) == answered["acme"]
    assert cancelled_after_commit > 0, "no handler was cancelled after its commit: no case made"
    ids = [r["id"] for rows in committed.values() for r in rows]
    assert sorted(received) == sorted(ids), "each committed run sent exactly once"
    outcomes = {(r["status"], r["failure_reason"]) for rows in committed.values() for r in rows}
    assert outcomes <= {("SUCCEEDED", None), ("FAILED", "TIMEOUT")}, outcomes
