"""`jobsd.request_head` writes a plain request's bytes itself: byte for byte
what h11 writes, refusing exactly what h11 refuses, and leaving the h11
connection that reads the response in the state the real request would
have (so a HEAD's, a kept and a closing connection's responses read the same)."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsd import http1, request_head
from jobsd.http_url import parse

TOKEN = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "QUERY", "G(T", "PO ST"]
names = st.one_of(
    st.text(TOKEN, min_size=1, max_size=12),
    st.text(TOKEN + " :\r\n\x00é", min_size=0, max_size=8),  # some not a token
)
values = st.one_of(
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20),
    st.text(max_size=12),  # control characters, white space at an end, non-ASCII
)
header_lists = st.lists(st.tuples(names, values), max_size=8).filter(
    lambda hs: request_head.closes("GET", hs) is not None
)
targets = st.sampled_from(["/", "/hook?x=1", "/a%20b", "/é", "/a b", "/\r\nX: 1"])


def by_h11(method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    """What h11 writes for the request (the path every request took before)."""
    lines = [(n.encode(), v.encode()) for n, v in headers]
    first = [(b"Host", b"127.0.0.1:8080")]
    if not body and method in request_head.BODY_EXPECTED:
        first.append((b"Content-Length", b"0"))
    if body:
        lines.append((b"Content-Length", str(len(body)).encode()))
    conn = h11.Connection(h11.CLIENT)
    data = conn.send(h11.Request(method=method, target=target, headers=first + lines)) or b""
    if body:
        data += conn.send(h11.Data(data=body)) or b""
    return data + (conn.send(h11.EndOfMessage()) or b"")


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(METHODS), targets, header_lists, st.binary(max_size=16))
def test_a_plain_request_is_written_as_h11_writes_it_and_refused_where_h11_refuses(
    method: str, target: str, headers: list[tuple[str, str]], body: bytes
) -> None:
    try:
        expected: bytes | None = by_h11(method, target, headers, body)
    except (h11.LocalProtocolError, UnicodeEncodeError):
        expected = None  # h11 refuses it (a non-ASCII method or target: its bytesify)
    try:
        got: bytes | None = request_head.head_and_body(
            method, target, "127.0.0.1:8080", headers, body
        )
    except request_head.HeaderRefused as exc:
        got = None
        # One of four fixed messages, naming a header at most: never showing a value.
        fixed = {
            "the method is not allowed in HTTP/1.1",
            "the request target is not allowed in HTTP/1.1",
            "a header name is not allowed in HTTP/1.1 (not shown)",
        } | {f"the value of header {n} is not allowed in HTTP/1.1 (not shown)" for n, _ in headers}
        assert str(exc) in fixed
    if expected is None and got is not None:
        # Where h11 refused only for its ASCII-only str encoding, the UTF-8 bytes
        # are no more than HTTP/1.1's obs-text, which h11 itself allows as bytes.
        assert not (method + target).isascii()
        assert all(n.isascii() for n, _ in headers)
        return
    assert got == expected


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
@pytest.mark.parametrize("close", [True, False])
def test_the_connection_is_left_as_the_real_request_would_leave_it(
    method: str, close: bool
) -> None:
    headers = [("Accept", "*/*")] + ([("Connection", "close")] if close else [])
    headers.append(("X-Key", "v"))
    real = h11.Connection(h11.CLIENT)
    http1.request_bytes(real, method, parse("http://127.0.0.1:8080/x"), headers, b"{}")
    assert request_head.closes(method, headers) is close  # the path under test
    reference = h11.Connection(h11.CLIENT)
    reference.send(h11.Request(method=method, target="/x", headers=[("Host", "a"), *headers]))
    reference.send(h11.EndOfMessage())
    assert real.states == reference.states
    # A HEAD's response has no body, whatever its Content-Length says.
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
    response += b"" if method == "HEAD" else b"abc"
    events: list[list[type]] = [[], []]
    for conn, seen in zip((real, reference), events, strict=True):
        conn.receive_data(response)
        while not seen or seen[-1] is not h11.EndOfMessage:
            seen.append(type(conn.next_event()))
    assert events[0] == events[1]
    assert events[0][1] is (h11.EndOfMessage if method == "HEAD" else h11.Data)
    assert real.states == reference.states
    assert http1.reusable(real) is (not close)


@pytest.mark.parametrize(
    "headers",
    [
        [("Upgrade", "websocket"), ("Connection", "upgrade")],
        [("Expect", "100-continue")],
        [("Host", "other")],
        [("Transfer-Encoding", "chunked")],
        [("Content-Length", "2")],
        [("Connection", "keep-alive")],
    ],
)
def test_a_request_h11_must_see_whole_takes_h11s_path(headers: list[tuple[str, str]]) -> None:
    assert request_head.closes("POST", headers) is None


def test_connect_takes_h11s_path() -> None:
    assert request_head.closes("CONNECT", []) is None


# -- edges that mutation testing found unpinned --------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "QUERY", "GET", "DELETE"])
def test_an_empty_body_is_framed_where_the_method_defines_content(method: str) -> None:
    written = request_head.head_and_body(method, "/", "h", [], b"")
    framed = method in ("POST", "PUT", "PATCH", "QUERY")
    assert (b"\r\nContent-Length: 0\r\n" in written) == framed


@pytest.mark.parametrize(
    ("host", "headers"),
    [("h\r\nX-Injected: 1", []), ("h", [("X-A", "a\x00b")]), ("h\x00", [])],
)
def test_a_nul_or_a_line_break_in_the_host_or_a_value_is_refused(
    host: str, headers: list[tuple[str, str]]
) -> None:
    with pytest.raises(request_head.HeaderRefused):
        request_head.head_and_body("GET", "/", host, headers, b"")


def test_a_long_body_is_framed_by_its_whole_length() -> None:
    written = request_head.head_and_body("POST", "/", "h", [], b"x" * 70_000)
    assert written.endswith(b"Content-Length: 70000\r\n\r\n" + b"x" * 70_000)
