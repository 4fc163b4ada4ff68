"""Can one account, or one client, deny service to another? Figures, not a test.

Starts the real daemon (`python -m jobsd serve`, a child process) on
127.0.0.1 with two accounts, `flood` and `calm`, and measures what `calm`
(or a second client) sees while `flood` does its worst within every bound:

- `writes`: `flood` keeps `--conns` connections (default 256, the default
  `max_connections`... less a few for `calm`) each PUTting jobs near the
  1.25 MiB configuration bound (a 1.2 MiB body and 64 sealed headers),
  for `--seconds`. Meanwhile `calm` loops a small create, a run-now and a
  cancel of that run, one at a time, and has a one-off due every 2 s.
  Reported: `flood`'s answers by status, `calm`'s latency per operation
  (p50/p99/max) and how late its one-offs fired. `--flood runnow` (or
  `rerun`) floods run-nows of a small job (or reruns of one run) instead.
- `conns`: one client (source 127.0.0.1) opens `max_connections` (here
  64, `--conns`) connections, each sending a PUT whose 100-byte body
  trickles in over 25 s (inside `body_timeout_s`, 30 s: legal), and opens
  another as each ends. A second client, from 127.0.0.2, asks `/healthz` on
  a new connection every 0.5 s. Reported: the second client's latency.

    .venv/bin/python -m tests.bench.bench_shares writes [--seconds 20] [--conns 250]
        [--flood put|runnow|rerun]
    .venv/bin/python -m tests.bench.bench_shares conns [--seconds 30] [--conns 64]

Everything runs under one deadline (`--seconds` plus a margin); all traffic
stays on loopback.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import trio

from jobsd.config import token_sha256
from tests.bench.bench_fairness import CALM_TOKEN, FLOOD_TOKEN, client, iso_z
from tests.bench.e2e.figures import pct
from tests.bench.raw_http import exchange, request_bytes
from tests.conftest import job_doc
from tests.daemon_process import DaemonProcess
from tests.test_concurrency_accounts import create, runs_of

HEAVY_BODY = 1_048_576
HEAVY_JOBS = 32


def config_toml(data: Path, max_connections: int, per_client: int = 0) -> str:
    accounts = "".join(
        f'[[accounts]]\nid = "{name}"\nplan = "big"\ntokens_sha256 = ["{token_sha256(tok)}"]\n'
        for name, tok in (("flood", FLOOD_TOKEN), ("calm", CALM_TOKEN))
    )
    return f"""
[server]
listen = "127.0.0.1:0"
max_connections = {max_connections}
{f"max_connections_per_client = {per_client}" if per_client else ""}
[storage]
path = "{data / "jobsd.sqlite3"}"
[secrets]
key_file = "{data / "secret.key"}"
[scheduler]
workers = 4
shutdown_grace_s = 1
[outbound]
allow_cidrs = ["127.0.0.1/32"]
[plans.big]
runs_included = -1
active_jobs_limit = -1
max_timeout = 300
{accounts}"""


def heavy_job(slug: str) -> bytes:
    """A paused job near the configuration bound: 1.2 MiB of body, 64 headers."""
    headers = [{"name": f"X-H{i}", "value": "v" * 3000} for i in range(64)]
    configuration = {"url": "http://127.0.0.1:9/x", "body": "b" * HEAVY_BODY, "headers": headers}
    return json.dumps(paused_job(slug, configuration), separators=(",", ":")).encode()


def paused_job(slug: str, configuration: Mapping[str, object]) -> dict[str, Any]:
    """A job that never fires in a benchmark's run (paused, once a year)."""
    when = "0 0 1 1 *"
    return job_doc(slug, name=slug, enabled=False, schedule=when, configuration=configuration)


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    return " / ".join(f"{pct(values, p) * 1000:.0f}" for p in (50, 99, 100))


async def writes(url: str, db: Path, seconds: float, conns: int, kind: str = "put") -> None:
    host, port = url.removeprefix("http://").split(":")
    statuses: dict[int, int] = defaultdict(int)
    calm_ops: dict[str, list[float]] = defaultdict(list)
    calm_errors: dict[str, int] = defaultdict(int)
    async with (
        client(url, FLOOD_TOKEN, timeout=120) as flood,
        client(url, CALM_TOKEN, timeout=120) as calm,
    ):
        for n in range(HEAVY_JOBS):
            r = await flood.post("/api/v1/jobs", content=heavy_job(f"heavy-{n}"))
            assert r.status_code == 201, r.text[:300]
        await create(calm, "target", "0 0 1 1 *", "http://127.0.0.1:9/x", 10)
        start = datetime.now(UTC)
        ticks = int(seconds // 2)
        for n in range(ticks):
            await create(
                calm,
                f"tick-{n}",
                iso_z(start + timedelta(seconds=4 + 2 * n)),
                "http://127.0.0.1:9/x",
                10,
            )
        puts = [
            request_bytes("PUT", f"/api/v1/jobs/heavy-{n}", FLOOD_TOKEN, heavy_job(f"heavy-{n}"))
            for n in range(HEAVY_JOBS)
        ]
        if kind != "put":  # run-nows (or reruns of one run) of a small job instead
            await create(flood, "small", "0 0 1 1 *", "http://127.0.0.1:9/x", 10)
            path = "/api/v1/jobs/small/actions/run"
            if kind == "rerun":
                run_id = (await flood.post(path)).json()["data"]["id"]
                path = f"/api/v1/runs/{run_id}/actions/rerun"
            puts = [request_bytes("POST", path, FLOOD_TOKEN)]
        stop_at = trio.current_time() + seconds

        async def flooder(i: int) -> None:
            sent = 0
            while trio.current_time() < stop_at:
                stream = await trio.open_tcp_stream(host, int(port))
                async with stream:
                    while trio.current_time() < stop_at:
                        status, close = await exchange(stream, puts[(i + sent) % len(puts)])
                        sent += 1
                        statuses[status] += 1
                        if close:
                            break

        async def calm_loop() -> None:
            n = 0
            await trio.sleep(2)  # the flood is under way
            while trio.current_time() < stop_at:
                for op, call in (
                    ("create", lambda n=n: create_small(calm, f"small-{n}")),
                    ("run-now", lambda: calm.post("/api/v1/jobs/target/actions/run")),
                ):
                    began = trio.current_time()
                    r = await call()
                    calm_ops[op].append(trio.current_time() - began)
                    if r.status_code >= 300:
                        calm_errors[f"{op} {r.status_code}"] += 1
                    if op == "run-now" and r.status_code == 200:
                        run_id = r.json()["data"]["id"]
                        began = trio.current_time()
                        c = await calm.post(f"/api/v1/runs/{run_id}/actions/cancel")
                        calm_ops["cancel"].append(trio.current_time() - began)
                        if c.status_code >= 300 and c.status_code != 409:
                            calm_errors[f"cancel {c.status_code}"] += 1
                n += 1
                await trio.sleep(0.2)

        began = trio.current_time()
        with trio.move_on_after(seconds + 60):
            async with trio.open_nursery() as nursery:
                for i in range(conns):
                    nursery.start_soon(flooder, i)
                nursery.start_soon(calm_loop)
        wall = trio.current_time() - began
    done = sum(statuses.values())
    mib = done * len(puts[0]) / 2**20
    what = f"PUTting {len(puts[0]) / 2**20:.2f} MiB jobs" if kind == "put" else f"{kind}s"
    print(f"\n## writes: {conns} connections of `flood` {what}")
    print(
        f"flood: {done} answers in {wall:.1f} s ({mib / wall:.1f} MiB/s) by status {dict(statuses)}"
    )
    for op, values in calm_ops.items():
        print(f"calm {op}: {len(values)}, latency p50/p99/max ms {_ms(values)}")
    print(f"calm refusals: {dict(calm_errors) or 'none'}")
    rows = [r for r in runs_of(db, "calm") if r["job_slug"].startswith("tick-")]
    late = [(r["created_at_us"] - r["scheduled_for_us"]) / 1e6 for r in rows]
    print(f"calm one-offs: {len(rows)} of {ticks} fired; fired late p50/max ms {_ms(late)}")


async def create_small(calm: httpx2.AsyncClient, slug: str) -> httpx2.Response:
    attributes = {
        "name": slug,
        "enabled": False,
        "schedule": "0 0 1 1 *",
        "configuration": {"url": "http://127.0.0.1:9/x"},
    }
    return await calm.post(
        "/api/v1/jobs", json={"data": {"type": "job", "id": slug, "attributes": attributes}}
    )


async def conns_case(url: str, seconds: float, conns: int) -> None:
    host, port = url.removeprefix("http://").split(":")
    head = (
        f"PUT /api/v1/jobs/slow HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {FLOOD_TOKEN}\r\n"
        f"Content-Type: application/vnd.api+json\r\nContent-Length: 100\r\n\r\n"
    ).encode()
    stop_at = trio.current_time() + seconds
    held = [0]
    waits: list[float] = []
    failures: list[str] = []

    async def slow(i: int) -> None:
        while trio.current_time() < stop_at:
            try:
                stream = await trio.open_tcp_stream(host, int(port))
            except OSError:
                await trio.sleep(0.1)
                continue
            async with stream:
                held[0] += 1
                try:
                    await stream.send_all(head)
                    for _ in range(100):  # one byte every 0.25 s: 25 s, inside body_timeout_s
                        if trio.current_time() >= stop_at:
                            break
                        await stream.send_all(b" ")
                        await trio.sleep(0.25)
                    await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    pass
                finally:
                    held[0] -= 1

    async def second() -> None:
        await trio.sleep(3)  # every slow connection is open
        while trio.current_time() < stop_at:
            began = trio.current_time()
            sock = trio.socket.socket()
            await sock.bind(("127.0.0.2", 0))
            await sock.connect((host, int(port)))
            stream = trio.SocketStream(sock)
            async with stream:
                try:
                    await stream.send_all(
                        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                    )
                    with trio.fail_after(40):
                        answer = await stream.receive_some(65536)
                    waits.append(trio.current_time() - began)
                    if not answer.startswith(b"HTTP/1.1 200"):
                        failures.append(answer[:40].decode(errors="replace"))
                except (trio.TooSlowError, trio.BrokenResourceError) as exc:
                    failures.append(type(exc).__name__)
            await trio.sleep(0.5)

    with trio.move_on_after(seconds + 45):
        async with trio.open_nursery() as nursery:
            for i in range(conns):
                nursery.start_soon(slow, i)
            nursery.start_soon(second)
    print(f"\n## conns: one client holds {conns} slow-body connections (max_connections {conns})")
    print(f"second client (127.0.0.2) /healthz: {len(waits)} answers, p50/p99/max ms {_ms(waits)}")
    print(f"second client failures: {failures or 'none'}")


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="jobsd-bench-shares-") as tmp:
        data = Path(tmp)
        cap = 256 if args.case == "writes" else args.conns
        # `writes` measures the accounts' write budgets alone: one client may hold
        # every slot there (the per-client share is `conns`'s subject).
        per_client = cap if args.case == "writes" else 0
        (data / "jobsd.toml").write_text(config_toml(data, cap, per_client))
        with trio.fail_after(args.seconds + 300):
            with DaemonProcess(["serve", "--config", str(data / "jobsd.toml")], data) as daemon:
                if args.case == "writes":
                    db = data / "jobsd.sqlite3"
                    await writes(daemon.url, db, args.seconds, args.conns, args.flood)
                else:
                    await conns_case(daemon.url, args.seconds, args.conns)
                daemon.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("case", choices=["writes", "conns"])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--conns", type=int, default=250)
    parser.add_argument("--flood", choices=["put", "runnow", "rerun"], default="put")
    began = time.monotonic()
    trio.run(main, parser.parse_args())
    print(f"\n(total {time.monotonic() - began:.0f} s)")
