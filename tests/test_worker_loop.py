"""A worker process's loop (`jobsd.workers.child`): what its hello sets, and the
signals it ignores. The loop runs in this process over a real socket pair, or
as a real worker process (`WorkerProcesses`)."""

from __future__ import annotations

import os
import signal
import socket
from functools import partial

import trio

from jobsd.job_model import HttpConfig
from jobsd.workers import wire
from jobsd.workers.child import Worker
from tests.holding_target import holding_target
from tests.test_delivery import Exchange, serving
from tests.test_workers import processes, stamp


async def test_the_hellos_body_cap_is_the_one_a_worker_reads_to() -> None:
    """The cap on a response's body is the daemon's, sent in the hello."""

    async def endless(exchange: Exchange) -> None:
        await exchange.start(200)  # chunked, never ends
        for _ in range(1000):
            await exchange.send(b"z" * 16384)

    cap = 64 * 1024 + 1
    hello = {
        "kind": "hello",
        "capacity": 8,
        "allow_cidrs": ["127.0.0.1/32"],
        "body_keep_bytes": 1024,
        "body_cap_bytes": cap,
        "keepalive_s": 0.0,
        "log_format": "text",
        "log_level": "info",
    }
    ours, theirs = socket.socketpair()
    worker_stream = trio.SocketStream(trio.socket.from_stdlib_socket(theirs))
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    async with serving(endless) as server:
        config = HttpConfig(url=f"http://127.0.0.1:{server.port}/", timeout_s=10)
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    Worker(worker_stream, hello).serve, wire.FrameReader(worker_stream)
                )
                reader = wire.FrameReader(stream)
                assert (await reader.receive() or {}).get("kind") == "ready"
                await stream.send_all(wire.encode(wire.perform_doc(1, config, [])))
                done = await reader.receive()
                await stream.aclose()
    assert done is not None and done["status"] == "SUCCEEDED"
    assert f"{cap}-byte cap" in done["error"]
    assert done["result"]["body_bytes"] == cap
    assert len(done["result"]["body"]) == 1024


async def test_a_worker_ignores_the_stop_signals_sent_to_its_group() -> None:
    """Ctrl-C or systemd's SIGTERM reaches the whole process group; only the daemon
    decides when a request is abandoned, so a worker's request goes on."""
    async with holding_target() as target, processes() as pool:
        [pid] = pool.pids
        config = HttpConfig(url=f"{target.url}/hold", timeout_s=60)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(pool.perform, config, stamp=stamp("held")))
            await target.until(lambda: "held" in target.open_ids)
            os.kill(pid, signal.SIGINT)
            os.kill(pid, signal.SIGTERM)
            await trio.sleep(0.3)
            assert pool.pids == [pid] and "held" in target.open_ids
            nursery.cancel_scope.cancel()
