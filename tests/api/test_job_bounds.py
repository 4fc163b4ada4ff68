"""The bounds on one job, and the names and hosts refused up front.

Pure tests of `jobsd.api.fields` through the document parser: the header
count and the configuration's total size admit the largest legitimate job and
refuse one step past it; jobsd's own `X-Jobsd-*` names are refused in any
case; a host that reads as an IPv4 address is accepted only as a canonical
dotted quad, checked against `ipaddress` (which takes only that form) as the
oracle; and a document full of problems gets a bounded answer.
"""

from __future__ import annotations

import ipaddress
import json
import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsd.api.doc_reader import MAX_ERRORS
from jobsd.job_bounds import MAX_CONFIGURATION_BYTES, MAX_HEADERS
from jobsd.job_model import Header, HttpConfig
from jobsd.urls import numeric_host_problem, url_problem
from tests.api.test_documents import CONF, MiB, doc, errors_of, parse, pem, refusal

H = f"{CONF}/headers"


def headers(n: int, value_bytes: int = 1) -> list[dict[str, str]]:
    return [{"name": f"X-H{i:03d}", "value": "v" * value_bytes} for i in range(n)]


# -- how many headers ----------------------------------------------------------------


def test_sixty_four_headers_are_accepted_and_sixty_five_refused_once() -> None:
    assert len(parse(doc(config={"headers": headers(MAX_HEADERS)})).config.headers) == 64
    err = refusal(doc(config={"headers": headers(MAX_HEADERS + 1)}))
    assert [(i.pointer, i.code) for i in err.items] == [(H, "too_many_headers")]
    assert "65 headers" in err.items[0].detail and "64" in err.items[0].detail


def test_sixty_thousand_bad_headers_are_one_error_not_sixty_thousand() -> None:
    flood = [{"name": "bad name", "value": "\r"}] * 60_000
    err = refusal(doc(config={"headers": flood}))
    assert [(i.pointer, i.code) for i in err.items] == [(H, "too_many_headers")]


# -- the configuration's total size ------------------------------------------------------


def largest_legitimate(extra: int = 0) -> dict[str, Any]:
    """A full body, a ~64 KiB CA bundle, a 2048-character URL, and 64 headers
    sharing what is left of the limit, plus `extra` bytes."""
    bundle = pem("bound") * (65536 // len(pem("bound")))
    url = "https://x.test/" + "a" * 2033
    room = MAX_CONFIGURATION_BYTES - MiB - len(bundle) - len(url) + extra
    names = [f"X-H{i:03d}" for i in range(MAX_HEADERS)]
    room -= sum(len(n) for n in names)
    values = [room // MAX_HEADERS + (1 if i < room % MAX_HEADERS else 0) for i in range(64)]
    assert max(values) <= 8192
    return {
        "url": url,
        "body": "b" * MiB,
        "ca_cert": bundle,
        "headers": [
            {"name": n, "value": "v" * size} for n, size in zip(names, values, strict=True)
        ],
    }


def test_the_largest_legitimate_configuration_is_accepted_at_exactly_the_limit() -> None:
    config = parse(doc(config=largest_legitimate())).config
    assert len(config.body or "") == MiB and len(config.headers) == MAX_HEADERS
    sizes = len(config.url) + len(config.body or "") + len(config.ca_cert or "")
    sizes += sum(len(h.name) + len(h.value) for h in config.headers)
    assert sizes == MAX_CONFIGURATION_BYTES


def test_one_byte_more_is_refused_at_the_configuration_with_its_parts() -> None:
    err = refusal(doc(config=largest_legitimate(extra=1)))
    assert [(i.pointer, i.code) for i in err.items] == [(CONF, "configuration_too_large")]
    detail = err.items[0].detail
    assert f"is {MAX_CONFIGURATION_BYTES + 1} bytes" in detail and "body 1048576" in detail


def test_a_full_body_and_bundle_still_admit_23_headers_at_their_maximum() -> None:
    config = largest_legitimate()
    config["headers"] = headers(23, 8192)
    assert len(parse(doc(config=config)).config.headers) == 23
    config["headers"] = headers(24, 8192)
    assert errors_of(doc(config=config)) == {(CONF, "configuration_too_large")}


def test_size_counts_utf8_bytes_not_characters() -> None:
    body = "é" * (MiB // 2)  # 1 MiB as UTF-8, half that in characters
    config = {"body": body, "headers": headers(40, 8192)}
    assert errors_of(doc(config=config)) == {(CONF, "configuration_too_large")}
    assert parse(doc(config={"body": body, "headers": headers(20, 8192)}))


def test_http_config_knows_its_own_size_without_the_parser() -> None:
    from jobsd.job_bounds import configuration_bytes

    config = HttpConfig(url="https://é.test/", headers=(Header("A", "bc"),), body="é", ca_cert="x")
    assert configuration_bytes(config) == {"body": 2, "headers": 3, "ca_cert": 1, "url": 16}


# -- jobsd's own header names ----------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "X-Jobsd-Run-Id",
        "x-jobsd-run-id",
        "X-JOBSD-JOB",
        "X-Jobsd-Scheduled-For",
        "x-JobSD-anything",
    ],
)
def test_own_header_names_are_refused_in_any_case(name: str) -> None:
    d = doc(config={"headers": [{"name": "X-Ok", "value": "1"}, {"name": name, "value": "x"}]})
    err = refusal(d)
    assert [(i.pointer, i.code) for i in err.items] == [(f"{H}/1/name", "invalid_header")]
    assert "X-Jobsd-" in err.items[0].detail


@pytest.mark.parametrize("name", ["X-Jobsd", "X-Jobsdx-Run-Id", "X-My-Jobsd-Run-Id", "Jobsd-Run"])
def test_names_that_only_resemble_them_are_accepted(name: str) -> None:
    assert parse(doc(config={"headers": [{"name": name, "value": "x"}]})).config.headers


def test_a_stored_job_that_holds_one_never_sends_it_twice() -> None:
    """A job stored before the rule: the run's own stamp wins."""
    config = HttpConfig(
        url="https://x.test/",
        headers=(Header("X-Api-Key", "k"), Header("x-jobsd-run-id", "forged"), Header("B", "b")),
    )
    assert [h.name for h in config.job_headers()] == ["X-Api-Key", "B"]


# -- numeric hosts -------------------------------------------------------------------------

NOT_CANONICAL = [
    "0177.0.0.1",  # octal
    "127.000.000.001",  # zero-padded
    "127.0.0.01",
    "010.0.0.1",
    "00.0.0.0",
    "0x7f.1",  # hex, short
    "0x7f.0.0.1",
    "0X7F.0.0.1",
    "127.0.0.0x1",
    "127.1",  # short
    "127.0.1",
    "2130706433",  # one number
    "0",
    "0x",
    "0x7f000001",
    "127.0.0.1.",  # trailing dot
    "1.2.3.4.5",
    "256.0.0.1",
    "1.2.3.999",
    "example.123",  # a name cannot end in a number label
    "a.b.0x1f",
]
CANONICAL = ["127.0.0.1", "0.0.0.0", "255.255.255.255", "192.0.2.10", "10.20.30.40"]
NAMES = ["example.com", "example.com.", "1.2.3.4.example.com", "0x7f.example", "123abc", "a0x1"]


@pytest.mark.parametrize("host", NOT_CANONICAL)
def test_numeric_hosts_that_are_not_dotted_quads_are_refused(host: str) -> None:
    d = doc(config={"url": f"http://{host}:8080/hook"})
    err = refusal(d)
    assert [(i.pointer, i.code) for i in err.items] == [(f"{CONF}/url", "invalid_url")]
    assert "four decimal numbers" in err.items[0].detail and host in err.items[0].detail


@pytest.mark.parametrize("host", CANONICAL + NAMES)
def test_dotted_quads_and_names_are_accepted(host: str) -> None:
    assert parse(doc(config={"url": f"https://{host}/"})).config.url == f"https://{host}/"


def test_full_width_digits_are_refused_as_the_sender_refuses_them() -> None:
    # IDNA 2003 mapped them to ASCII digits ("0177.0.0.1", "127.0.0.1"); the
    # request is sent with IDNA 2008 (jobsd.http_url), which refuses them, so
    # the API does too (tests/test_url_agreement.py): no numeric form slips by.
    assert url_problem("http://\uff10\uff11\uff17\uff17.0.0.1/") is not None  # "0177.0.0.1"
    assert url_problem("http://\uff11\uff12\uff17.0.0.1/") is not None  # "127.0.0.1"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://user:pw@x.test/", "user name or password"),
        ("https:///path", "absolute http:// or https:// URL with a host"),
        ("http://x.test:000080/", "port that is not a number 1-65535"),
        ("http://x.test:65536/", "port that is not a number 1-65535"),
        ("http://" + ("a" * 63 + ".") * 3 + "a" * 63 + "/", "malformed host name"),  # 255
        ("http://" + ("a" * 63 + ".") * 3 + "a" * 62 + "/", "malformed host name"),  # 254
    ],
)
def test_a_url_is_refused_for_what_is_wrong_with_it(url: str, words: str) -> None:
    assert words in (url_problem(url) or "")


def test_the_longest_host_name_is_accepted() -> None:
    assert url_problem("http://" + ("a" * 63 + ".") * 3 + "a" * 61 + "./") is None  # 253


def oracle_accepts(host: str) -> bool:
    """Python's strict parser takes only the canonical dotted quad."""
    last = host.removesuffix(".").rsplit(".", 1)[-1]
    hexadecimal = last[:2].lower() == "0x" and all(c in string.hexdigits for c in last[2:])
    numeric = last.isdigit() or hexadecimal
    if not numeric:
        return True
    try:
        return str(ipaddress.IPv4Address(host)) == host
    except ValueError:
        return False


octet_forms = st.one_of(
    st.integers(0, 255).map(str),
    st.integers(0, 255).map(lambda n: f"0{n:o}"),
    st.integers(0, 255).map(lambda n: f"0x{n:x}"),
    st.integers(0, 255).map(lambda n: f"{n:03d}"),
    st.integers(256, 99999).map(str),
    st.sampled_from(["", "a", "0x", "1a", "x1"]),
)
numeric_hosts = st.one_of(
    st.lists(octet_forms, min_size=1, max_size=6).map(".".join),
    st.lists(octet_forms, min_size=1, max_size=5).map(lambda parts: ".".join(parts) + "."),
    st.integers(0, 2**32 + 5).map(str),
    st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n))),
)


@settings(max_examples=300, deadline=None)
@given(numeric_hosts)
def test_numeric_hosts_follow_the_strict_parser(host: str) -> None:
    if url_problem(f"http://{host}/") is not None and numeric_host_problem(host) is None:
        return  # malformed for another reason (an empty label)
    assert (numeric_host_problem(host) is None) == oracle_accepts(host), host


# -- the answer to a document full of problems stays small --------------------------------


def test_errors_past_the_cap_are_counted_in_one_last_item() -> None:
    config: dict[str, Any] = {f"k{i}": 0 for i in range(200_000)}
    err = refusal(doc(config=config))
    assert len(err.items) == MAX_ERRORS + 1
    assert err.items[-1].code == "too_many_errors"
    assert f"{200_000 - MAX_ERRORS} more problems" in err.items[-1].detail
    assert len(json.dumps([i.to_json() for i in err.items])) < 64 * 1024


def test_exactly_the_cap_lists_every_error() -> None:
    err = refusal(doc(config={f"k{i}": 0 for i in range(MAX_ERRORS)}))
    assert len(err.items) == MAX_ERRORS
    assert all(i.code == "unknown_field" for i in err.items)


@pytest.mark.parametrize(
    ("version", "bound"), [("2026-06-04", "maxItems"), ("2026-08-07", "maxProperties")]
)
def test_the_served_spec_states_the_bounds(version: str, bound: str) -> None:
    from jobsd.api.spec import served_spec

    served = json.loads(served_spec(version))
    config = served["components"]["schemas"]["JobHttpConfiguration"]
    assert config["properties"]["headers"][bound] == MAX_HEADERS
    assert "X-Jobsd-" in config["properties"]["headers"]["description"]
    assert str(MAX_CONFIGURATION_BYTES) in config["description"]
