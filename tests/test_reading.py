"""`jobsd.reading` alone: the body cap's edge, the header block's encoding, the
double framing sign and the wire bound (mutation testing found them unpinned
by the exchange tests, which reach these only through whole responses)."""

from __future__ import annotations

import h11

from jobsd.reading import INFORMATIONAL_BYTES, MAX_HEAD_BYTES, Reading, wire_bound


def test_a_body_of_exactly_the_cap_is_read_and_one_byte_more_is_capped() -> None:
    reading = Reading(keep_bytes=10, cap_bytes=100)
    assert reading.take(b"x" * 100) and not reading.capped
    assert not reading.take(b"x")
    assert reading.capped and reading.body_bytes == 100


def test_a_utf8_header_block_is_read_as_utf8() -> None:
    reading = Reading(keep_bytes=10, cap_bytes=100)
    reading.start(h11.Response(status_code=200, headers=[("X-Name", "café".encode())]))
    assert reading.headers == {"x-name": "café"}


def test_both_content_length_and_transfer_encoding_is_framed_twice() -> None:
    reading = Reading(keep_bytes=10, cap_bytes=100)
    reading.start(h11.Response(status_code=200, headers=[("Content-Length", "5")]))
    assert not reading.framed_twice()
    reading.headers["transfer-encoding"] = "chunked"
    assert reading.framed_twice()


def test_the_wire_bound_leaves_an_eighth_of_the_cap_for_framing() -> None:
    assert wire_bound(800) == MAX_HEAD_BYTES + INFORMATIONAL_BYTES + 900
