"""The peer: APScheduler 3.11 firing the same one-off jobs, in its own process.

What a Python user would otherwise embed: an `AsyncIOScheduler` with its
default `AsyncIOExecutor` (coroutine jobs run as tasks on the loop) and the
default memory job store, one `date`-triggered job per request, all due at
the same instant, `misfire_grace_time=None` (jobsd runs every slot; with
APScheduler's default of 1 s a crowd of late jobs would be skipped, not
run). The executor has no pool size for coroutines, so concurrency is
capped the way a user would: an `asyncio.Semaphore(workers)` in the job.

Each job sends its request with a fresh client, hence a new connection:
- `httpx2` (the default): `httpx2.AsyncClient` per job, the TLS context built
  once, exactly what jobsd's Delivery does, so the ratio isolates the
  scheduler and jobsd's run records from the HTTP client's cost;
- `aiohttp`: a `ClientSession` per job, what an asyncio user who reaches for
  the most used asyncio HTTP client writes (its parser is C).
Nothing is recorded anywhere: APScheduler keeps no run history.

    python -m tests.bench.e2e.peer_apscheduler SPEC.json   (written by `run_peer`)

It prints one JSON line: per-job lateness and exchange times, the statuses,
CPU seconds from the scheduler's start to the last job's end.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time
from datetime import UTC, datetime
from typing import Any


async def fire_all(spec: dict[str, Any]) -> dict[str, Any]:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    requests: list[tuple[list[tuple[str, str]], str]] = spec["requests"]
    url, method, workers, at = spec["url"], spec["method"], spec["workers"], spec["at"]
    ctx = ssl.create_default_context()
    make = _httpx2_send if spec["client"] == "httpx2" else _aiohttp_send
    send = make(ctx, url, method)
    gate = asyncio.Semaphore(workers)
    done = asyncio.Event()
    out: dict[str, Any] = {"lateness_ms": [], "exchange_ms": [], "ok": 0, "problems": []}
    finished: list[float] = []

    async def job(headers: list[tuple[str, str]], body: str) -> None:
        async with gate:
            started = time.time()
            out["lateness_ms"].append((started - at) * 1000)
            try:
                status = await send(headers, body.encode())
                out["ok"] += status == 200
            except Exception as exc:
                if len(out["problems"]) < 3:
                    out["problems"].append(f"{type(exc).__name__}: {exc}")
            finished.append(time.time())
            out["exchange_ms"].append((finished[-1] - started) * 1000)
            if len(finished) == len(requests):
                done.set()

    scheduler = AsyncIOScheduler(timezone=UTC, job_defaults={"misfire_grace_time": None})
    run_date = datetime.fromtimestamp(at, UTC)
    for i, (headers, body) in enumerate(requests):
        scheduler.add_job(job, "date", run_date=run_date, args=(headers, body), id=str(i))
    out["added_s_before"] = at - time.time()
    cpu0 = time.process_time()
    scheduler.start()
    await asyncio.wait_for(done.wait(), timeout=spec["timeout_s"])
    out["cpu_s"] = time.process_time() - cpu0
    out["elapsed_s"] = max(finished) - at
    scheduler.shutdown(wait=False)
    return out


def _httpx2_send(ctx: ssl.SSLContext, url: str, method: str) -> Any:
    import httpx2

    async def send(headers: list[tuple[str, str]], body: bytes) -> int:
        async with (
            httpx2.AsyncClient(
                verify=ctx, trust_env=False, follow_redirects=False, timeout=30
            ) as c,
            c.stream(method, url, headers=headers, content=body) as response,
        ):
            async for _ in response.aiter_raw():
                pass
            return response.status_code

    return send


def _aiohttp_send(ctx: ssl.SSLContext, url: str, method: str) -> Any:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=30)

    async def send(headers: list[tuple[str, str]], body: bytes) -> int:
        async with (
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ctx), timeout=timeout, trust_env=False
            ) as session,
            session.request(
                method, url, data=body, headers=dict(headers), allow_redirects=False
            ) as response,
        ):
            await response.read()
            return response.status

    return send


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        result = asyncio.run(fire_all(json.load(f)))
    print(json.dumps(result))
