"""One transport per TLS setting per process, and no connection ever reused.

`Delivery` keeps a transport per TLS setting for every run of its process
(no httpx client per run), and its pool keeps no idle connection: each run
dials its own. These tests pin what that promises: a run never rides
another run's connection (so never another account's), a server that
closes idle connections cannot fail a run, and runs at once share the
transport without sharing a connection.
"""

from __future__ import annotations

import trio

from jobsd.delivery import Delivery
from jobsd.runs import RunStatus
from tests.test_delivery import LOCAL, Exchange, config, serving


async def test_every_run_dials_its_own_connection() -> None:
    delivery = Delivery(LOCAL)
    async with serving() as server:
        url = f"http://127.0.0.1:{server.port}/"
        for account in ("acme", "acme", "other"):
            stamp = [("X-Jobsd-Run-Id", account)]
            outcome = await delivery.perform(config(url), stamp=stamp)
            assert outcome.status is RunStatus.SUCCEEDED, outcome
    assert server.accepted == 3 and len(server.seen) == 3


async def test_a_server_closing_idle_connections_never_fails_a_run() -> None:
    """It keeps each connection open after answering, then closes it while idle."""

    async def answer_then_close_when_idle(exchange: Exchange) -> None:
        await exchange.respond(200, b"ok", headers=[("Connection", "keep-alive")])
        await trio.sleep(0.02)
        await exchange.stream.aclose()

    delivery = Delivery(LOCAL)
    async with serving(answer_then_close_when_idle) as server:
        url = f"http://127.0.0.1:{server.port}/"
        for _ in range(5):
            outcome = await delivery.perform(config(url))
            assert outcome.status is RunStatus.SUCCEEDED, outcome
            await trio.sleep(0.05)  # the server has closed the last one by now
    assert server.accepted == 5 and len(server.seen) == 5  # each request sent once


async def test_runs_at_once_share_the_transport_not_a_connection() -> None:
    delivery = Delivery(LOCAL)
    outcomes = []

    async def slow(exchange: Exchange) -> None:
        await trio.sleep(0.05)
        await exchange.respond(200, b"ok")

    async def perform(url: str) -> None:
        outcomes.append(await delivery.perform(config(url)))

    async with serving(slow) as server, trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(perform, f"http://127.0.0.1:{server.port}/")
    assert [o.status for o in outcomes] == [RunStatus.SUCCEEDED] * 20
    assert server.accepted == 20
    assert len(delivery._transports) == 1
