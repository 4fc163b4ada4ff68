"""Hostile framing and protocol switches, against the real daemon over real sockets.

Each message below could be read two ways, or is not HTTP/1.1 at all. Behind
a proxy that reads it the other way, the bytes after it would be a request
smuggled past the proxy; so each is answered with one JSON:API error and the
connection is closed, and a request placed after it, which would create a
job, must never be answered nor take effect. Both with a body (POST) and
without (GET, and HEAD, whose
answer has no body). `Upgrade` (h2c, WebSocket) is ignored on purpose: the API
listener speaks HTTP/1.1 only (README, Decisions).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
from pathlib import Path

import pytest
import trio
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.conftest import JSONAPI, TOKEN_A
from tests.test_limits import serving_daemon
from tests.wire import (
    exchange,
    healthz_latency_s,
    read_answer,
    request,
    socket_count,
    sockets_back_to,
    split_answers,
)

AUTH = f"Authorization: Bearer {TOKEN_A}"
_JOB = json.dumps(
    {
        "data": {
            "type": "job",
            "id": "smuggled",
            "attributes": {
                "name": "smuggled",
                "schedule": "0 0 1 1 *",
                "configuration": {"url": "http://127.0.0.1:9/x"},
            },
        }
    }
).encode()
SMUGGLED = request(
    "POST",
    "/api/v1/jobs",
    AUTH,
    f"Content-Type: {JSONAPI}",
    f"Content-Length: {len(_JOB)}",
    body=_JOB,
)

# (name, head lines after the request line and Host, body); the request line is added per method.
FRAMING: list[tuple[str, list[str], bytes]] = [
    ("cl-then-te", ["Content-Length: 5", "Transfer-Encoding: chunked"], b"0\r\n\r\n"),
    ("te-then-cl", ["Transfer-Encoding: chunked", "Content-Length: 30"], b"0\r\n\r\n"),
    ("cl-zero-with-te", ["Content-Length: 0", "Transfer-Encoding: chunked"], b"0\r\n\r\n"),
    ("two-different-cl", ["Content-Length: 5", "Content-Length: 6"], b"hello!"),
    ("cl-list", ["Content-Length: 5, 6"], b"hello!"),
    ("cl-signed", ["Content-Length: +5"], b"hello"),
    ("cl-hex", ["Content-Length: 0x5"], b"hello"),
    ("te-identity", ["Transfer-Encoding: identity"], b""),
    ("te-gzip-chunked", ["Transfer-Encoding: gzip, chunked"], b"0\r\n\r\n"),
    ("te-chunked-identity", ["Transfer-Encoding: chunked, identity"], b"0\r\n\r\n"),
    ("te-twice", ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], b"0\r\n\r\n"),
    ("te-folded", ["Transfer-Encoding:", " chunked"], b"0\r\n\r\n"),
    ("fold-elsewhere", ["X-Note: a", "\tb", "Content-Length: 0"], b""),
    ("space-before-colon", ["Transfer-Encoding : chunked"], b"0\r\n\r\n"),
    ("te-vertical-tab", ["Transfer-Encoding:\x0bchunked"], b"0\r\n\r\n"),
    ("nul-in-value", ["X-Note: a\x00b"], b""),
    ("chunk-size-not-hex", ["Transfer-Encoding: chunked"], b"zz\r\nhello\r\n0\r\n\r\n"),
    ("chunk-size-huge", ["Transfer-Encoding: chunked"], b"f" * 40 + b"\r\nx\r\n0\r\n\r\n"),
    ("chunk-without-crlf", ["Transfer-Encoding: chunked"], b"5\r\nhelloXX0\r\n\r\n"),
    ("chunk-size-negative", ["Transfer-Encoding: chunked"], b"-5\r\nhello\r\n0\r\n\r\n"),
]


def framed(method: str, lines: list[str], body: bytes, version: str = "1.1") -> bytes:
    path = "/api/v1/jobs" if method == "POST" else "/healthz"
    extra = [AUTH, f"Content-Type: {JSONAPI}"] if method == "POST" else []
    return request(method, path, *extra, *lines, body=body, version=version)


async def assert_refused_alone(live_host: str, port: int, raw: bytes, status: int) -> str:
    """One error answer, then the connection closes; returns the error code."""
    answers = split_answers(await exchange(live_host, port, raw + SMUGGLED))
    assert len(answers) == 1, answers  # the smuggled request was never answered
    (answer,) = answers
    assert answer.status == status, answer
    assert answer.headers["connection"] == "close", answer
    if raw.startswith(b"HEAD ") and not answer.body:  # HEAD parsed: the answer, bodiless
        assert answer.headers["content-type"] == JSONAPI, answer
        return ""
    return answer.error_code()


@pytest.mark.parametrize("method", ["POST", "GET", "HEAD"])
async def test_ambiguous_framing_is_refused_and_nothing_after_it_is_served(
    tmp_path: Path, method: str
) -> None:
    async with serving_daemon(tmp_path) as live:
        baseline = socket_count()
        codes = {}
        for name, lines, body in FRAMING:
            raw = framed(method, lines, body)
            codes[name] = await assert_refused_alone(live.host, live.port, raw, 400)
        # HTTP/1.0 has no chunked coding: Transfer-Encoding there is faulty framing.
        raw = framed(method, ["Transfer-Encoding: chunked"], b"0\r\n\r\n", version="1.0")
        codes["te-in-1.0"] = await assert_refused_alone(live.host, live.port, raw, 400)
        assert set(codes.values()) <= {"bad_framing", "bad_request", ""}, codes
        async with live.client() as client:
            assert (await client.get("/api/v1/jobs/smuggled")).status_code == 404
            assert (await client.get("/api/v1/jobs")).json()["data"] == []
        with trio.fail_after(5):
            while socket_count() > baseline:
                await trio.sleep(0.02)


async def test_a_bad_chunk_after_the_app_started_is_refused_too(tmp_path: Path) -> None:
    # The head was fine, so the app is already waiting for the body when the bad chunk comes.
    async with serving_daemon(tmp_path) as live:
        head = framed("POST", ["Transfer-Encoding: chunked"], b"")
        async with await trio.open_tcp_stream(live.host, live.port) as stream:
            await stream.send_all(head + b"5\r\nhello\r\n")
            await trio.sleep(0.1)  # the app reads the first chunk
            await stream.send_all(b"zz\r\n" + SMUGGLED)
            answer = await read_answer(stream)
            assert answer.status == 400 and answer.error_code() == "bad_request", answer
            assert await stream.receive_some(65536) == b""
        async with live.client() as client:
            assert (await client.get("/api/v1/jobs/smuggled")).status_code == 404


async def test_versions_other_than_http_1_are_refused(tmp_path: Path) -> None:
    async with serving_daemon(tmp_path) as live:
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # HTTP/2 with prior knowledge
        for raw in (preface, *(request(m, "/healthz", version="2.0") for m in ("GET", "HEAD"))):
            code = await assert_refused_alone(live.host, live.port, raw, 505)
            assert code in {"http_version_not_supported", ""}


@pytest.mark.parametrize(
    "upgrade",
    [
        ["Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAAQAAP__"],
        [
            "Connection: Upgrade",
            "Upgrade: websocket",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        ],
    ],
    ids=["h2c", "websocket"],
)
async def test_upgrade_is_ignored_and_the_connection_stays_http_1_1(
    tmp_path: Path, upgrade: list[str]
) -> None:
    async with serving_daemon(tmp_path) as live:
        first = request("GET", "/healthz", *upgrade)
        second = request("GET", "/api/v1/jobs", AUTH, "Connection: close")
        answers = split_answers(await exchange(live.host, live.port, first + second))
        assert [a.status for a in answers] == [200, 200], answers  # no 101, then HTTP/1.1 again
        assert json.loads(answers[0].body) == {"meta": {"status": "ok"}}
        assert json.loads(answers[1].body)["data"] == []


# -- whatever bytes come, the daemon answers sanely and keeps serving -------------------

_METHODS = [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PRI", b"G\x00T"]
_PATHS = [b"/healthz", b"/api/v1/jobs", b"/api/v1/jobs/x", b"/api/v1/openapi.json", b"*", b"/%ff"]
_VERSIONS = [b"1.1", b"1.1", b"1.1", b"1.0", b"2.0", b"0.9"]
_HEADERS = [
    b"Content-Length: 5",
    b"Content-Length: 0",
    b"Content-Length: 5, 5",
    b"Content-Length: -1",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip",
    b"Transfer-Encoding:\r\n chunked",
    b"Expect: 100-continue",
    b"Connection: close",
    b"Connection: Upgrade",
    b"Upgrade: h2c",
    b"Upgrade: websocket",
    AUTH.encode(),
    f"Content-Type: {JSONAPI}".encode(),
    b"X-Fold: a\r\n\tb",
    b"Bad Header: x",
    b"X-Long: " + b"a" * 5000,
]
_BODIES = [b"", b"hello", b"0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n", b"zz\r\n", b"{}", _JOB]


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    method, path = draw(st.sampled_from(_METHODS)), draw(st.sampled_from(_PATHS))
    line = b" ".join([method, path, b"HTTP/" + draw(st.sampled_from(_VERSIONS))])
    headers = [b"Host: x", *draw(st.lists(st.sampled_from(_HEADERS), max_size=4))]
    raw = b"\r\n".join([line, *headers]) + b"\r\n\r\n" + draw(st.sampled_from(_BODIES))
    cut = draw(st.integers(0, 3))  # sometimes a message cut short, or plain noise
    if cut == 0:
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif cut == 1:
        raw += draw(st.binary(max_size=16))
    return raw


def fuzz(host: str, port: int, problems: list[str]) -> None:
    @settings(max_examples=60, deadline=None, database=None)
    @example(  # once a crash: h11 refuses a body on the answer to HEAD
        pipeline=[request("HEAD", "/healthz", "Content-Length: 1", "Transfer-Encoding: chunked")],
        chunk=64,
        ending="read",
    )
    @example(  # an unframed body runs into the next request line: "helloDELETE", 501
        pipeline=[b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nhello", request("DELETE", "/healthz")],
        chunk=64,
        ending="read",
    )
    @given(
        pipeline=st.lists(messages(), min_size=1, max_size=4),
        chunk=st.integers(1, 64),
        ending=st.sampled_from(["leave", "half-close", "read"]),
    )
    def one(pipeline: list[bytes], chunk: int, ending: str) -> None:
        raw = b"".join(pipeline)
        received = b""
        with socket.create_connection((host, port), timeout=5) as sock:
            try:
                for at in range(0, len(raw), chunk):
                    sock.sendall(raw[at : at + chunk])
                if ending == "half-close":
                    sock.shutdown(socket.SHUT_WR)
                if ending != "leave":
                    sock.settimeout(0.15)
                    while data := sock.recv(65536):
                        received += data
            except (TimeoutError, ConnectionError):
                pass
        statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", received)
        if not received.startswith(b"HTTP/1.1 ") and received:
            problems.append(f"not HTTP/1.1: {received[:200]!r} for {raw[:300]!r}")
        # 505 (a version not served) and 501 (a method not in capitals, as when an
        # unframed body runs into the next request line: "helloDELETE") are answers.
        if any(status.startswith(b"5") and status not in (b"501", b"505") for status in statuses):
            problems.append(f"{statuses} for {raw[:300]!r}")

    one()


async def test_whatever_bytes_come_the_daemon_answers_sanely_and_keeps_serving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = "keep_alive_timeout_s = 1\nbody_timeout_s = 1\nrequest_timeout_s = 2\n"
    server += "write_timeout_s = 1\nmax_request_header_bytes = 4096\n"
    async with serving_daemon(tmp_path, server) as live:
        baseline = socket_count()
        problems: list[str] = []
        await trio.to_thread.run_sync(fuzz, live.host, live.port, problems)
        assert not problems, problems[:10]
        await sockets_back_to(baseline, timeout_s=10)
        await healthz_latency_s(live.host, live.port)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


@pytest.mark.parametrize(
    ("line", "body"),
    [
        (f"Authorization : Bearer {TOKEN_A}", b""),  # a space before the colon
        (f"Authorization: Bearer {TOKEN_A}\rx", b""),  # a bare CR
        (f"X-Note\x01: Bearer {TOKEN_A}", b""),  # a control character in the name
        ("Transfer-Encoding: chunked", f"zz;{TOKEN_A}\r\n".encode()),  # a chunk extension
    ],
    ids=["space-before-colon", "bare-cr", "control-in-name", "chunk-header"],
)
async def test_a_refused_request_is_not_echoed_back(tmp_path: Path, line: str, body: bytes) -> None:
    # h11 names the line it refused with the line's bytes; those bytes may
    # carry a bearer token, and an error body is what proxies and clients log.
    async with serving_daemon(tmp_path) as live:
        raw = request("POST", "/api/v1/jobs", f"Content-Type: {JSONAPI}", line, body=body)
        answers = split_answers(await exchange(live.host, live.port, raw))
        assert [a.status for a in answers] == [400], answers
        assert TOKEN_A.encode() not in answers[0].body, answers[0].body
        detail = json.loads(answers[0].body)["errors"][0]["detail"]
        assert detail.startswith("not a valid HTTP/1.1 request: illegal "), detail
        # Answered below Quart, it still says which version answered (the default).
        assert answers[0].headers["jobsd-version"] == "2026-06-04", answers[0].headers


async def test_answers_without_content_claim_no_html(tmp_path: Path) -> None:
    # Every answer is JSON:API or carries nothing at all; a 204 and the
    # automatic answer to OPTIONS said text/html, Quart's default.
    async with serving_daemon(tmp_path) as live, live.client() as client:
        doc = json.loads(_JOB)
        assert (await client.post("/api/v1/jobs", json=doc)).status_code == 201
        answers = [
            await client.delete("/api/v1/jobs/smuggled"),
            await client.options("/api/v1/jobs"),
            await client.options("/api/v1/jobs/smuggled", headers={"Authorization": "x"}),
        ]
        for r in answers:
            assert r.status_code in (200, 204) and r.content == b""
            assert "content-type" not in r.headers, r.headers


BAD_HOSTS = [
    *("a" * 64, "x" * 300, "h:99999", "h:0", "h:", "[::1", "[zz]", "[1]", "[::1]x"),
    *("a@b", "x/y?z#", '"q', "a b", "", "é.example"),
    *("xn--zz", "XN--ZZ:1", "xn--", "xn--a.xn--b"),  # punycode Werkzeug cannot decode: a 500
]
GOOD_HOSTS = ["localhost", "127.0.0.1:8080", "[::1]:8080", "api.example.com", "A-B.example:65535"]


async def test_a_host_that_is_not_host_and_port_is_400_and_links_stay_urls(
    tmp_path: Path,
) -> None:
    # Werkzeug raised past every error handler on a label over 63 characters
    # (a 500 with no body and a traceback in the log for each request), and
    # built `links.next` as "http:/api/..." from a Host it could not read.
    # RFC 9112 (3.2): a Host with an invalid value is a 400.
    async with serving_daemon(tmp_path) as live, live.client() as client:
        await client.post("/api/v1/jobs", json=json.loads(_JOB))
        for _ in range(2):
            await client.post("/api/v1/jobs/smuggled/actions/run")
        for host in BAD_HOSTS:
            raw = request("GET", "/api/v1/runs?page[size]=1", AUTH).replace(
                b"Host: x\r\n", b"Host: " + host.encode() + b"\r\n", 1
            )
            answers = split_answers(await exchange(live.host, live.port, raw))
            assert [a.status for a in answers] == [400], (host, answers)
            assert answers[0].error_code() == "invalid_host", host
            assert answers[0].headers["jobsd-version"] == "2026-06-04", host
        for host in GOOD_HOSTS:
            r = await client.get("/api/v1/runs?page[size]=1", headers={"Host": host})
            assert r.status_code == 200, (host, r.text)
            assert (
                r.json()["links"]["next"].lower().startswith(f"http://{host.lower()}/api/v1/runs?")
            ), host


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_a_body_over_two_mib_is_413_where_the_body_is_ignored_too(
    tmp_path: Path, framing: str
) -> None:
    # Run now through 2026-06-04, rerun, cancel and DELETE take no body, so
    # they acted before anything read one: 3 MiB was answered 200 with a new
    # run (or a cancel, or a delete). Quart's test client frames no body, so
    # this is over a real socket.
    body = b"{}" + b" " * (2 * 1024 * 1024)
    if framing == "chunked":
        lines, sent = ["Transfer-Encoding: chunked"], b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    else:  # the head alone: a declared length over the bound is answered before any body
        lines, sent = [f"Content-Length: {len(body)}"], b""
    async with serving_daemon(tmp_path) as live, live.client() as client:
        assert (await client.post("/api/v1/jobs", json=json.loads(_JOB))).status_code == 201
        run = (await client.post("/api/v1/jobs/smuggled/actions/run")).json()["data"]
        # Its request fails at once (port 9): let it end, so nothing but the
        # requests below could change the runs between the two reads.
        with trio.fail_after(30):
            while (await client.get(f"/api/v1/runs/{run['id']}")).json()["data"]["attributes"][
                "status"
            ] in ("PENDING", "RUNNING"):
                await trio.sleep(0.05)
        before = (await client.get("/api/v1/runs")).json()["data"]
        for method, path in [
            ("POST", "/api/v1/jobs/smuggled/actions/run"),
            ("POST", f"/api/v1/runs/{run['id']}/actions/rerun"),
            ("POST", f"/api/v1/runs/{run['id']}/actions/cancel"),
            ("DELETE", "/api/v1/jobs/smuggled"),
        ]:
            raw = request(method, path, AUTH, f"Content-Type: {JSONAPI}", *lines, body=sent)
            async with await trio.open_tcp_stream(live.host, live.port) as stream:
                # The answer may come, and the socket close, before all is sent.
                with contextlib.suppress(trio.BrokenResourceError):
                    await stream.send_all(raw)
                answer = await read_answer(stream)
            assert answer.status == 413, (method, path, answer)
            assert answer.error_code() == "payload_too_large"
        assert (await client.get("/api/v1/runs")).json()["data"] == before
        assert (await client.get("/api/v1/jobs/smuggled")).status_code == 200


async def test_a_method_not_in_capitals_is_501_and_does_nothing(tmp_path: Path) -> None:
    # Methods are case-sensitive (RFC 9110 §9.1), but hypercorn upper-cases
    # them before the app: `delete` deleted the job, `post` ran it. A proxy
    # that allows or denies by method would let through what jobsd performed.
    async with serving_daemon(tmp_path) as live, live.client() as client:
        assert (await client.post("/api/v1/jobs", json=json.loads(_JOB))).status_code == 201
        for method, path, extra in [
            ("delete", "/api/v1/jobs/smuggled", []),
            ("Delete", "/api/v1/jobs/smuggled", []),
            ("post", "/api/v1/jobs/smuggled/actions/run", ["Content-Length: 0"]),
            ("put", "/api/v1/jobs/smuggled", [f"Content-Length: {len(_JOB)}"]),
            ("get", "/api/v1/jobs/smuggled", []),
        ]:
            body = _JOB if method == "put" else b""
            raw = request(method, path, AUTH, f"Content-Type: {JSONAPI}", *extra, body=body)
            code = await assert_refused_alone(live.host, live.port, raw, 501)
            assert code == "not_implemented", (method, code)
        job = (await client.get("/api/v1/jobs/smuggled")).json()["data"]
        assert job["attributes"]["version"] == 1
        assert (await client.get("/api/v1/runs")).json()["data"] == []
        # the same in capitals is served as ever
        assert (await client.delete("/api/v1/jobs/smuggled")).status_code == 204


async def test_an_encoded_slash_in_a_path_is_404_and_does_nothing(tmp_path: Path) -> None:
    # `%2F` is a slash inside one segment (RFC 3986), which no id can hold; but
    # hypercorn decoded it before routing, so these ran, replaced and deleted
    # job `smuggled` past a proxy filtering on the path as sent.
    async with serving_daemon(tmp_path) as live, live.client() as client:
        assert (await client.post("/api/v1/jobs", json=json.loads(_JOB))).status_code == 201
        for method, path in [
            ("POST", "/api/v1/jobs/smuggled%2Factions%2Frun"),
            ("POST", "/api/v1/jobs/smuggled/actions%2frun"),
            ("POST", "/api/v1/jobs%2Fsmuggled/actions/run"),
            ("PUT", "/api/v1/jobs%2Fsmuggled"),
            ("DELETE", "/api/v1/jobs/smuggled%2F"),
            ("DELETE", "/api/v1%2Fjobs/smuggled"),
            ("GET", "/api%2Fv1/jobs/smuggled"),
        ]:
            body = _JOB if method == "PUT" else b""
            length = f"Content-Length: {len(body)}"
            raw = request(method, path, AUTH, f"Content-Type: {JSONAPI}", length, body=body)
            code = await assert_refused_alone(live.host, live.port, raw, 404)
            assert code == "not_found", (method, path, code)
        job = (await client.get("/api/v1/jobs/smuggled")).json()["data"]
        assert job["attributes"]["version"] == 1
        assert (await client.get("/api/v1/runs")).json()["data"] == []
