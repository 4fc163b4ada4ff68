"""How should deliveries share httpx clients? Measure, then decide.

Compares, at 1/16/64 concurrent requests against a local hypercorn server
or a canned-response trio server (the default: cheap enough that client costs
show), run in a subprocess so it does not share the client's CPU:

- perform:        `Delivery.perform` as shipped (since issue 11: h11 over a
                  trio stream dialled through the address policy, one
                  connection per run);
- fresh-default:  a fresh httpx2 AsyncClient per request;
- shared-default: one AsyncClient for every request;
- shared-close:   the shared client, but every request says
                  `Connection: close`: sharing without keep-alive, which
                  separates the cost of building clients from the gain of
                  reusing connections.

(The `*-policy` variants, httpx2 over jobsd's own httpcore network
backend, went with that backend when delivery moved to h11; the figures
below are from before, when `perform` built a client per run.)

Each cell sends a bounded number of requests per round (variants
interleaved, median of the rounds) and is cut at a time limit. Prints a
table; it is not a test. Run:

    .venv/bin/python tests/bench/bench_clients.py [--requests 300] [--rounds 3] [--tls]

What it showed (2 busy CPUs, req/s, c=1/16/64):
  http   perform 366/401/425  shared-policy 947/831/647  shared-close 445/518/497
  https  perform 145/199/286  shared-policy 720/621/582  shared-close 146/215/343
Sharing wins only by reusing kept-alive connections to the same origin;
without reuse (shared-close) it costs what a fresh client costs. httpx2's
shared pool did not collapse at 64 (shared-default 865/814/709 over http).
Cron traffic rarely reuses a connection (a job fires once a minute at most,
keep-alive lasts 5 s), so Delivery keeps a fresh client per run; see the
design note in jobsd/delivery.py.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx2
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jobsd.address_policy import AddressPolicy
from jobsd.delivery import Delivery
from jobsd.job_model import HttpConfig

CELL_LIMIT_S = 60.0


Receive = Callable[[], Awaitable[dict[str, object]]]
Send = Callable[[dict[str, object]], Awaitable[None]]


async def _app(scope: dict[str, object], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    headers = [(b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok" * 256})


_CANNED = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 512\r\n\r\n" + b"ok" * 256
)


async def _canned_connection(stream: trio.abc.Stream) -> None:
    """Answers every GET on the connection with the same bytes (keep-alive)."""
    buffer = b""
    try:
        while data := await stream.receive_some(65536):
            buffer += data
            while b"\r\n\r\n" in buffer:
                _, buffer = buffer.split(b"\r\n\r\n", 1)
                await stream.send_all(_CANNED)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


def serve_canned(tls_dir: str | None) -> None:
    """Child process: a minimal keep-alive server, cheap enough that client
    costs show; first stdout line is its URL."""
    import ssl

    async def main() -> None:
        listeners: list[trio.abc.Listener[trio.abc.Stream]] = []
        for listener in await trio.open_tcp_listeners(0, host="127.0.0.1", backlog=1024):
            port = listener.socket.getsockname()[1]
            if tls_dir:
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                context.load_cert_chain(f"{tls_dir}/server.pem", f"{tls_dir}/server.key")
                listeners.append(trio.SSLListener(listener, context, https_compatible=True))
            else:
                listeners.append(listener)
        print(f"{'https' if tls_dir else 'http'}://127.0.0.1:{port}", flush=True)
        await trio.serve_listeners(_canned_connection, listeners)

    trio.run(main)


def serve(tls_dir: str | None) -> None:
    """Child process: hypercorn on 127.0.0.1:0, first stdout line is its URL."""
    from hypercorn.config import Config
    from hypercorn.trio import serve as hypercorn_serve

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    config.keep_alive_timeout = 30
    config.backlog = 1024
    if tls_dir:
        config.certfile = f"{tls_dir}/server.pem"
        config.keyfile = f"{tls_dir}/server.key"

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(hypercorn_serve, _app, config)
            print(binds[0], flush=True)

    trio.run(main)


Variant = Callable[[], Awaitable[None]]


class Cell:
    """The figures for one variant at one concurrency, over several rounds."""

    def __init__(self) -> None:
        self.rates: list[float] = []
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.cut = False

    async def measure(self, send_one: Variant, concurrency: int, total: int) -> None:
        remaining = iter(range(total))
        done = 0

        async def worker() -> None:
            nonlocal done
            for _ in remaining:
                started = time.perf_counter()
                try:
                    await send_one()
                except Exception as exc:
                    self.errors.append(repr(exc))
                self.latencies.append(time.perf_counter() - started)
                done += 1

        started = time.perf_counter()
        with trio.move_on_after(CELL_LIMIT_S) as scope:
            async with trio.open_nursery() as nursery:
                for _ in range(concurrency):
                    nursery.start_soon(worker)
        self.rates.append(done / (time.perf_counter() - started))
        self.cut |= scope.cancelled_caught

    def line(self) -> str:
        ordered = sorted(self.latencies)
        p50 = ordered[len(ordered) // 2] * 1000
        p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
        text = (
            f"{statistics.median(self.rates):7.0f} req/s (median of {len(self.rates)})"
            f"  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  errors {len(self.errors)}"
        )
        if self.errors:
            text += f" first: {self.errors[0][:80]}"
        return text + (" CUT AT TIME LIMIT" if self.cut else "")


async def bench(url: str, total: int, rounds: int, ca_pem: str | None) -> None:
    import ssl

    ctx = ssl.create_default_context()
    if ca_pem:
        ctx.load_verify_locations(cadata=ca_pem)
    policy = AddressPolicy(["127.0.0.1/32"])
    delivery = Delivery(policy)
    config = HttpConfig(url=url, method="GET", ca_cert=ca_pem, timeout_s=30)

    async def perform() -> None:
        outcome = await delivery.perform(config)
        if outcome.failure_reason is not None:
            raise RuntimeError(outcome.error)

    async def read(client: httpx2.AsyncClient, close: bool = False) -> None:
        headers = {"Connection": "close"} if close else None
        async with client.stream("GET", url, headers=headers) as response:
            async for _ in response.aiter_raw():
                pass
            response.raise_for_status()

    def default_client() -> httpx2.AsyncClient:
        limits = httpx2.Limits(max_connections=None)
        return httpx2.AsyncClient(verify=ctx, trust_env=False, timeout=None, limits=limits)

    async def fresh(make: Callable[[], httpx2.AsyncClient]) -> None:
        async with make() as client:
            await read(client)

    print(f"{url}  ({total} requests per cell and round, {rounds} rounds, interleaved)")
    for concurrency in (1, 16, 64):
        async with default_client() as shared_default:
            variants: dict[str, Variant] = {
                "perform": perform,
                "shared-close": lambda: read(shared_default, close=True),
                "fresh-default": lambda: fresh(default_client),
                "shared-default": lambda: read(shared_default),
            }
            cells = {name: Cell() for name in variants}
            for _ in range(rounds):
                for name, send_one in variants.items():
                    await cells[name].measure(send_one, concurrency, total)
            for name, figures in cells.items():
                print(f"  c={concurrency:<3} {name:<15} {figures.line()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", choices=["canned", "hypercorn"], help=argparse.SUPPRESS)
    parser.add_argument("--server", choices=["canned", "hypercorn"], default="canned")
    parser.add_argument("--tls-dir", help=argparse.SUPPRESS)
    parser.add_argument("--tls", action="store_true", help="HTTPS with a throwaway CA")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.serve:
        (serve if args.serve == "hypercorn" else serve_canned)(args.tls_dir)
        return
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, __file__, "--serve", args.server]
        ca_pem = None
        if args.tls:
            from tests.tls_ca import make_ca

            ca = make_ca()
            ca.server_context(Path(tmp), ["127.0.0.1"])
            ca_pem = ca.cert_pem
            command += ["--tls-dir", tmp]
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as server:
            try:
                assert server.stdout is not None
                url = server.stdout.readline().strip() + "/"
                trio.run(bench, url, min(args.requests, 5000), min(args.rounds, 10), ca_pem)
            finally:
                server.terminate()
                server.wait(timeout=10)


if __name__ == "__main__":
    main()
