"""One account floods the executor pool: how long does another account wait?

Starts the real daemon (`python -m jobsd serve`, a child process, 8
workers) with two accounts, `flood` and `calm`, and a target on 127.0.0.1
that accepts connections and never answers (so every run of `flood` holds
its worker for its whole 3 s timeout). Two phases, one table each:

1. **Saturation** (the issue's case): `flood` asks 48 run-nows at the
   silent target; once the workers are busy, `calm` asks one run-now of a
   job whose target answers at once, and has a one-off due 1 s later.
   Reported: how long each of `calm`'s runs waited PENDING (started_at -
   created_at) and how late the one-off started (started_at -
   scheduled_for).
2. **Flood** (`--flood N`, default 12000): `flood` sends N run-nows over
   64 connections, each request with a client timeout of 2 s; meanwhile
   `calm` asks a run-now every 0.5 s, has a one-off due every 2 s, and
   `/healthz` is asked every 0.25 s. Reported: the latency of every answer
   by status (a client timeout is a hang: the daemon held the request),
   what `calm` saw, and how many runs were left PENDING. The flood stops
   early after 64 client timeouts: past that the intake is known to hang.

    .venv/bin/python tests/bench/bench_fairness.py [--flood 12000] [--timeout-s 600]

It is not a test; everything it starts it stops, and every phase runs under
one global deadline.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import trio

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from jobsd.config import token_sha256  # noqa: E402
from tests.bench.e2e.figures import pct  # noqa: E402
from tests.daemon_process import DaemonProcess  # noqa: E402
from tests.target import open_target  # noqa: E402
from tests.test_concurrency_accounts import create, runs_of  # noqa: E402

FLOOD_TOKEN = "jobsd_bench-flood-account-token"
CALM_TOKEN = "jobsd_bench-calm-account-token"
JSONAPI = "application/vnd.api+json"
WORKERS = 8
HANG_TIMEOUT_S = 3
MAX_TIMEOUTS = 64


def config_toml(data: Path) -> str:
    accounts = "".join(
        f'[[accounts]]\nid = "{name}"\nplan = "big"\ntokens_sha256 = ["{token_sha256(tok)}"]\n'
        for name, tok in (("flood", FLOOD_TOKEN), ("calm", CALM_TOKEN))
    )
    return f"""
[server]
listen = "127.0.0.1:0"
max_connections = 512
[storage]
path = "{data / "jobsd.sqlite3"}"
[secrets]
key_file = "{data / "secret.key"}"
[scheduler]
workers = {WORKERS}
shutdown_grace_s = 1
[outbound]
allow_cidrs = ["127.0.0.1/32"]
[plans.big]
runs_included = -1
active_jobs_limit = -1
max_timeout = 300
{accounts}"""


def iso_z(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def silent_target(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Accepts connections and never answers: a target that hangs."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    task_status.started(f"http://127.0.0.1:{port}")

    async def hold(stream: trio.SocketStream) -> None:
        async with stream:
            while await stream.receive_some(65536):
                pass

    await trio.serve_listeners(hold, listeners)


def client(url: str, token: str, **kw: Any) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {token}", "Content-Type": JSONAPI},
        trust_env=False,
        verify=False,
        **kw,
    )


def pending_count(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute("SELECT count(*) FROM runs WHERE status = 'PENDING'").fetchone()[0])
    finally:
        conn.close()


async def wait_started(db: Path, account: str, count: int, limit_s: float) -> list[sqlite3.Row]:
    """`account`'s runs once `count` of them started, or as they are at `limit_s`."""
    deadline = trio.current_time() + limit_s
    while True:
        rows = runs_of(db, account)
        if sum(r["started_at_us"] is not None for r in rows) >= count:
            return rows
        if trio.current_time() > deadline:
            return rows
        await trio.sleep(0.05)


def waited_s(row: sqlite3.Row, since: str) -> str:
    if row["started_at_us"] is None:
        return "never started"
    return f"{(row['started_at_us'] - row[since]) / 1e6:.3f} s"


async def saturation(url: str, db: Path, hang: str, quick: str) -> None:
    async with client(url, FLOOD_TOKEN) as flood, client(url, CALM_TOKEN) as calm:
        await create(flood, "hang", "0 0 1 1 *", hang, HANG_TIMEOUT_S)
        await create(calm, "quick", "0 0 1 1 *", quick, 10)
        for _ in range(48):
            assert (await flood.post("/api/v1/jobs/hang/actions/run")).status_code == 200
        await wait_started(db, "flood", WORKERS - 1, 10)
        r = await calm.post("/api/v1/jobs/quick/actions/run")
        assert r.status_code == 200, r.text
        due = datetime.now(UTC) + timedelta(seconds=1)
        await create(calm, "once", iso_z(due), quick, 10)
        rows = await wait_started(db, "calm", 2, 60)
    by_trigger = {r["trigger"]: r for r in rows}
    print("\n## saturation: 48 run-nows of `flood` at a silent target, 8 workers, timeout 3 s")
    print(f"calm's run-now waited PENDING: {waited_s(by_trigger['MANUAL'], 'created_at_us')}")
    if "SCHEDULE" in by_trigger:
        sched = by_trigger["SCHEDULE"]
        print(f"calm's one-off started {waited_s(sched, 'scheduled_for_us')} after its instant")
        fired_late = (sched["created_at_us"] - sched["scheduled_for_us"]) / 1e6
        print(f"  (fired {fired_late:.3f} s after its instant)")


@dataclass
class Flood:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    retry_after: set[str] = field(default_factory=set)
    timeouts: int = 0
    calm: list[tuple[str, float]] = field(default_factory=list)
    healthz: list[float] = field(default_factory=list)
    sent: int = 0
    elapsed_s: float = 0.0


async def flood_phase(url: str, db: Path, hang: str, quick: str, count: int) -> None:
    result = Flood()
    done = trio.Event()
    limits = httpx2.Limits(max_connections=64, max_keepalive_connections=64)
    async with (
        client(url, FLOOD_TOKEN, limits=limits, timeout=2) as flood,
        client(url, CALM_TOKEN, timeout=5) as calm,
    ):
        await create(calm, "quick2", "0 0 1 1 *", quick, 10)
        # Every 2 s a one-off of `calm` falls due during the flood.
        start = datetime.now(UTC)
        for n in range(30):
            due = start + timedelta(seconds=4 + 2 * n)
            await create(calm, f"tick-{n}", iso_z(due), quick, 10)
        jobs = iter(range(count))

        async def sender() -> None:
            for _ in jobs:
                if result.timeouts >= MAX_TIMEOUTS:
                    return
                began = trio.current_time()
                try:
                    r = await flood.post("/api/v1/jobs/hang/actions/run")
                except httpx2.TimeoutException:
                    result.timeouts += 1
                    continue
                finally:
                    result.sent += 1
                result.latencies[str(r.status_code)].append(trio.current_time() - began)
                if "Retry-After" in r.headers:
                    result.retry_after.add(r.headers["Retry-After"])

        async def calm_probe() -> None:
            while not done.is_set():
                began = trio.current_time()
                try:
                    r = await calm.post("/api/v1/jobs/quick2/actions/run")
                    result.calm.append((str(r.status_code), trio.current_time() - began))
                except httpx2.TimeoutException:
                    result.calm.append(("timeout", trio.current_time() - began))
                await trio.sleep(0.5)

        async def health_probe() -> None:
            async with httpx2.AsyncClient(base_url=url, trust_env=False, timeout=10) as h:
                while not done.is_set():
                    began = trio.current_time()
                    try:
                        await h.get("/healthz")
                        result.healthz.append(trio.current_time() - began)
                    except httpx2.TimeoutException:
                        result.healthz.append(10.0)
                    await trio.sleep(0.25)

        began = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(calm_probe)
            nursery.start_soon(health_probe)
            async with trio.open_nursery() as senders:
                for _ in range(64):
                    senders.start_soon(sender)
            result.elapsed_s = trio.current_time() - began
            done.set()
    report_flood(result, db, count)


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    return " / ".join(f"{pct(values, p) * 1000:.0f}" for p in (50, 99, 100))


def report_flood(result: Flood, db: Path, count: int) -> None:
    print(f"\n## flood: {count} run-nows of `flood` over 64 connections (client timeout 2 s)")
    print(
        f"sent {result.sent} in {result.elapsed_s:.1f} s; client timeouts (hung): {result.timeouts}"
    )
    for status, values in sorted(result.latencies.items()):
        print(f"  {status}: {len(values):6d} answers, latency p50/p99/max ms {_ms(values)}")
    if result.retry_after:
        print(f"  Retry-After values: {sorted(result.retry_after)}")
    calm_by: dict[str, list[float]] = defaultdict(list)
    for status, latency in result.calm:
        calm_by[status].append(latency)
    for status, values in sorted(calm_by.items()):
        print(f"calm's run-now {status}: {len(values)}, latency p50/p99/max ms {_ms(values)}")
    print(f"/healthz: {len(result.healthz)} probes, latency p50/p99/max ms {_ms(result.healthz)}")
    rows = [r for r in runs_of(db, "calm") if r["job_slug"].startswith("tick-")]
    late = [(r["created_at_us"] - r["scheduled_for_us"]) / 1e6 for r in rows]
    waits = [(r["started_at_us"] - r["created_at_us"]) / 1e6 for r in rows if r["started_at_us"]]
    print(
        f"calm's one-offs due during the flood: {len(rows)} fired, fired late p50/max s "
        f"{pct(late, 50) if late else 0:.3f}/{max(late, default=0):.3f}, "
        f"{len(waits)} started, PENDING p50/max s "
        f"{pct(waits, 50) if waits else 0:.3f}/{max(waits, default=0):.3f}"
    )
    manual = [r for r in runs_of(db, "calm") if r["job_slug"] == "quick2"]
    never = sum(r["started_at_us"] is None for r in manual)
    print(f"calm's run-nows committed: {len(manual)}, not started by the end: {never}")
    print(f"runs PENDING at the end: {pending_count(db)}")


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="jobsd-bench-fair-") as tmp:
        data = Path(tmp)
        (data / "jobsd.toml").write_text(config_toml(data))
        with trio.fail_after(args.timeout_s):
            async with trio.open_nursery() as nursery, open_target() as quick:
                hang = await nursery.start(silent_target)
                daemon = DaemonProcess(["serve", "--config", str(data / "jobsd.toml")], data)
                with daemon:
                    db = data / "jobsd.sqlite3"
                    await saturation(daemon.url, db, f"{hang}/hang", f"{quick.url}/ok")
                    await flood_phase(daemon.url, db, f"{hang}/hang", f"{quick.url}/ok", args.flood)
                    daemon.stop()
                nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flood", type=int, default=12000)
    parser.add_argument("--timeout-s", type=float, default=600)
    started = time.monotonic()
    trio.run(main, parser.parse_args())
    print(f"\n(total {time.monotonic() - started:.0f} s)")
