"""Keep-alive reuse in delivery (`jobsd.keepalive`), against real servers on loopback.

What reuse promises: runs of one account to one origin with one TLS setting
share a connection, nothing else does; a connection the server closed or
reset while idle never fails a run (a fresh one is dialled, nothing was
sent on the old); once a request may have reached the server it is never
sent again; every bound (idle expiry, idle connections per key and in all,
requests per connection) holds; whatever did not end cleanly is closed.
Every request carries `X-Jobsd-Run-Id`, and the server counts them.
"""

from __future__ import annotations

import http.server
import itertools
import socket
import ssl
import struct
import threading
from collections import Counter
from pathlib import Path

import trio
import trio.testing

from jobsd.config_sections import SchedulerConfig
from jobsd.delivery import Delivery
from jobsd.http1 import offer_request
from jobsd.job_model import HttpConfig
from jobsd.keepalive import IdleConnections, ReuseKey
from jobsd.runs import FailureReason, RunStatus
from tests.test_delivery import LOCAL, Exchange, Server, config, serving
from tests.tls_ca import make_ca

ACME = "acme"


def kept(url: str, scope: str | None = ACME, **fields: object) -> HttpConfig:
    return config(url, reuse_scope=scope, **fields)


def stamp(run_id: str) -> list[tuple[str, str]]:
    return [("X-Jobsd-Run-Id", run_id)]


def delivered(server: Server) -> Counter[str | None]:
    return Counter(seen.header("X-Jobsd-Run-Id") for seen in server.seen)


def reusing(keepalive_s: float = 1.0, **bounds: int) -> Delivery:
    delivery = Delivery(LOCAL, keepalive_s=keepalive_s)
    if bounds:
        delivery.idle = IdleConnections(keepalive_s, **bounds)
    return delivery


async def run_all(
    delivery: Delivery, configs: list[HttpConfig], *, at_once: int = 1
) -> list[RunStatus]:
    """Performs each config (run ids r0, r1, ...) at most `at_once` at a time."""
    statuses: list[RunStatus] = [RunStatus.PENDING] * len(configs)
    limit = trio.CapacityLimiter(at_once)

    async def one(i: int) -> None:
        async with limit:
            outcome = await delivery.perform(configs[i], stamp=stamp(f"r{i}"))
            statuses[i] = outcome.status

    async with trio.open_nursery() as nursery:
        for i in range(len(configs)):
            nursery.start_soon(one, i)
    return statuses


# -- what is shared, and what never is -----------------------------------------------


async def test_runs_of_one_account_to_one_origin_share_one_connection() -> None:
    delivery = reusing()
    async with serving() as server:
        url = f"http://127.0.0.1:{server.port}/"
        configs = [kept(url + f"path{i}") for i in range(6)]
        assert await run_all(delivery, configs) == [RunStatus.SUCCEEDED] * 6
    assert server.accepted == 1
    assert delivered(server) == {f"r{i}": 1 for i in range(6)}
    assert all(seen.header("Connection") is None for seen in server.seen)


async def test_never_across_accounts_tls_settings_or_origins() -> None:
    delivery = reusing()
    async with serving() as first, serving() as second:
        one, two = f"http://127.0.0.1:{first.port}/", f"http://127.0.0.1:{second.port}/"
        configs = [
            kept(one),
            kept(one, "other"),  # another account
            kept(one, tls_verify=False),  # another TLS setting
            kept(two),  # another origin
            kept(one),
            kept(one, "other"),
            kept(one, tls_verify=False),
            kept(two),
        ]
        assert await run_all(delivery, configs) == [RunStatus.SUCCEEDED] * 8
    assert first.accepted == 3 and second.accepted == 1
    assert len(delivery.idle) == 4


async def test_reuse_over_tls_is_per_ca(tmp_path: Path) -> None:
    ca, other = make_ca(), make_ca("another CA")
    delivery = reusing()
    async with serving(ssl_context=ca.server_context(tmp_path, ["127.0.0.1"])) as server:
        url = f"https://127.0.0.1:{server.port}/"
        configs = [kept(url, ca_cert=ca.cert_pem) for _ in range(3)]
        configs += [kept(url, ca_cert=ca.cert_pem + other.cert_pem)]  # another context
        configs += [kept(url, tls_verify=False)] * 2
        assert await run_all(delivery, configs) == [RunStatus.SUCCEEDED] * 6
    assert server.accepted == 3
    assert delivered(server) == {f"r{i}": 1 for i in range(6)}


async def test_alerts_and_a_zero_keepalive_dial_every_time_and_say_close() -> None:
    async with serving() as server:
        url = f"http://127.0.0.1:{server.port}/"
        assert await run_all(reusing(), [kept(url, None)] * 3) == [RunStatus.SUCCEEDED] * 3
        assert await run_all(reusing(0), [kept(url)] * 3) == [RunStatus.SUCCEEDED] * 3
    assert server.accepted == 6
    assert [seen.header("Connection") for seen in server.seen] == ["close"] * 6


async def test_a_kept_connection_never_skips_the_address_policy() -> None:
    delivery = reusing()
    async with serving() as server:
        assert (await delivery.perform(kept(f"http://127.0.0.1:{server.port}/"))).status is (
            RunStatus.SUCCEEDED
        )
        assert len(delivery.idle) == 1
        refused = await delivery.perform(kept(f"http://127.0.0.2:{server.port}/"))
    assert refused.failure_reason is FailureReason.SSRF_BLOCKED
    assert server.accepted == 1


class _TwoWrites(http.server.BaseHTTPRequestHandler):
    """Head and body in two writes, Nagle on: Python's own server, as it is."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


async def test_a_server_writing_head_and_body_apart_costs_no_delayed_ack() -> None:
    """Linux delays its ACK up to 40 ms on a connection that looks interactive
    (a kept one, from its second request); such a server waits for that ACK
    before sending the body. Reused runs must not pay it: median well under
    40 ms (it was 44 ms each before delivery asked for quick ACKs)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TwoWrites)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        delivery = reusing()
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        durations = []
        for i in range(9):
            outcome = await delivery.perform(kept(url), stamp=stamp(f"r{i}"))
            assert outcome.status is RunStatus.SUCCEEDED, outcome.error
            durations.append(trio.current_time())
        assert len(delivery.idle) == 1
        gaps = sorted(b - a for a, b in itertools.pairwise(durations))
        assert gaps[len(gaps) // 2] < 0.02, gaps
    finally:
        delivery.idle.close_all()
        await trio.to_thread.run_sync(server.shutdown)
        server.server_close()


# -- a connection the server gave up -------------------------------------------------


async def test_a_server_closing_or_resetting_idle_connections_never_fails_a_run() -> None:
    closed = trio.Event()
    how = "close"

    async def answer_then_close(exchange: Exchange) -> None:
        await exchange.respond(200, b"ok")
        stream = exchange.stream
        assert isinstance(stream, trio.SocketStream)
        if how == "unasked":  # bytes no request asked for: the connection is unusable
            await stream.send_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
        else:
            if how == "reset":  # an RST instead of a FIN
                linger = struct.pack("ii", 1, 0)
                stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            await stream.aclose()
        closed.set()

    delivery = reusing()
    async with serving(answer_then_close) as server:
        url = f"http://127.0.0.1:{server.port}/"
        for i in range(6):
            how = ("close", "reset", "unasked")[i % 3]
            outcome = await delivery.perform(kept(url), stamp=stamp(f"r{i}"))
            assert outcome.status is RunStatus.SUCCEEDED, outcome
            with trio.fail_after(10):
                await closed.wait()  # while idle, before the next run takes it
            closed = trio.Event()
    assert server.accepted == 6
    assert delivered(server) == {f"r{i}": 1 for i in range(6)}


async def test_a_tls_server_closing_idle_connections_never_fails_a_run(tmp_path: Path) -> None:
    ca = make_ca()
    closed = trio.Event()

    async def answer_then_close(exchange: Exchange) -> None:
        await exchange.respond(200, b"ok")
        await exchange.stream.aclose()  # close_notify, then the FIN
        closed.set()

    delivery = reusing()
    server_context = ca.server_context(tmp_path, ["127.0.0.1"])
    async with serving(answer_then_close, ssl_context=server_context) as server:
        url = f"https://127.0.0.1:{server.port}/"
        for i in range(3):
            outcome = await delivery.perform(kept(url, ca_cert=ca.cert_pem), stamp=stamp(f"r{i}"))
            assert outcome.status is RunStatus.SUCCEEDED, outcome
            with trio.fail_after(10):
                await closed.wait()
            closed = trio.Event()
    assert server.accepted == 3
    assert delivered(server) == {f"r{i}": 1 for i in range(3)}


async def test_over_tls_a_response_nobody_asked_for_is_never_the_next_runs(
    tmp_path: Path,
) -> None:
    """A server answers, then at once sends a second response in a TLS record of
    its own, in the same TCP segment (corked). TLS reads the socket in bulk, so
    that record waits in the TLS layer, where neither `pending()` (decrypted
    bytes only) nor a poll of the socket sees it: the connection looked quiet,
    was kept, and the next run recorded the stale response as its own."""
    ca = make_ca()

    async def answer_and_one_more(exchange: Exchange) -> None:
        assert isinstance(exchange.stream, trio.SSLStream)
        raw = exchange.stream.transport_stream
        assert isinstance(raw, trio.SocketStream)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        await exchange.respond(200, b"ok")
        await exchange.stream.send_all(b"HTTP/1.1 299 Stale\r\nContent-Length: 5\r\n\r\nstale")
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)

    delivery = reusing()
    server_context = ca.server_context(tmp_path, ["127.0.0.1"])
    async with serving(answer_and_one_more, ssl_context=server_context) as server:
        url = f"https://127.0.0.1:{server.port}/"
        for i in range(2):
            run = kept(url, ca_cert=ca.cert_pem, success_status="200")
            outcome = await delivery.perform(run, stamp=stamp(f"r{i}"))
            assert outcome.status is RunStatus.SUCCEEDED, (i, outcome)
            assert outcome.result is not None and outcome.result["body"] == "ok"
    assert server.accepted == 2
    assert delivered(server) == {"r0": 1, "r1": 1}


async def test_a_server_closing_after_n_requests_never_fails_a_run() -> None:
    served: dict[int, int] = {}

    async def three_per_connection(exchange: Exchange) -> None:
        count = served[id(exchange.conn)] = served.get(id(exchange.conn), 0) + 1
        last = [("Connection", "close")] if count == 3 else []
        await exchange.respond(200, b"ok", headers=last)

    delivery = reusing()
    async with serving(three_per_connection) as server:
        url = f"http://127.0.0.1:{server.port}/"
        statuses = await run_all(delivery, [kept(url)] * 60, at_once=8)
    assert statuses == [RunStatus.SUCCEEDED] * 60
    assert delivered(server) == {f"r{i}": 1 for i in range(60)}
    assert 20 <= server.accepted < 60


async def test_a_request_that_may_have_reached_the_server_is_never_sent_again() -> None:
    """On a kept connection, the server reads the next request and closes
    without answering: the run fails, and the request arrived once."""
    answered = 0

    async def answer_once(exchange: Exchange) -> None:
        nonlocal answered
        answered += 1
        if answered == 1:
            await exchange.respond(200, b"ok")
        else:
            await exchange.stream.aclose()

    delivery = reusing()
    async with serving(answer_once) as server:
        url = f"http://127.0.0.1:{server.port}/"
        first = await delivery.perform(kept(url), stamp=stamp("r0"))
        second = await delivery.perform(kept(url), stamp=stamp("r1"))
    assert first.status is RunStatus.SUCCEEDED
    assert second.failure_reason is FailureReason.CONNECTION_ERROR
    assert "kept from an earlier run; not resent" in str(second.error)
    assert server.accepted == 1
    assert delivered(server) == {"r0": 1, "r1": 1}


async def test_a_connection_closed_as_the_request_arrives_is_not_resent() -> None:
    """The server closes a kept connection once the next request is there,
    unread (the race no poll can see): the run fails rather than risk twice."""
    accepted = 0

    async def handle(stream: trio.SocketStream) -> None:
        nonlocal accepted
        accepted += 1
        with trio.fail_after(10):
            await stream.receive_some(65536)
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await trio.lowlevel.wait_readable(stream.socket)
        await stream.aclose()

    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    delivery = reusing()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handle, [listener])
        url = f"http://127.0.0.1:{port}/"
        first = await delivery.perform(kept(url), stamp=stamp("r0"))
        second = await delivery.perform(kept(url), stamp=stamp("r1"))
        nursery.cancel_scope.cancel()
    assert first.status is RunStatus.SUCCEEDED
    assert second.failure_reason is FailureReason.CONNECTION_ERROR
    assert "not resent" in str(second.error)
    assert accepted == 1


async def test_a_reset_connection_refuses_the_first_bytes_so_nothing_was_sent() -> None:
    """The one failure after the poll that proves nothing left: the socket
    refuses the request's first send."""
    arrived = trio.Event()

    async def reset_at_once(stream: trio.SocketStream) -> None:
        linger = struct.pack("ii", 1, 0)
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        await stream.aclose()
        arrived.set()

    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, reset_at_once, [listener])
        client = await trio.open_tcp_stream("127.0.0.1", port)
        with trio.fail_after(10):
            await arrived.wait()
            await trio.lowlevel.wait_readable(client.socket)
        assert not await offer_request(client, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await client.aclose()
        nursery.cancel_scope.cancel()


# -- only a clean end keeps a connection ---------------------------------------------


async def by_path(exchange: Exchange) -> None:
    path = exchange.seen.target
    if path == "/close":
        await exchange.respond(200, b"ok", headers=[("Connection", "close")])
    elif path == "/big":
        await exchange.respond(200, b"x" * 4096)
    elif path == "/http10":  # HTTP/1.0 without keep-alive; the server then closes
        await exchange.stream.send_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    elif path == "/extra":  # bytes past the response, in the same segment
        await exchange.stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokextra")
    elif path == "/both":  # framed twice (RFC 9112 6.3: ought to be handled as an error)
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
        await exchange.stream.send_all(head + b"2\r\nok\r\n0\r\n\r\n")
    elif path == "/slow":
        await trio.sleep(5)
    else:
        await exchange.respond(200, b"ok")


async def test_only_a_response_read_to_its_clean_end_keeps_the_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serving(by_path) as server:
        base = f"http://127.0.0.1:{server.port}"
        for path, status in [
            ("/close", RunStatus.SUCCEEDED),
            ("/http10", RunStatus.SUCCEEDED),
            ("/extra", RunStatus.SUCCEEDED),
            ("/both", RunStatus.SUCCEEDED),
            ("/slow", RunStatus.FAILED),  # the run's timeout
        ]:
            delivery = reusing()
            outcome = await delivery.perform(kept(base + path, timeout_s=1))
            assert outcome.status is status, (path, outcome)
            assert len(delivery.idle) == 0, path
        capped = Delivery(LOCAL, keepalive_s=1.0, body_keep_bytes=100, body_cap_bytes=1000)
        outcome = await capped.perform(kept(base + "/big"))
        assert outcome.result is not None and outcome.result["body_bytes"] == 1000
        assert len(capped.idle) == 0
        ok = reusing()
        await ok.perform(kept(base + "/fine"))
        assert len(ok.idle) == 1


async def test_a_cancel_closes_a_kept_connection_at_once() -> None:
    request_seen = trio.Event()
    client_gone = trio.Event()

    async def second_holds(exchange: Exchange) -> None:
        if exchange.seen.target == "/first":
            await exchange.respond(200, b"ok")
            return
        request_seen.set()
        with trio.fail_after(10):
            while await exchange.stream.receive_some(1024):
                pass
        client_gone.set()

    delivery = reusing()
    async with serving(second_holds) as server:
        base = f"http://127.0.0.1:{server.port}"
        await delivery.perform(kept(base + "/first"))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(delivery.perform, kept(base + "/second", timeout_s=60))
            with trio.fail_after(10):
                await request_seen.wait()
            nursery.cancel_scope.cancel()
        with trio.fail_after(10):
            await client_gone.wait()
    assert server.accepted == 1 and len(delivery.idle) == 0


# -- the bounds ----------------------------------------------------------------------


async def test_a_connection_carries_at_most_max_requests() -> None:
    delivery = reusing(max_requests=3)
    async with serving() as server:
        url = f"http://127.0.0.1:{server.port}/"
        assert await run_all(delivery, [kept(url)] * 7) == [RunStatus.SUCCEEDED] * 7
    assert server.accepted == 3  # 3 + 3 + 1


async def test_idle_connections_are_capped_per_key_and_in_all() -> None:
    async def slow(exchange: Exchange) -> None:
        await trio.sleep(0.05)
        await exchange.respond(200, b"ok")

    delivery = reusing(max_idle=5, max_idle_per_key=3)
    async with serving(slow) as server:
        url = f"http://127.0.0.1:{server.port}/"
        configs = [kept(url)] * 8 + [kept(url, "other")] * 8
        statuses = await run_all(delivery, configs, at_once=16)
    assert statuses == [RunStatus.SUCCEEDED] * 16
    assert server.accepted == 16
    assert len(delivery.idle) == 5
    assert sorted(len(v) for v in delivery.idle._by_key.values()) == [2, 3]


async def test_one_account_at_the_default_concurrency_reuses_every_connection() -> None:
    """A burst to one origin keeps as many runs in flight as there are workers;
    a per-key cap below that closed one connection in four (the e2e bench's
    10,000-run burst: 2,628 connections with 32 per key, 64 with 64)."""
    workers = SchedulerConfig().workers
    all_in = trio.Event()
    in_flight = 0

    async def held(exchange: Exchange) -> None:
        nonlocal in_flight
        in_flight += 1
        if in_flight == workers:
            all_in.set()
        await all_in.wait()
        await exchange.respond(200, b"ok")

    delivery = reusing()
    async with serving(held) as server:
        burst = [kept(f"http://127.0.0.1:{server.port}/")] * workers
        statuses = await run_all(delivery, burst, at_once=workers)
        assert len(delivery.idle) == workers
        all_in, in_flight = trio.Event(), 0
        statuses += await run_all(delivery, burst, at_once=workers)
    assert statuses == [RunStatus.SUCCEEDED] * 2 * workers
    assert server.accepted == workers


async def test_an_idle_connection_expires(autojump_clock: trio.testing.MockClock) -> None:
    closed_by_client = trio.Event()

    async def answer_then_watch(exchange: Exchange) -> None:
        await exchange.respond(200, b"ok")
        with trio.fail_after(60):
            while await exchange.stream.receive_some(1024):
                pass  # pragma: no cover - nothing more is sent
        closed_by_client.set()

    delivery = reusing(1.0)
    async with serving(answer_then_watch) as server, trio.open_nursery() as nursery:
        nursery.start_soon(delivery.idle.tidy)
        url = f"http://127.0.0.1:{server.port}/"
        await delivery.perform(kept(url))
        started = trio.current_time()
        with trio.fail_after(10):
            await closed_by_client.wait()
        assert 1.0 <= trio.current_time() - started < 1.1
        assert len(delivery.idle) == 0
        # And a run after the expiry dials afresh.
        await delivery.perform(kept(url))
        assert server.accepted == 2
        nursery.cancel_scope.cancel()
    assert len(delivery.idle) == 0  # the stop closed the second one too


async def test_taking_skips_what_expired_even_without_the_tidier(
    autojump_clock: trio.testing.MockClock,
) -> None:
    delivery = reusing(1.0)
    async with serving() as server:
        url = f"http://127.0.0.1:{server.port}/"
        await delivery.perform(kept(url))
        await trio.sleep(0.5)
        await delivery.perform(kept(url))
        assert server.accepted == 1
        await trio.sleep(1.5)
        await delivery.perform(kept(url))
    assert server.accepted == 2


async def test_a_stop_closes_every_idle_connection() -> None:
    gone = 0

    async def answer_then_watch(exchange: Exchange) -> None:
        nonlocal gone
        await exchange.respond(200, b"ok")
        with trio.fail_after(10):
            while await exchange.stream.receive_some(1024):
                pass  # pragma: no cover
        gone += 1

    delivery = reusing()
    async with serving(answer_then_watch) as server:
        url = f"http://127.0.0.1:{server.port}/"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(delivery.idle.tidy)
            await run_all(delivery, [kept(url), kept(url, "other")], at_once=2)
            assert len(delivery.idle) == 2
            nursery.cancel_scope.cancel()
        assert len(delivery.idle) == 0
        with trio.fail_after(10):
            while gone < 2:
                await trio.sleep(0.01)


async def test_a_key_keeps_its_newest_connections_up_to_its_cap() -> None:
    """Given in turn, a key's idle connections past `max_idle_per_key` close oldest
    first, and a run takes the newest (the oldest are left to expire)."""
    idle = IdleConnections(60.0, max_idle=10, max_idle_per_key=2)
    async with serving() as server:
        streams = [await trio.open_tcp_stream("127.0.0.1", server.port) for _ in range(3)]
        key = ReuseKey(ACME, False, "127.0.0.1", server.port, ssl.create_default_context())
        try:
            for stream in streams:
                assert idle.give(key, stream, 0)
            assert len(idle) == 2  # the first closed
            taken = idle.take(key)
            assert taken is not None and taken.stream is streams[2]
            taken.close()
        finally:
            idle.close_all()
            for stream in streams:
                await trio.aclose_forcefully(stream)


async def test_a_kept_connection_refusing_the_first_send_gives_way_to_a_fresh_one() -> None:
    """Quiet at the poll, the kept socket refuses the request's first bytes (here its
    own side was shut): nothing left, so the run goes on a fresh connection."""
    accepted = 0

    async def answer_then_hold(stream: trio.SocketStream) -> None:
        nonlocal accepted
        accepted += 1
        await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await trio.sleep_forever()  # reads no more: the client's FIN draws no answer

    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    delivery = reusing()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, answer_then_hold, [listener])
        url = f"http://127.0.0.1:{port}/"
        first = await delivery.perform(kept(url), stamp=stamp("r0"))
        ((held,),) = delivery.idle._by_key.values()
        held.socket.shutdown(socket.SHUT_WR)
        with trio.fail_after(10):
            second = await delivery.perform(kept(url), stamp=stamp("r1"))
        nursery.cancel_scope.cancel()
    delivery.idle.close_all()
    assert (first.status, second.status) == (RunStatus.SUCCEEDED, RunStatus.SUCCEEDED)
    assert accepted == 2


async def test_a_request_larger_than_the_socket_takes_at_once_goes_whole_on_a_kept_connection() -> (
    None
):
    """On a kept connection the first send may take only part of a request; the
    rest follows on the same connection."""
    delivery = reusing()
    body = "x" * (6 * 1024 * 1024)
    async with serving() as server:
        url = f"http://127.0.0.1:{server.port}/"
        first = await delivery.perform(kept(url), stamp=stamp("r0"))
        big = kept(url, method="POST", body=body, timeout_s=3)
        second = await delivery.perform(big, stamp=stamp("r1"))
    assert (first.status, second.status) == (RunStatus.SUCCEEDED, RunStatus.SUCCEEDED), second
    assert server.accepted == 1
    assert len(server.seen[1].body) == len(body)
