"""A request that closes its connection is answered, and nothing sent after it is read.

`Connection: close`, or HTTP/1.0 (which h11 never keeps alive), ends the
connection after its answer; RFC 9112 §9.6: the server "MUST NOT process
any further requests received on that connection". Whatever follows (an
extra CRLF some clients send after a body, a pipelined request) is neither
answered nor served, and must not cost the request its own answer: h11
reads those bytes as a protocol error, which was answered 400 (or not at
all) while the request went on to take effect, a run-now's run created
with the client told its request was bad.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from tests.conftest import JSONAPI, TOKEN_A
from tests.test_limits import job, serving_daemon
from tests.wire import exchange, read_to_close, request, split_answers

AUTH = f"Authorization: Bearer {TOKEN_A}"
_JOB = json.dumps(job("smuggled", "0 0 1 1 *", "http://127.0.0.1:9/x")).encode()
SMUGGLED = (
    request(
        "POST", "/api/v1/jobs", AUTH, f"Content-Type: {JSONAPI}", f"Content-Length: {len(_JOB)}"
    )
    + _JOB
)
BODY = b'{"environment":"production"}'
CLOSING = [("Connection: close", "1.1"), ("Connection: close", "1.0"), ("X-Note: 1.0", "1.0")]


def run_now(closing: str, version: str, *, body: bytes = b"") -> bytes:
    framing = [f"Content-Type: {JSONAPI}", f"Content-Length: {len(body)}"] if body else []
    lines = [AUTH, "Jobsd-Version: 2026-08-07", closing, *framing]
    return request("POST", "/api/v1/jobs/warm/actions/run", *lines, body=body, version=version)


@pytest.mark.parametrize(("closing", "version"), CLOSING)
@pytest.mark.parametrize("after", [b"\r\n", SMUGGLED], ids=["crlf", "pipelined"])
async def test_what_follows_a_closing_request_is_not_read_and_the_request_is_answered(
    tmp_path: Path, closing: str, version: str, after: bytes
) -> None:
    async with serving_daemon(tmp_path) as live:
        async with live.client() as client:
            made = await client.post(
                "/api/v1/jobs",
                content=json.dumps(job("warm", "0 0 1 1 *", "http://127.0.0.1:9/x")),
                headers={"Content-Type": JSONAPI},
            )
            assert made.status_code == 201, made.text
        for raw in [
            run_now(closing, version),  # answered below Quart
            run_now(closing, version, body=BODY),  # with the SDK's body, below Quart too
            request("GET", "/api/v1/jobs/warm", AUTH, closing, version=version),
            request("GET", "/api/v1/jobs", AUTH, closing, version=version),  # Quart's
        ]:
            answers = split_answers(await exchange(live.host, live.port, raw + after))
            assert [a.status for a in answers] == [200], (raw, answers)
        async with live.client() as client:
            runs = (await client.get("/api/v1/runs")).json()["data"]
            assert len(runs) == 2, runs
            assert (await client.get("/api/v1/jobs/smuggled")).status_code == 404


@pytest.mark.parametrize("empty", [b"\r\n", b"\n", b"\r\n\r\n"], ids=["crlf", "lf", "two"])
async def test_empty_lines_before_a_kept_connections_next_request_are_ignored(
    tmp_path: Path, empty: bytes
) -> None:
    """RFC 9112 §2.2: a server SHOULD ignore at least one empty line before a request
    line. Some clients send a CRLF after a body; on a kept connection it then led the
    next request, which h11 refused 400 and the connection closed. Sent with the body
    (buffered at the next cycle) and on its own (arriving at an idle connection)."""
    async with serving_daemon(tmp_path) as live:
        job_body = json.dumps(job("warm", "0 0 1 1 *", "http://127.0.0.1:9/x")).encode()
        framing = [AUTH, f"Content-Type: {JSONAPI}", f"Content-Length: {len(job_body)}"]
        get = request("GET", "/api/v1/jobs/warm", AUTH)
        last = request("GET", "/healthz", "Connection: close")
        raw = await exchange(
            live.host,
            live.port,
            request("POST", "/api/v1/jobs", *framing, body=job_body) + empty + get + empty + last,
        )
        assert [a.status for a in split_answers(raw)] == [201, 200, 200]
        async with await trio.open_tcp_stream(live.host, live.port) as stream:
            await stream.send_all(get)
            first = await stream.receive_some(65536)
            for part in (empty[:1], empty[1:], last):  # a CRLF may come apart
                await stream.send_all(part)
                await trio.sleep(0.05)
            rest = await read_to_close(stream, 10)
        assert [a.status for a in split_answers(first + rest)] == [200, 200]
