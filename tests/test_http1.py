"""The HTTP/1.1 exchange on h11 (`jobsd.http1`), against raw servers on loopback.

Each server writes exactly the bytes a test gives it, so the response can
be what no well-behaved server library would send: chunked and
close-delimited bodies, informational responses, a broken status line, a
header block past the bound, a connection closed mid-body. What a run
records is checked through `Delivery.perform`, the way runs use it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobsd.delivery import Delivery
from jobsd.http1 import READ_BYTES, ExchangeFailed, read_response
from jobsd.job_model import Header
from jobsd.messages import Outcome
from jobsd.reading import INFORMATIONAL_BYTES, MAX_HEAD_BYTES, PIECE_BYTES, Reading, wire_bound
from jobsd.runs import FailureReason, RunStatus
from tests.test_delivery import LOCAL, Exchange, config, fixed, serving
from tests.tls_ca import make_ca

Reply = Callable[[trio.SocketStream], Awaitable[None]]


@dataclass
class RawServer:
    port: int = 0
    requests: list[bytes] = field(default_factory=list)
    closed_by_client: int = 0


@asynccontextmanager
async def raw_serving(reply: Reply) -> AsyncIterator[RawServer]:
    """Reads one request head, then hands the stream to `reply`; closes after."""
    server = RawServer()

    async def handle(stream: trio.SocketStream) -> None:
        head = b""
        try:
            with trio.fail_after(10):
                while b"\r\n\r\n" not in head:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    head += data
            server.requests.append(head)
            await reply(stream)
            with trio.move_on_after(10):
                while await stream.receive_some(65536):
                    pass
                server.closed_by_client += 1
        except trio.BrokenResourceError:
            server.closed_by_client += 1
        finally:
            await trio.aclose_forcefully(stream)

    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    server.port = listener.socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handle, [listener])
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


def sends(*parts: bytes, close: bool = True) -> Reply:
    """Writes each part in its own send; with close=False it then waits for the
    client to hang up (a response that must end on its own framing)."""

    async def reply(stream: trio.SocketStream) -> None:
        for part in parts:
            await stream.send_all(part)
        if close:
            await stream.aclose()

    return reply


async def perform(reply: Reply, **fields: object) -> tuple[RawServer, Outcome]:
    async with raw_serving(reply) as server:
        outcome = await Delivery(LOCAL).perform(
            config(f"http://127.0.0.1:{server.port}/", **fields)
        )
    return server, outcome


def got(outcome: Outcome) -> dict[str, Any]:
    assert outcome.result is not None, outcome
    return outcome.result


# -- the request ------------------------------------------------------------------


async def test_the_request_says_connection_close_and_a_jobs_header_replaces_a_default() -> None:
    reply = sends(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    headers = (Header("User-Agent", "mine/1"),)
    server, outcome = await perform(reply, headers=headers, method="GET")
    assert outcome.status is RunStatus.SUCCEEDED
    [head] = server.requests
    lines = head.decode().split("\r\n")
    assert lines[0] == "GET / HTTP/1.1"
    assert lines[1:6] == [
        f"Host: 127.0.0.1:{server.port}",
        "Accept: */*",
        "Accept-Encoding: identity",
        "Connection: close",
        "User-Agent: mine/1",
    ]


@pytest.mark.parametrize("bad", ["\r\nInjected: 1", "\x0b", "\x00", " "])
async def test_an_illegal_header_value_fails_before_any_connection_and_is_not_quoted(
    bad: str,
) -> None:
    """The API refuses such values; a run that met one anyway (a store written
    by other means) must not copy the value, a secret, into its `error`: h11's
    own message quotes it."""
    secret = "sk_live_51HxSecretPaymentKey"
    headers = (Header("X-Fine", "ok"), Header("X-Api-Key", f"{secret}{bad}"))
    server, outcome = await perform(sends(b""), headers=headers)
    assert outcome.failure_reason is FailureReason.CONNECTION_ERROR
    assert outcome.error == "the value of header X-Api-Key is not allowed in HTTP/1.1 (not shown)"
    assert secret not in repr(outcome)
    assert server.requests == []


# -- response framing --------------------------------------------------------------


async def test_a_chunked_body_is_read_to_its_last_chunk() -> None:
    chunks = b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nTrailer: x\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    _, outcome = await perform(sends(head, chunks[:7], chunks[7:], close=False))
    assert outcome.status is RunStatus.SUCCEEDED, outcome
    assert got(outcome)["body"] == "abcdefg"
    assert got(outcome)["body_bytes"] == 7


@pytest.mark.parametrize("version", [b"HTTP/1.1", b"HTTP/1.0"])
async def test_a_close_delimited_body_ends_with_the_connection(version: bytes) -> None:
    _, outcome = await perform(sends(version + b" 200 OK\r\n\r\n", b"part one, ", b"part two"))
    assert outcome.status is RunStatus.SUCCEEDED, outcome
    assert got(outcome)["body"] == "part one, part two"


async def test_informational_responses_are_skipped() -> None:
    reply = sends(
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n",
        b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-Final: yes\r\n\r\nok",
        close=False,
    )
    _, outcome = await perform(reply)
    assert outcome.status is RunStatus.SUCCEEDED
    result = got(outcome)
    assert (result["status"], result["body"]) == (201, "ok")
    assert "link" not in result["headers"] and result["headers"]["x-final"] == "yes"


async def perform_in_own_thread(reply: Reply, **fields: object) -> Outcome:
    """`perform` on a trio loop of its own thread: a delivery that spins without
    ever yielding fails the test at the guard instead of hanging it."""
    async with raw_serving(reply) as server:
        url = f"http://127.0.0.1:{server.port}/"

        def run() -> Outcome:
            return trio.run(Delivery(LOCAL).perform, config(url, **fields))

        with trio.fail_after(10):
            return await trio.to_thread.run_sync(run, abandon_on_cancel=True)


@pytest.mark.parametrize("success", ["2xx", "101"])
async def test_a_101_to_the_jobs_upgrade_is_its_response_not_an_endless_loop(
    success: str,
) -> None:
    """A job may send `Upgrade` (only Connection, Host and the framing headers are
    refused). A server that accepts ends HTTP on the connection with its 101:
    h11 then answers PAUSED for ever, which read in a loop spun a worker's CPU
    without yielding, past every deadline, and froze every run of its process."""
    reply = sends(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nnot http",
        close=False,
    )
    outcome = await perform_in_own_thread(
        reply,
        method="GET",
        headers=(Header("Upgrade", "websocket"),),
        success_status=success,
        timeout_s=3,
    )
    result = got(outcome)
    assert (result["status"], result["headers"], result["body"]) == (
        101,
        {"upgrade": "websocket"},
        "",
    )
    if success == "101":
        assert outcome.status is RunStatus.SUCCEEDED, outcome
    else:
        assert outcome.failure_reason is FailureReason.NON_SUCCESS_STATUS, outcome


@pytest.mark.parametrize(
    ("method", "status", "success"),
    [("HEAD", 200, "2xx"), ("POST", 204, "2xx"), ("GET", 304, "3xx")],
)
async def test_no_body_follows_head_204_or_304_even_with_a_length(
    method: str, status: int, success: str
) -> None:
    # The server keeps the connection open: waiting for a body would time out.
    head = f"HTTP/1.1 {status} X\r\nContent-Length: 50\r\n\r\n".encode()
    server, outcome = await perform(
        sends(head, close=False), method=method, success_status=success, timeout_s=5
    )
    assert outcome.status is RunStatus.SUCCEEDED, outcome
    assert got(outcome)["body_bytes"] == 0
    assert server.closed_by_client == 1


# -- responses that break HTTP/1.1 --------------------------------------------------


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (b"HELLO THERE\r\n\r\n", "illegal status line"),
        (b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n", "illegal header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
        (b"", "Server disconnected without sending a response."),
    ],
)
async def test_a_response_breaking_http11_is_a_connection_error_with_h11s_reason(
    response: bytes, reason: str
) -> None:
    _, outcome = await perform(sends(response))
    assert outcome.failure_reason is FailureReason.CONNECTION_ERROR
    assert reason in str(outcome.error)
    assert outcome.result is None


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (b"Transfer-Encoding: chunked\r\n\r\n5\r\nab", "incomplete chunked read"),
        (b"Transfer-Encoding: chunked\r\n\r\nzz\r\nab", "illegal chunk header"),
        (b"Content-Length: 10\r\n\r\nab", "received 2 bytes, expected 10"),
    ],
)
async def test_a_body_broken_after_the_headers_keeps_the_partial_result(
    head: bytes, reason: str
) -> None:
    _, outcome = await perform(sends(b"HTTP/1.1 200 OK\r\n" + head))
    assert outcome.failure_reason is FailureReason.CONNECTION_ERROR
    assert outcome.error is not None and reason in outcome.error
    assert "after status 200" in outcome.error
    assert got(outcome)["status"] == 200


def header_block(size: int) -> bytes:
    """A response head of exactly `size` bytes, in 1000-byte header lines."""
    start, end = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", b"\r\n"
    lines, room = [], size - len(start) - len(end)
    for i in range(room // 1000):
        lines.append(b"X-%06d: " % i + b"v" * (1000 - 12) + b"\r\n")
    rest = room - 1000 * len(lines)
    if rest:
        lines.append(b"X-last: " + b"v" * (rest - 10) + b"\r\n")
    head = start + b"".join(lines) + end
    assert len(head) == size
    return head


async def test_the_response_head_is_bounded() -> None:
    """h11 holds at most MAX_HEAD_BYTES of an unfinished head, plus what one read adds."""
    _, within = await perform(sends(header_block(MAX_HEAD_BYTES), close=False))
    assert within.status is RunStatus.SUCCEEDED, within
    assert len(got(within)["headers"]) > 90
    over = MAX_HEAD_BYTES + READ_BYTES + 1
    _, past = await perform(sends(header_block(over)[:-2], close=False))  # never ends
    assert past.failure_reason is FailureReason.CONNECTION_ERROR
    assert past.error == "Receive buffer too long"


async def test_an_endless_header_block_is_cut_at_the_bound_not_the_deadline() -> None:
    async def endless(stream: trio.SocketStream) -> None:
        await stream.send_all(b"HTTP/1.1 200 OK\r\n")
        for i in range(100_000):
            await stream.send_all(b"X-%08d: y\r\n" % i)

    started = trio.current_time()
    _, outcome = await perform(endless, timeout_s=30)
    assert outcome.error == "Receive buffer too long"
    assert trio.current_time() - started < 10


async def test_endless_informational_responses_are_cut_at_the_bound_not_the_deadline() -> None:
    """1xx heads are skipped, but not for free: without a bound a target could
    keep a worker parsing them at full speed until the run's deadline."""

    async def endless(stream: trio.SocketStream) -> None:
        for _ in range(100_000):
            await stream.send_all(b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n")

    started = trio.current_time()
    _, outcome = await perform(endless, timeout_s=30)
    assert outcome.failure_reason is FailureReason.CONNECTION_ERROR, outcome
    assert outcome.error == (
        f"more than {INFORMATIONAL_BYTES} bytes of informational (1xx) responses"
    )
    assert outcome.result is None
    assert trio.current_time() - started < 10


async def test_informational_heads_padded_with_whitespace_count_as_sent() -> None:
    """The bound is on the bytes read: h11 drops a header value's surrounding
    whitespace, so heads of 60 KB that parse to a few bytes each were counted
    as those few, and a target had a worker read hundreds of MB of them."""
    head = b"HTTP/1.1 102 \r\nx:" + b" " * 60_000 + b"a\r\n\r\n"
    sent = 0

    async def endless(stream: trio.SocketStream) -> None:
        nonlocal sent
        for _ in range(100_000):
            await stream.send_all(head)
            sent += len(head)

    _, outcome = await perform(endless, timeout_s=30)
    assert outcome.failure_reason is FailureReason.CONNECTION_ERROR, outcome
    assert outcome.error == (
        f"more than {INFORMATIONAL_BYTES} bytes of informational (1xx) responses"
    )
    # What the kernel's buffers took beyond what was read is a few MB at most.
    assert sent < 16 * 1024 * 1024, f"{sent} bytes sent before the bound stopped the reads"


async def test_informational_responses_within_the_bound_are_skipped() -> None:
    """A server reporting progress (102) every so often stays well inside it."""
    progress = b"HTTP/1.1 102 Processing\r\n\r\n"
    count = INFORMATIONAL_BYTES // len(progress) - 1
    final = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    _, outcome = await perform(sends(progress * count, final, close=False))
    assert outcome.status is RunStatus.SUCCEEDED, outcome
    assert got(outcome)["body"] == "ok"


@pytest.mark.parametrize(
    "chunk",
    [b"1;" + b"e" * 1000 + b"\r\nx\r\n", b"1\r\nx\r\n"],
    ids=["extensions", "one-byte-chunks"],
)
async def test_an_endless_chunked_body_of_mostly_framing_stops_at_a_bound(
    chunk: bytes,
) -> None:
    """The cap counts body bytes; chunk framing (headers, extensions) carrying
    little body must not let a target be read at full speed until the deadline:
    long extensions meet the wire bound, 1-byte chunks the bound on pieces."""

    async def endless(stream: trio.SocketStream) -> None:
        await stream.send_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(100_000):
            await stream.send_all(chunk * 64)

    cap = 64 * 1024
    async with raw_serving(endless) as server:
        delivery = Delivery(LOCAL, body_keep_bytes=1024, body_cap_bytes=cap)
        started = trio.current_time()
        outcome = await delivery.perform(config(f"http://127.0.0.1:{server.port}/", timeout_s=30))
    assert trio.current_time() - started < 10
    assert outcome.status is RunStatus.SUCCEEDED, outcome  # judged on its status, as at the cap
    assert "stopped reading the body after" in str(outcome.error)
    assert "(chunk framing)" in str(outcome.error)
    assert 0 < got(outcome)["body_bytes"] <= cap // PIECE_BYTES + 1


# -- TLS ------------------------------------------------------------------------------


async def test_tls_close_delimited_body_ends_at_a_close_without_close_notify(
    tmp_path: Path,
) -> None:
    ca = make_ca()

    async def close_delimited(exchange: Exchange) -> None:
        assert isinstance(exchange.stream, trio.SSLStream)
        await exchange.stream.send_all(b"HTTP/1.1 200 OK\r\n\r\nsecret body")
        await exchange.stream.transport_stream.aclose()  # no close_notify

    resolver = fixed({"target.test": ["127.0.0.1"]})
    context = ca.server_context(tmp_path, ["target.test"])
    async with serving(close_delimited, ssl_context=context) as server:
        url = f"https://target.test:{server.port}/"
        outcome = await Delivery(LOCAL, resolver=resolver).perform(config(url, ca_cert=ca.cert_pem))
    assert outcome.status is RunStatus.SUCCEEDED, outcome
    assert outcome.result is not None and got(outcome)["body"] == "secret body"


# -- invariants ----------------------------------------------------------------------


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.binary(max_size=3000),
    cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=12),
    chunked=st.booleans(),
    keep=st.integers(min_value=0, max_value=2000),
)
def test_any_split_of_any_body_is_counted_and_kept_exactly(
    body: bytes, cuts: list[int], chunked: bool, keep: int
) -> None:
    """However the server frames and the network splits a body, a run records
    its exact length and its first `keep` bytes."""
    pieces, rest = [], body
    for cut in cuts:
        pieces.append(rest[:cut])
        rest = rest[cut:]
    pieces = [p for p in [*pieces, rest] if p]
    if chunked:
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        wire = [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces] + [b"0\r\n\r\n"]
    else:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
        wire = pieces

    async def main() -> None:
        async with raw_serving(sends(head, *wire, close=False)) as server:
            delivery = Delivery(LOCAL, body_keep_bytes=keep)
            outcome = await delivery.perform(config(f"http://127.0.0.1:{server.port}/"))
        assert outcome.status is RunStatus.SUCCEEDED, outcome
        assert outcome.result is not None
        assert got(outcome)["body_bytes"] == len(body)
        assert got(outcome)["body"] == body[:keep].decode("utf-8", errors="replace")
        assert got(outcome)["body_truncated"] is (len(body) > keep)

    trio.run(main)


# -- what the bounds let through, counted off the wire ----------------------------


async def _read_fed(head: bytes, piece: bytes, cap: int) -> tuple[Reading, str | None]:
    """`read_response` over an in-memory stream fed `head`, then `piece` without
    end: the bytes it read when it stopped, and its complaint if any."""
    ours, theirs = trio.testing.memory_stream_pair()
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    reading = Reading(1024, cap)
    complaint: str | None = None
    async with trio.open_nursery() as nursery:

        async def feed() -> None:
            await theirs.send_all(head)
            for _ in range(100_000):
                await theirs.send_all(piece * 64)

        nursery.start_soon(feed)
        with trio.fail_after(10):
            try:
                await read_response(ours, conn, reading)
            except ExchangeFailed as exc:
                complaint = str(exc)
        nursery.cancel_scope.cancel()
    return reading, complaint


async def test_informational_heads_are_read_to_their_bound_and_no_further() -> None:
    head = b"HTTP/1.1 102 \r\nx:" + b" " * 1000 + b"a\r\n\r\n"
    reading, complaint = await _read_fed(b"", head, 64 * 1024)
    assert complaint == f"more than {INFORMATIONAL_BYTES} bytes of informational (1xx) responses"
    assert reading.wire_bytes <= INFORMATIONAL_BYTES + READ_BYTES


async def test_a_body_of_mostly_framing_is_read_to_the_wire_bound_and_no_further() -> None:
    cap = 64 * 1024
    chunk = b"1;" + b"e" * 1000 + b"\r\nx\r\n"
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    reading, complaint = await _read_fed(head, chunk, cap)
    assert complaint is None and reading.capped
    assert wire_bound(cap) <= reading.wire_bytes < wire_bound(cap) + READ_BYTES


async def test_an_illegal_header_value_in_a_request_h11_writes_is_not_quoted() -> None:
    """A request that is not plain (here `Connection: keep-alive`) is framed by h11,
    whose refusal quotes the value: the error names the header only."""
    secret = "sk_live_51HxSecretPaymentKey"
    headers = (Header("Connection", "keep-alive"), Header("X-Api-Key", f"{secret}\x00"))
    server, outcome = await perform(sends(b""), headers=headers)
    assert outcome.error == "the value of header X-Api-Key is not allowed in HTTP/1.1 (not shown)"
    assert secret not in repr(outcome)
    assert server.requests == []


@pytest.mark.parametrize(
    "framing", [Header("Content-Length", "5"), Header("Transfer-Encoding", "chunked")]
)
async def test_a_jobs_own_framing_header_is_the_only_one_sent(framing: Header) -> None:
    """A body framed by the job's own header gets no Content-Length of jobsd's."""

    async def echo(exchange: Exchange) -> None:
        await exchange.respond(200, b"ok")

    async with serving(echo) as server:
        url = f"http://127.0.0.1:{server.port}/"
        outcome = await Delivery(LOCAL).perform(
            config(url, method="PUT", body="hello", headers=(framing,))
        )
    assert outcome.status is RunStatus.SUCCEEDED, outcome
    [seen] = server.seen
    names = [n for n, _ in seen.headers]
    assert names.count(framing.name.lower()) == 1
    assert names.count("content-length") + names.count("transfer-encoding") == 1
    assert seen.body == b"hello"
