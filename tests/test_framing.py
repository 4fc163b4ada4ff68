"""Which request heads are refused before their body is read (jobsd.api.framing)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from jobsd.api.framing import folded, refuse_head, refuse_method


def test_both_lengths_are_refused_whatever_the_order_or_case() -> None:
    for headers in (
        [(b"content-length", b"5"), (b"transfer-encoding", b"chunked")],
        [(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"0")],
    ):
        refusal = refuse_head(b"1.1", headers)
        assert refusal is not None and (refusal.status, refusal.code) == (400, "bad_framing")


def test_transfer_encoding_in_http_1_0_is_refused() -> None:
    refusal = refuse_head(b"1.0", [(b"transfer-encoding", b"chunked")])
    assert refusal is not None and refusal.status == 400
    assert refuse_head(b"1.0", [(b"content-length", b"5")]) is None


def test_only_http_1_is_served() -> None:
    for version in (b"2.0", b"0.9", b"3.0"):
        refusal = refuse_head(version, [])
        assert refusal is not None and refusal.status == 505, version
    for version in (b"1.0", b"1.1", b"1.9"):  # a higher 1.x is served as 1.1 (RFC 9112 §2.3)
        assert refuse_head(version, [(b"host", b"x"), (b"content-length", b"3")]) is None
    assert refuse_head(b"1.1", [(b"transfer-encoding", b"chunked")]) is None


def test_a_fold_is_seen_in_the_head_only() -> None:
    assert folded(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n")
    assert folded(b"GET / HTTP/1.1\r\nTransfer-Encoding:\r\n\tchunked\r\n\r\n")
    assert folded(b"GET / HTTP/1.1\nX-A: a\n b\n\n")  # bare LF, as h11 reads it
    assert folded(b"GET / HTTP/1.1\r\n X-A: a")  # incomplete: a fold seen early is a fold
    assert not folded(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n body\r\n starts with a space")
    assert not folded(b"GET / HTTP/1.1\r\nX-A: a b\t c\r\n\r\n")
    assert not folded(b"")


lines = st.lists(st.text(alphabet=" \tab:", max_size=6).map(str.encode), max_size=6)


@given(head=lines, rest=st.binary(max_size=20), bare_lf=st.booleans())
def test_folded_agrees_with_a_line_by_line_reading(
    head: list[bytes], rest: bytes, bare_lf: bool
) -> None:
    end = b"\n" if bare_lf else b"\r\n"
    lines_ = [b"GET / HTTP/1.1", *(line for line in head if line)]
    raw = end.join(lines_) + end + end + rest
    expected = any(re.match(rb"[ \t]", line) for line in lines_[1:])
    assert folded(raw) == expected, raw


def test_a_method_refused_for_its_case_is_named_only_when_short() -> None:
    short = refuse_method(b"delete")
    assert short is not None and short.status == 501 and "DELETE is" in short.detail
    long = refuse_method(b"a" * 8000)  # h11 takes a method token of any length
    assert long is not None and long.status == 501 and "a" * 25 not in long.detail
    assert refuse_method(b"DELETE") is None


def test_a_method_is_named_up_to_24_characters_and_not_past() -> None:
    at_bound = refuse_method(b"a" * 24)
    assert at_bound is not None and "a" * 24 in at_bound.detail
    past = refuse_method(b"a" * 25)
    assert past is not None and past.status == 501 and "a" * 25 not in past.detail
