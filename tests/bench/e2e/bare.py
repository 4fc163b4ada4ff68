"""Bare client loops sending the requests jobsd would send, with no scheduler.

They run in the bench process, `workers` tasks at once, one variant after
another: httpx2 with a fresh client per request (what jobsd's Delivery
does, the TLS context built once as there), httpx2 with one shared client,
trio + h11 with a new connection per request, and trio + h11 over
kept-alive connections (an upper bound for this target in Python).
"""

from __future__ import annotations

import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx2
import trio

from jobsd.delivery import USER_AGENT
from tests.bench.e2e.figures import Row
from tests.bench.e2e.h11_client import H11Conn
from tests.bench.e2e.target import (
    HOOK_PATH,
    JOB_BODY,
    JOB_HEADERS,
    JOB_METHOD,
    Target,
    check_delivered,
)

HTTPX_FRESH = "httpx2, fresh client/req"
H11_FRESH = "h11, new connection/req"


@dataclass(frozen=True)
class BareRequest:
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def run_id(self) -> str:
        return dict(self.headers)["X-Jobsd-Run-Id"]


def iso_z(instant: datetime) -> str:
    return instant.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def bare_requests(count: int) -> list[BareRequest]:
    """The requests jobsd would send for `count` runs, with fresh run ids."""
    scheduled = iso_z(datetime.now(UTC))
    body = JOB_BODY.encode()
    out = []
    for i in range(count):
        headers = [
            ("User-Agent", USER_AGENT),
            ("Accept", "*/*"),
            ("Accept-Encoding", "identity"),
            ("Connection", "keep-alive"),
            *JOB_HEADERS,
            ("X-Jobsd-Run-Id", str(uuid.uuid4())),
            ("X-Jobsd-Job", f"bench-{i:06d}"),
            ("X-Jobsd-Scheduled-For", scheduled),
        ]
        out.append(BareRequest(headers, body))
    return out


Send = Callable[[BareRequest], Awaitable[int]]
Cleanup = Callable[[], Awaitable[None]]


async def run_bare(
    name: str,
    target: Target,
    requests: list[BareRequest],
    workers: int,
    make_worker_send: Callable[[], Awaitable[tuple[Send, Cleanup]]],
) -> Row:
    """`make_worker_send` gives each worker its send function and its cleanup."""
    row = Row(name, count=len(requests))
    await target.take()
    items = iter(requests)

    async def worker() -> None:
        send, cleanup = await make_worker_send()
        try:
            for request in items:
                started = time.perf_counter()
                try:
                    status = await send(request)
                except Exception as exc:
                    if len(row.problems) < 3:
                        row.problems.append(f"{type(exc).__name__}: {exc}")
                    continue
                row.exchange_ms.append((time.perf_counter() - started) * 1000)
                row.ok += status == 200
        finally:
            await cleanup()

    cpu0, target0 = time.process_time(), target.cpu_s()
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(worker)
    row.elapsed_s = time.perf_counter() - started
    row.client_cpu_s = time.process_time() - cpu0
    row.target_cpu_s = target.cpu_s() - target0
    got, ids = await target.take()
    check_delivered(row, got, ids, {r.run_id for r in requests})
    return row


async def bare_rows(target: Target, count: int, workers: int, rows: list[Row]) -> None:
    """Appends a row per variant as it completes."""
    url = target.hook
    port = urlsplit(url).port or 80
    ctx = ssl.create_default_context()  # built once, as Delivery does

    async def nothing() -> None:
        return None

    async def httpx_send(client: httpx2.AsyncClient, request: BareRequest) -> int:
        async with client.stream(
            JOB_METHOD, url, headers=request.headers, content=request.body
        ) as response:
            async for _ in response.aiter_raw():
                pass
            return response.status_code

    def new_client() -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            verify=ctx,
            trust_env=False,
            follow_redirects=False,
            timeout=30,
            limits=httpx2.Limits(max_connections=None, max_keepalive_connections=workers),
        )

    async def httpx_fresh() -> tuple[Send, Cleanup]:
        async def send(request: BareRequest) -> int:
            async with new_client() as client:
                return await httpx_send(client, request)

        return send, nothing

    shared = new_client()

    async def httpx_shared() -> tuple[Send, Cleanup]:
        return (lambda request: httpx_send(shared, request)), nothing

    async def h11_fresh() -> tuple[Send, Cleanup]:
        async def send(request: BareRequest) -> int:
            conn = await H11Conn.open("127.0.0.1", port)
            try:
                status, _ = await conn.exchange(
                    JOB_METHOD, HOOK_PATH, request.headers, request.body
                )
                return status
            finally:
                await conn.aclose()

        return send, nothing

    async def h11_keepalive() -> tuple[Send, Cleanup]:
        conn = await H11Conn.open("127.0.0.1", port)

        async def send(request: BareRequest) -> int:
            status, _ = await conn.exchange(JOB_METHOD, HOOK_PATH, request.headers, request.body)
            return status

        return send, conn.aclose

    async with shared:
        for name, make in (
            (HTTPX_FRESH, httpx_fresh),
            ("httpx2, one shared client", httpx_shared),
            (H11_FRESH, h11_fresh),
            ("h11, kept-alive conns", h11_keepalive),
        ):
            print(f"  bare: {name} ...", flush=True)
            rows.append(await run_bare(name, target, bare_requests(count), workers, make))
