"""The API read path in one process, no sockets: CPU per `GET /jobs/{id}` by layer.

Calls the ASGI app the daemon serves (trusted-proxy check, metrics and
access log, head limit, Host check, the fast read path; auth, the store
read, rendering) directly with a request scope, `--concurrency` at a time,
then the same read answered by the Quart route behind the older layers
("routed": request deadline, Quart, its hooks), then the served app without
the metrics and access log ("quiet"), then a
hello-world Quart app behind the same request-level guards, round after
round. What is left out is the same for both: hypercorn's
parsing and the socket. So the difference is jobsd's own work per read,
measured as CPU (`process_time`, every thread of this process) per request.

    .venv/bin/python -m tests.bench.bench_api_read [--requests 3000] [--rounds 3]
        [--profile FILE]    (cProfile of the jobsd rounds, sorted by own time)

`--accounts N` configures N accounts of 2 tokens each (the token lookup
grows with them); the reads are made by the last one.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import os
import pstats
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from jobsd.api import limits
from jobsd.api.auth import Caller
from jobsd.api.context import ApiContext
from jobsd.api.request_deadline import RequestDeadline
from jobsd.api.server import served_app
from jobsd.api.v2026_06_04 import DIALECT
from jobsd.api.versions import limit_of
from jobsd.clock import Clock
from jobsd.config import Config, load_config, token_sha256
from jobsd.logs import configure
from jobsd.messages import CancelRun, JobChanged
from jobsd.observer import Observer
from jobsd.settings import Health, Settings
from jobsd.store import open_store
from jobsd.store.keyring import KeyRing
from tests.bench.e2e.hello_server import HELLO_PATH, hello_app
from tests.conftest import job_doc

Asgi = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def config_text(data: Path, accounts: int) -> str:
    parts = [
        f'[storage]\npath = "{data / "db.sqlite3"}"\n[secrets]\nkey_file = "{data / "key"}"\n'
        "[plans.p]\nruns_included = -1\nactive_jobs_limit = -1\nmax_timeout = 60\n"
    ]
    for i in range(accounts):
        digests = ", ".join(f'"{token_sha256(f"token-{i}-{k}")}"' for k in range(2))
        parts.append(f'[[accounts]]\nid = "a{i}"\nplan = "p"\ntokens_sha256 = [{digests}]\n')
    return "".join(parts)


def scope_for(path: str, token: str | None) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:8080"), (b"accept", b"*/*"), (b"user-agent", b"bench")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
        "extensions": {},
    }


async def call(app: Asgi, scope: dict[str, Any]) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []
    first = True

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"", "more_body": False}
        await trio.sleep_forever()
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


async def concurrently(app: Asgi, scopes: list[dict[str, Any]], tasks: int) -> None:
    """`tasks` callers, each taking the next scope as it is done with one."""
    todo = iter(scopes)

    async def caller() -> None:
        for scope in todo:
            status, body = await call(app, scope)
            assert status == 200, body

    async with trio.open_nursery() as nursery:
        for _ in range(tasks):
            nursery.start_soon(caller)


def guarded(app: Any) -> Any:
    """The request-level guards both apps get (jobsd.api.server)."""
    return limits.HeadLimit(RequestDeadline(app, 60), 16384)


async def rounds(args: argparse.Namespace, config: Config, data: Path) -> None:
    keyring = KeyRing.load_or_create(config.secrets.key_file)
    changes_tx, _changes_rx = trio.open_memory_channel[JobChanged](100_000)
    cancels_tx, _cancels_rx = trio.open_memory_channel[CancelRun](10)
    settings = Settings(config)
    observer = Observer(settings)
    reader = f"a{args.accounts - 1}"
    token = f"token-{args.accounts - 1}-1"
    async with open_store(
        config.storage.path, keyring, Clock(datetime.now(UTC)), changes_tx
    ) as store:
        ctx = ApiContext(store, settings, None, cancels_tx, Health(ready=True), observer)  # type: ignore[arg-type]
        jobsd_app = served_app(ctx, config.server)
        # The same read answered by the Quart route (no fast path in front).
        routed_app = served_app(ctx, config.server, fast_paths=False)
        hello = guarded(hello_app())
        # The same app without the edge's metrics and access log: what they cost.
        unobserved = ApiContext(store, settings, None, cancels_tx, Health(ready=True))  # type: ignore[arg-type]
        quiet_app = served_app(unobserved, config.server)
        caller = Caller(reader, config.plans["p"], ("production",))
        for i in range(100):
            write = DIALECT.parse_job(job_doc(f"job-{i:03d}"), path_slug=None, caller=caller)
            await store.jobs.create_job(
                reader, write, configured=("production",), limit=limit_of(caller)
            )
        scopes = [scope_for(f"/api/v1/jobs/job-{i % 100:03d}", token) for i in range(args.requests)]
        hello_scope = scope_for(HELLO_PATH, None)
        status, body = await call(jobsd_app, scopes[0])
        assert status == 200, body
        profiler = cProfile.Profile() if args.profile else None
        for n in range(args.rounds):
            for name, app, todo in (
                ("jobsd", jobsd_app, scopes),
                ("routed", routed_app, scopes),
                ("quiet", quiet_app, scopes),
                ("hello", hello, [hello_scope] * args.requests),
            ):
                if profiler is not None and name == "jobsd":
                    profiler.enable()
                cpu0, t0 = time.process_time(), time.perf_counter()
                await concurrently(app, todo, args.concurrency)
                cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
                if profiler is not None:
                    profiler.disable()
                per_us = cpu * 1e6 / len(todo)
                print(f"round {n + 1} {name:<6} {per_us:6.0f} us CPU/req {len(todo) / wall:5.0f}/s")
        if profiler is not None:
            profiler.dump_stats(args.profile)
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(35)
            print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--accounts", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--profile", type=Path)
    args = parser.parse_args()
    if not (
        1 <= args.requests <= 100_000
        and 1 <= args.rounds <= 20
        and 1 <= args.accounts <= 10_000
        and 1 <= args.concurrency <= 256
    ):
        parser.error("--requests 1..100000, --rounds 1..20, --accounts 1..10000")
    print(f"load average {os.getloadavg()}, {args.accounts} accounts")
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as sink:
        data = Path(tmp)
        (data / "jobsd.toml").write_text(config_text(data, args.accounts))
        config = load_config(data / "jobsd.toml")
        configure(config.log, stream=sink)  # the access log is written, to nowhere
        trio.run(rounds, args, config, data)
        logging.shutdown()


if __name__ == "__main__":
    main()
