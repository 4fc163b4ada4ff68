"""Requests offered at a steady rate (open loop), over a pool of kept-alive connections.

Each request has its instant (`start + i / rate`) and its latency is counted
from that instant, not from when a connection came free: a slow server
cannot hide its slowness by slowing the offer (no coordinated omission).
At most `connections` requests are in flight; an instant that finds every
connection busy waits for one, and the wait is part of its latency. The
offer stops after `count` requests or when `stop` is set, whichever first.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from tests.bench.e2e.h11_client import H11Conn

# (method, target, headers, body) for the i-th request
MakeRequest = Callable[[int], tuple[str, str, list[tuple[str, str]], bytes]]


@dataclass
class Paced:
    latency_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    bodies: list[bytes] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    offered: int = 0
    elapsed_s: float = 0.0


async def offer(
    host: str,
    port: int,
    rate: float,
    count: int,
    make: MakeRequest,
    *,
    connections: int = 32,
    stop: trio.Event | None = None,
    keep_bodies: bool = False,
) -> Paced:
    result = Paced()
    pool_send, pool_receive = trio.open_memory_channel[H11Conn](connections)
    opened = [await H11Conn.open(host, port) for _ in range(connections)]
    for conn in opened:
        pool_send.send_nowait(conn)

    async def one(i: int, due: float) -> None:
        conn = await pool_receive.receive()
        method, target, headers, body = make(i)
        try:
            status, answer = await conn.exchange(method, target, headers, body)
        except Exception as exc:
            if len(result.errors) < 3:
                result.errors.append(f"{type(exc).__name__}: {exc}")
            conn = await H11Conn.open(host, port)
            opened.append(conn)
        else:
            result.latency_ms.append((time.perf_counter() - due) * 1000)
            result.statuses[status] += 1
            if keep_bodies:
                result.bodies.append(answer)
        pool_send.send_nowait(conn)

    began = time.perf_counter()
    try:
        async with trio.open_nursery() as nursery:
            for i in range(count):
                if stop is not None and stop.is_set():
                    break
                due = began + i / rate
                await trio.sleep(max(0.0, due - time.perf_counter()))
                nursery.start_soon(one, i, due)
                result.offered += 1
        result.elapsed_s = time.perf_counter() - began
    finally:
        for conn in opened:
            await conn.aclose()
    return result
