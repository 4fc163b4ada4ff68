"""Delivery against real servers on loopback.

Each test starts its own tiny trio + h11 server (port 0) in its own nursery,
so the server side sees exactly what went over the wire: the plaintext
header values, the Host, the SNI, whether a connection was ever accepted.
Destinations the policy refuses are loopback addresses outside the
allowlist, or answers from an injected resolver; nothing else is dialled.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import pytest
import trio
import trio.testing

from jobsd.address_policy import AddressPolicy, IPAddress
from jobsd.delivery import Delivery, default_resolver
from jobsd.job_model import Header, HttpConfig
from jobsd.lookup_threads import LookupThreads
from jobsd.runs import FailureReason, RunStatus
from tests.tls_ca import make_ca

# -- a tiny server ------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n == name.lower()]
        return ", ".join(values) if values else None


class Exchange:
    """The server side of one request: what arrived and how to answer it."""

    def __init__(self, stream: trio.abc.Stream, conn: h11.Connection, seen: Seen) -> None:
        self.stream = stream
        self.conn = conn
        self.seen = seen

    async def _send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            await self.stream.send_all(data)

    async def start(self, status: int, headers: Sequence[tuple[str, str]] = ()) -> None:
        await self._send(h11.Response(status_code=status, headers=list(headers)))

    async def send(self, data: bytes) -> None:
        await self._send(h11.Data(data=data))

    async def end(self) -> None:
        await self._send(h11.EndOfMessage())

    async def respond(
        self, status: int, body: bytes = b"", headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        await self.start(status, [*headers, ("Content-Length", str(len(body)))])
        if body:
            await self.send(body)
        await self.end()


Handler = Callable[[Exchange], Awaitable[None]]


async def ok(exchange: Exchange) -> None:
    await exchange.respond(200, b"ok")


@dataclass
class Server:
    handler: Handler
    port: int = 0
    accepted: int = 0
    seen: list[Seen] = field(default_factory=list)

    async def _event(self, stream: trio.abc.Stream, conn: h11.Connection) -> h11.Event:
        for _ in range(10_000):
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            conn.receive_data(bytes(await stream.receive_some(65536)))
        raise AssertionError("request never completed")

    async def handle(self, stream: trio.abc.Stream) -> None:
        self.accepted += 1
        conn = h11.Connection(h11.SERVER)
        try:
            for _ in range(100):
                request = await self._event(stream, conn)
                if not isinstance(request, h11.Request):
                    return
                body = b""
                while isinstance(event := await self._event(stream, conn), h11.Data):
                    body += event.data
                headers = [(n.decode().lower(), v.decode()) for n, v in request.headers]
                seen = Seen(request.method.decode(), request.target.decode(), headers, body)
                self.seen.append(seen)
                await self.handler(Exchange(stream, conn, seen))
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            pass
        finally:
            await trio.aclose_forcefully(stream)


@asynccontextmanager
async def serving(
    handler: Handler = ok,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[Server]:
    server = Server(handler)
    listeners: list[trio.abc.Listener[trio.abc.Stream]] = []
    for listener in await trio.open_tcp_listeners(port, host=host):
        server.port = listener.socket.getsockname()[1]
        if ssl_context is not None:
            listeners.append(trio.SSLListener(listener, ssl_context, https_compatible=True))
        else:
            listeners.append(listener)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, server.handle, listeners)
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


def only(*cidrs: str) -> AddressPolicy:
    return AddressPolicy(list(cidrs))


def fixed(
    answers: dict[str, list[str]], calls: list[str] | None = None
) -> Callable[[str, int], Awaitable[Sequence[IPAddress]]]:
    """A resolver that answers from a table and never touches DNS."""

    async def resolve(host: str, port: int) -> Sequence[IPAddress]:
        if calls is not None:
            calls.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ipaddress.ip_address(a) for a in answers[host]]

    return resolve


LOCAL = only("127.0.0.1/32")


def config(url: str, **fields: object) -> HttpConfig:
    fields.setdefault("timeout_s", 10)
    return HttpConfig(url=url, **fields)  # type: ignore[arg-type]


# -- the exchange ------------------------------------------------------------------


async def test_success_records_the_exchange_and_redacts_header_values() -> None:
    async def reply(exchange: Exchange) -> None:
        await exchange.respond(
            201,
            "héllo".encode(),
            [("Content-Type", "text/plain"), ("X-Multi", "1"), ("X-Multi", "2")],
        )

    headers = (
        Header("Authorization", "Bearer s3cret-token"),
        Header("Content-Type", "application/vnd.custom+json; charset=utf-8"),
        Header("X-Api-Key", "k3y"),
        Header("X-Note", "café ☕"),
    )
    body = '{"name": "é"}'
    async with serving(reply) as server:
        url = f"http://127.0.0.1:{server.port}/hook?x=1"
        outcome = await Delivery(LOCAL).perform(config(url, headers=headers, body=body))

    assert outcome.status is RunStatus.SUCCEEDED
    assert outcome.failure_reason is None and outcome.error is None
    assert outcome.request == {
        "method": "POST",
        "url": url,
        "headers": [
            {"name": "Authorization", "value": "<redacted>"},
            {"name": "Content-Type", "value": "<redacted>"},
            {"name": "X-Api-Key", "value": "<redacted>"},
            {"name": "X-Note", "value": "<redacted>"},
        ],
        "body": body,
    }
    assert "s3cret" not in repr(outcome) and "k3y" not in repr(outcome)
    assert outcome.result is not None
    assert outcome.result["status"] == 201
    assert outcome.result["body"] == "héllo"
    assert outcome.result["body_bytes"] == len("héllo".encode())
    assert outcome.result["body_truncated"] is False
    result_headers = outcome.result["headers"]
    assert isinstance(result_headers, dict)
    assert result_headers["x-multi"] == "1, 2"
    assert result_headers["content-type"] == "text/plain"

    [seen] = server.seen
    assert (seen.method, seen.target) == ("POST", "/hook?x=1")
    assert seen.header("authorization") == "Bearer s3cret-token"
    assert seen.header("content-type") == "application/vnd.custom+json; charset=utf-8"
    assert seen.header("x-api-key") == "k3y"
    assert seen.header("x-note") == "café ☕"  # sent as UTF-8
    assert seen.header("host") == f"127.0.0.1:{server.port}"
    assert seen.body == body.encode("utf-8")
    assert str(seen.header("user-agent")).startswith("jobsd/")
    assert seen.header("accept-encoding") == "identity"


async def test_a_stored_job_header_under_jobsds_prefix_never_doubles_the_stamp() -> None:
    """A job stored before such names were refused: the target gets jobsd's value once."""
    headers = (Header("x-jobsd-run-id", "forged"), Header("X-JOBSD-JOB", "x"), Header("A", "1"))
    stamp = [("X-Jobsd-Run-Id", "the-real-run"), ("X-Jobsd-Job", "nightly")]
    async with serving() as server:
        url = f"http://127.0.0.1:{server.port}/"
        outcome = await Delivery(LOCAL).perform(config(url, headers=headers), stamp=stamp)
    assert outcome.status is RunStatus.SUCCEEDED
    [seen] = server.seen
    assert [v for n, v in seen.headers if n == "x-jobsd-run-id"] == ["the-real-run"]
    assert [v for n, v in seen.headers if n == "x-jobsd-job"] == ["nightly"]
    assert seen.header("a") == "1"
    assert outcome.request["headers"] == [{"name": "A", "value": "<redacted>"}]


async def test_no_body_is_sent_as_empty() -> None:
    async with serving() as server:
        url = f"http://127.0.0.1:{server.port}/"
        delivery = Delivery(LOCAL)
        post = await delivery.perform(config(url))
        get = await delivery.perform(config(url, method="GET"))
    assert post.status is get.status is RunStatus.SUCCEEDED
    assert post.request["body"] is None
    assert [s.body for s in server.seen] == [b"", b""]
    assert server.seen[0].header("content-length") == "0"
    assert server.seen[1].method == "GET"


async def by_path(exchange: Exchange) -> None:
    """/status/NNN answers NNN; /redirect answers 302 to /landing."""
    target = exchange.seen.target
    if target == "/redirect":
        await exchange.respond(302, b"", [("Location", "/landing")])
    else:
        await exchange.respond(int(target.rsplit("/", 1)[1]), b"status body")


@pytest.mark.parametrize(
    ("status", "success_status", "succeeded"),
    [
        (200, "2xx", True),
        (204, "204", True),
        (200, "204", False),
        (299, "2xx", True),
        (301, "3xx", True),
        (404, "4xx", True),
        (404, "404", True),
        (404, "2xx", False),
        (500, "5XX", True),
        (500, "2xx", False),
        (503, "500", False),
        (200, "1xx", False),
    ],
)
async def test_success_status_codes_and_classes(
    status: int, success_status: str, succeeded: bool
) -> None:
    async with serving(by_path) as server:
        url = f"http://127.0.0.1:{server.port}/status/{status}"
        outcome = await Delivery(LOCAL).perform(config(url, success_status=success_status))
    assert outcome.result is not None and outcome.result["status"] == status
    if succeeded:
        assert (outcome.status, outcome.failure_reason, outcome.error) == (
            RunStatus.SUCCEEDED,
            None,
            None,
        )
    else:
        assert outcome.status is RunStatus.FAILED
        assert outcome.failure_reason is FailureReason.NON_SUCCESS_STATUS
        assert f"status {status}" in str(outcome.error) and success_status in str(outcome.error)
        expected_body = "" if status == 204 else "status body"
        assert outcome.result["body"] == expected_body


async def test_a_redirect_is_the_response() -> None:
    async with serving(by_path) as server:
        url = f"http://127.0.0.1:{server.port}/redirect"
        outcome = await Delivery(LOCAL).perform(config(url, method="GET"))
    assert outcome.failure_reason is FailureReason.NON_SUCCESS_STATUS
    assert outcome.result is not None and outcome.result["status"] == 302
    assert outcome.result["headers"]["location"] == "/landing"  # type: ignore[index]
    assert [s.target for s in server.seen] == ["/redirect"]


# -- bodies --------------------------------------------------------------------------


def pattern(size: int) -> bytes:
    return bytes(ord("a") + i % 26 for i in range(size))


@pytest.mark.parametrize("size", [200 * 1024, 64 * 1024, 64 * 1024 + 1, 0])
async def test_body_kept_to_64_kib_and_counted_exactly(size: int) -> None:
    payload = pattern(size)

    async def reply(exchange: Exchange) -> None:
        await exchange.start(200, [("Content-Length", str(size))])
        for offset in range(0, size, 10_000):
            await exchange.send(payload[offset : offset + 10_000])
        await exchange.end()

    async with serving(reply) as server:
        outcome = await Delivery(LOCAL).perform(config(f"http://127.0.0.1:{server.port}/"))
    assert outcome.status is RunStatus.SUCCEEDED and outcome.error is None
    assert outcome.result is not None
    assert outcome.result["body_bytes"] == size
    assert outcome.result["body"] == payload[:65536].decode()
    assert outcome.result["body_truncated"] is (size > 65536)


async def test_an_endless_body_stops_at_the_cap() -> None:
    sent = 0
    server_done = trio.Event()

    async def endless(exchange: Exchange) -> None:
        nonlocal sent
        try:
            await exchange.start(200)  # chunked, never ends
            for _ in range(10_000):
                await exchange.send(b"z" * 16384)
                sent += 1
        finally:
            server_done.set()

    cap = 256 * 1024
    async with serving(endless) as server:
        delivery = Delivery(LOCAL, body_cap_bytes=cap)
        outcome = await delivery.perform(config(f"http://127.0.0.1:{server.port}/"))
        with trio.fail_after(10):
            await server_done.wait()  # the client hung up, the server noticed
    assert sent < 10_000
    assert outcome.status is RunStatus.SUCCEEDED
    assert outcome.error is not None and f"{cap}-byte cap" in outcome.error
    assert outcome.result is not None
    assert outcome.result["body_bytes"] == cap
    assert outcome.result["body_truncated"] is True
    assert outcome.result["body"] == "z" * 65536


async def test_a_reset_mid_body_is_a_connection_error_with_the_partial_result() -> None:
    async def short(exchange: Exchange) -> None:
        await exchange.start(200, [("Content-Length", "1000")])
        await exchange.send(b"x" * 100)
        await exchange.stream.aclose()

    async with serving(short) as server:
        outcome = await Delivery(LOCAL).perform(config(f"http://127.0.0.1:{server.port}/"))
    assert outcome.failure_reason is FailureReason.CONNECTION_ERROR
    assert outcome.result is not None and outcome.result["body_bytes"] == 100
    assert "after status 200 and 100 body bytes" in str(outcome.error)


# -- the total deadline (virtual time: the clock jumps only when every task
#    has been idle for 50 ms of real time, so loopback I/O is never outrun) -----------


async def test_a_trickling_body_is_cut_by_the_total_deadline(
    mock_clock: trio.testing.MockClock,
) -> None:
    mock_clock.autojump_threshold = 0.05

    async def trickle(exchange: Exchange) -> None:
        await exchange.start(200)
        for _ in range(30):
            await exchange.send(b".")
            await trio.sleep(1)

    async with serving(trickle) as server:
        started = trio.current_time()
        url = f"http://127.0.0.1:{server.port}/"
        outcome = await Delivery(LOCAL).perform(config(url, timeout_s=3))
        assert trio.current_time() - started == pytest.approx(3, abs=0.01)
    assert outcome.status is RunStatus.FAILED
    assert outcome.failure_reason is FailureReason.TIMEOUT
    assert "3 s" in str(outcome.error)
    assert outcome.result is not None and outcome.result["status"] == 200
    assert 1 <= outcome.result["body_bytes"] <= 4  # type: ignore[operator]


async def test_no_response_at_all_times_out(mock_clock: trio.testing.MockClock) -> None:
    mock_clock.autojump_threshold = 0.05

    async def silent(exchange: Exchange) -> None:
        await trio.sleep(3600)

    async with serving(silent) as server:
        url = f"http://127.0.0.1:{server.port}/"
        outcome = await Delivery(LOCAL).perform(config(url, timeout_s=2))
    assert outcome.failure_reason is FailureReason.TIMEOUT
    assert outcome.result is None
    assert "before the response headers arrived" in str(outcome.error)


async def test_a_slow_resolver_counts_against_the_deadline(
    mock_clock: trio.testing.MockClock,
) -> None:
    mock_clock.autojump_threshold = 0.05

    async def slow(host: str, port: int) -> Sequence[IPAddress]:
        await trio.sleep(60)
        return [ipaddress.ip_address("127.0.0.1")]

    outcome = await Delivery(LOCAL, resolver=slow).perform(config("http://slow.test/", timeout_s=5))
    assert outcome.failure_reason is FailureReason.TIMEOUT


def silent_nameserver() -> tuple[threading.Event, list[str], Callable[..., list[Any]]]:
    """A lookup function whose names never resolve (the thread waits until the event is
    set, as for a nameserver that never answers) but `fine.test`, which is 127.0.0.1;
    `started` lists the names looked up, in order."""
    never = threading.Event()
    started: list[str] = []

    def lookup(host: str, port: int, *args: object) -> list[Any]:
        started.append(host)
        if host == "fine.test":
            return socket.getaddrinfo("127.0.0.1", port, *args)  # type: ignore[arg-type]
        never.wait(30)  # a nameserver that never answers, until the test ends
        return []

    return never, started, lookup


async def test_lookups_that_never_answer_hold_only_their_accounts_share_of_the_threads() -> None:
    """A lookup abandoned by its run keeps its thread until the resolver gives
    up; one account's names whose nameserver never answers must not hold every
    thread, or every other account's runs to any name time out meanwhile."""
    never, started, lookup = silent_nameserver()
    threads = LookupThreads(8)
    delivery = Delivery(LOCAL, resolver=default_resolver(threads, lookup))
    try:
        async with serving(ok) as server, trio.open_nursery() as nursery:
            for i in range(8):
                slow = config(f"http://slow{i}.test/", timeout_s=1, reuse_scope="noisy")
                nursery.start_soon(delivery.perform, slow)
            with trio.fail_after(10):
                while len(started) < threads.per_scope:
                    await trio.sleep(0.01)
            await trio.sleep(1.5)  # every noisy run has given up; its lookups have not
            assert len(started) == threads.per_scope == 4  # the rest never got a thread
            fine = config(f"http://fine.test:{server.port}/", timeout_s=3, reuse_scope="quiet")
            outcome = await delivery.perform(fine)
        assert outcome.status is RunStatus.SUCCEEDED, outcome
    finally:
        never.set()


# -- TLS ------------------------------------------------------------------------------


async def test_tls_verification(tmp_path: Path) -> None:
    ca = make_ca()
    server_context = ca.server_context(tmp_path, ["target.test"])
    sni: list[str | None] = []
    server_context.sni_callback = lambda sock, name, ctx: sni.append(name)
    resolver = fixed({"target.test": ["127.0.0.1"]})
    delivery = Delivery(LOCAL, resolver=resolver)

    async with serving(ssl_context=server_context) as server:
        url = f"https://target.test:{server.port}/"
        untrusted = await delivery.perform(config(url))
        unverified = await delivery.perform(config(url, tls_verify=False))
        trusted = await delivery.perform(config(url, ca_cert=ca.cert_pem))
        # The certificate is checked against the URL's host, not the IP dialled.
        by_ip = f"https://127.0.0.1:{server.port}/"
        mismatch = await delivery.perform(config(by_ip, ca_cert=ca.cert_pem))

    assert untrusted.failure_reason is FailureReason.CONNECTION_ERROR
    assert "CERTIFICATE_VERIFY_FAILED" in str(untrusted.error)
    assert untrusted.result is None
    assert unverified.status is RunStatus.SUCCEEDED
    assert trusted.status is RunStatus.SUCCEEDED
    assert mismatch.failure_reason is FailureReason.CONNECTION_ERROR
    assert "target.test" in str(mismatch.error) or "match" in str(mismatch.error)
    assert "target.test" in sni
    assert {s.header("host") for s in server.seen} == {f"target.test:{server.port}"}
    assert len(server.seen) == 2


def test_ssl_contexts_are_built_once_and_shared() -> None:
    delivery = Delivery(LOCAL)
    ca_a, ca_b = make_ca("a").cert_pem, make_ca("b").cert_pem
    url = "https://example.test/"
    verifying = delivery.ssl_context_for(config(url))
    assert delivery.ssl_context_for(config(url)) is verifying
    insecure = delivery.ssl_context_for(config(url, tls_verify=False))
    assert insecure.verify_mode is ssl.CERT_NONE and not insecure.check_hostname
    assert delivery.ssl_context_for(config(url, tls_verify=False, ca_cert=ca_a)) is insecure
    with_a = delivery.ssl_context_for(config(url, ca_cert=ca_a))
    assert with_a is delivery.ssl_context_for(config(url, ca_cert=ca_a))
    assert with_a is not delivery.ssl_context_for(config(url, ca_cert=ca_b))
    assert with_a is not verifying and with_a.verify_mode is ssl.CERT_REQUIRED
    # Plain HTTP never loads a job's ca_cert.
    assert delivery.ssl_context_for(config("http://x.test/", ca_cert="junk")) is verifying


def test_no_context_lets_a_target_renegotiate() -> None:
    """A hostile target could make a worker repeat TLS 1.2 handshakes until the deadline."""
    delivery = Delivery(LOCAL)
    url = "https://example.test/"
    for asked in (
        config(url),
        config(url, tls_verify=False),
        config(url, ca_cert=make_ca("a").cert_pem),
    ):
        assert delivery.ssl_context_for(asked).options & ssl.OP_NO_RENEGOTIATION


async def test_an_unloadable_ca_cert_is_a_connection_error() -> None:
    outcome = await Delivery(LOCAL).perform(config("https://127.0.0.1:1/", ca_cert="junk"))
    assert outcome.failure_reason is FailureReason.CONNECTION_ERROR
    assert "ca_cert" in str(outcome.error)


# -- the address policy at connect time -----------------------------------------------


async def test_a_loopback_address_outside_the_allowlist_is_never_dialled() -> None:
    async with serving(host="127.0.0.2") as other:
        url = f"http://127.0.0.2:{other.port}/"
        blocked = await Delivery(LOCAL).perform(config(url))
        assert other.accepted == 0
        # The listener works: a policy that allows it reaches it.
        reached = await Delivery(only("127.0.0.2/32")).perform(config(url))
        assert other.accepted == 1
    assert blocked.status is RunStatus.FAILED
    assert blocked.failure_reason is FailureReason.SSRF_BLOCKED
    assert blocked.error == "127.0.0.2 is in 127.0.0.0/8 (loopback)"
    assert blocked.result is None
    assert reached.status is RunStatus.SUCCEEDED


@asynccontextmanager
async def serving_on_two_hosts(first: str, second: str) -> AsyncIterator[tuple[Server, Server]]:
    """Two listeners on one port, so a dial to either address is seen."""
    for _ in range(5):
        async with serving(host=first) as a:
            try:
                async with serving(host=second, port=a.port) as b:
                    yield a, b
                    return
            except OSError:
                continue  # the port was taken on the second address; try another
    raise AssertionError("no port free on both addresses")


async def test_mixed_answers_dial_only_the_allowed_address() -> None:
    async with serving_on_two_hosts("127.0.0.1", "127.0.0.3") as (allowed, refused):
        resolver = fixed({"mixed.test": ["127.0.0.3", "127.0.0.1"]})
        outcome = await Delivery(LOCAL, resolver=resolver).perform(
            config(f"http://mixed.test:{allowed.port}/")
        )
    assert outcome.status is RunStatus.SUCCEEDED
    assert (allowed.accepted, refused.accepted) == (1, 0)
    assert allowed.seen[0].header("host") == f"mixed.test:{allowed.port}"


async def test_allowed_answers_are_tried_in_turn() -> None:
    async with serving() as server:
        resolver = fixed({"two.test": ["127.0.0.4", "127.0.0.1"]})  # nothing on .4
        delivery = Delivery(only("127.0.0.1/32", "127.0.0.4/32"), resolver=resolver)
        outcome = await delivery.perform(config(f"http://two.test:{server.port}/"))
    assert outcome.status is RunStatus.SUCCEEDED
    assert server.accepted == 1


@contextmanager
def silent_port(host: str, port: int) -> Iterator[None]:
    """A listener on `host:port` whose accept queue is full: Linux drops the SYNs
    of any further connection, so connecting there hangs as to a dead host,
    all on loopback."""
    with socket.socket() as listener, ExitStack() as fillers:
        listener.bind((host, port))
        listener.listen(0)
        for _ in range(4):
            filler = fillers.enter_context(socket.socket())
            filler.setblocking(False)
            with suppress(BlockingIOError):
                filler.connect((host, port))
        yield


async def test_an_answer_that_never_connects_does_not_hold_up_the_next() -> None:
    """A name whose first address drops every SYN (a dead host behind a DNS record)
    and whose second serves: the second is tried 250 ms later (RFC 8305's attempt
    delay, as trio and anyio connect), not after the run's whole timeout."""
    async with serving() as server:
        with silent_port("127.0.0.2", server.port):
            resolver = fixed({"two.test": ["127.0.0.2", "127.0.0.1"]})
            delivery = Delivery(only("127.0.0.1/32", "127.0.0.2/32"), resolver=resolver)
            started = trio.current_time()
            outcome = await delivery.perform(config(f"http://two.test:{server.port}/"))
            took_s = trio.current_time() - started
    assert outcome.status is RunStatus.SUCCEEDED, outcome.error
    assert server.accepted == 1 and took_s < 3, took_s


async def test_only_refused_answers_is_ssrf_blocked_without_a_connection() -> None:
    # Loopback answers only, so that even a broken policy could not send
    # traffic anywhere else; 127.0.0.3 has a listener that counts connections.
    async with serving_on_two_hosts("127.0.0.1", "127.0.0.3") as (allowed, refused):
        calls: list[str] = []
        answers = {"evil.test": ["127.0.0.3", "0.0.0.0", "::1", "::ffff:127.0.0.3"]}
        delivery = Delivery(LOCAL, resolver=fixed(answers, calls))
        outcome = await delivery.perform(config(f"http://evil.test:{allowed.port}/"))
        assert (allowed.accepted, refused.accepted) == (0, 0)
    assert calls == ["evil.test"]
    assert outcome.failure_reason is FailureReason.SSRF_BLOCKED
    assert outcome.error == (
        "evil.test resolves only to refused addresses: "
        "127.0.0.3 is in 127.0.0.0/8 (loopback); "
        "0.0.0.0 is in 0.0.0.0/8 (this network; reaches the local host); "
        "::1 is in ::1/128 (loopback), outside 2000::/3 (global unicast); "
        "::ffff:127.0.0.3 embeds 127.0.0.3, which is in 127.0.0.0/8 (loopback)"
    )
    assert outcome.result is None


@pytest.mark.parametrize(
    "host", ["2130706433", "0x7f.1", "127.1", "0", "[::1]", "[::ffff:127.0.0.1]"]
)
async def test_odd_numeric_hosts_are_judged_by_what_they_resolve_to(host: str) -> None:
    # The default resolver: these names never reach DNS (getaddrinfo parses them).
    outcome = await Delivery(AddressPolicy()).perform(config(f"http://{host}:9/"))
    assert outcome.failure_reason is FailureReason.SSRF_BLOCKED, outcome.error


async def test_numeric_host_reaches_an_allowed_address_through_the_default_resolver() -> None:
    async with serving() as server:
        outcome = await Delivery(LOCAL).perform(config(f"http://2130706433:{server.port}/"))
    assert outcome.status is RunStatus.SUCCEEDED
    assert server.seen[0].header("host") == f"2130706433:{server.port}"


async def test_default_resolver_uses_the_hosts_file() -> None:
    async with serving() as server:
        outcome = await Delivery(LOCAL).perform(config(f"http://localhost:{server.port}/"))
    assert outcome.status is RunStatus.SUCCEEDED


# -- connection failures and cancellation ---------------------------------------------


async def test_dns_failure_is_a_connection_error() -> None:
    delivery = Delivery(LOCAL, resolver=fixed({"empty.test": []}))
    failed = await delivery.perform(config("http://missing.test/"))
    empty = await delivery.perform(config("http://empty.test/"))
    for outcome in (failed, empty):
        assert outcome.failure_reason is FailureReason.CONNECTION_ERROR
        assert outcome.result is None
    assert "DNS lookup of missing.test failed" in str(failed.error)
    assert "Name or service not known" in str(failed.error)
    assert "DNS lookup of empty.test returned no address" in str(empty.error)


async def test_a_name_idna_refuses_is_a_connection_error() -> None:
    # Refused while encoding the name, before any lookup leaves the process.
    outcome = await Delivery(LOCAL).perform(config(f"http://{'a' * 64}.test/"))
    assert outcome.failure_reason is FailureReason.CONNECTION_ERROR
    assert "DNS lookup of" in str(outcome.error)


async def test_a_closed_port_is_a_connection_error() -> None:
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    await listener.aclose()
    outcome = await Delivery(LOCAL).perform(config(f"http://127.0.0.1:{port}/"))
    assert outcome.failure_reason is FailureReason.CONNECTION_ERROR
    assert "refused" in str(outcome.error).lower()
    assert outcome.result is None


async def test_cancel_propagates_and_closes_the_connection() -> None:
    request_seen = trio.Event()
    client_gone = trio.Event()

    async def hold(exchange: Exchange) -> None:
        request_seen.set()
        with trio.fail_after(10):
            while await exchange.stream.receive_some(1024):
                pass
        client_gone.set()

    cancelled = False

    async def run(url: str) -> None:
        nonlocal cancelled
        try:
            await Delivery(LOCAL).perform(config(url, timeout_s=60))
        except trio.Cancelled:
            cancelled = True
            raise

    async with serving(hold) as server:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, f"http://127.0.0.1:{server.port}/")
            with trio.fail_after(10):
                await request_seen.wait()
            nursery.cancel_scope.cancel()
        with trio.fail_after(10):
            await client_gone.wait()
    assert cancelled
