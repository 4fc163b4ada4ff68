"""A job's URL as sent (`jobsd.http_url`): httpx's rules, checked against httpx2 itself.

httpx2 built every request before `jobsd.http1`; it stays installed for the
tests, so it is the oracle: for any URL, both refuse it, or both give the
same address to dial, `Host` and request target.
"""

from __future__ import annotations

import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsd.http_url import InvalidURL, Target, parse


@pytest.mark.parametrize(
    ("url", "target"),
    [
        (
            "http://Example.TEST/a/./b/../c?q=1#frag",
            Target(False, "example.test", 80, "example.test", "/a/c?q=1"),
        ),
        ("https://x.test:443", Target(True, "x.test", 443, "x.test", "/")),
        ("https://x.test:8443/?", Target(True, "x.test", 8443, "x.test:8443", "/?")),
        ("http://[::1]:8080/p", Target(False, "::1", 8080, "[::1]:8080", "/p")),
        ("http://[2001:db8::1]/", Target(False, "2001:db8::1", 80, "[2001:db8::1]", "/")),
        (
            "http://bücher.test/ä b?x=ü y",
            Target(
                False, "xn--bcher-kva.test", 80, "xn--bcher-kva.test", "/%C3%A4%20b?x=%C3%BC%20y"
            ),
        ),
        ("http://x.test/%41%zz?%2F", Target(False, "x.test", 80, "x.test", "/%41%zz?%2F")),
        # `..` above the root stays at the root: the target keeps its leading `/`.
        ("http://x.test/../a", Target(False, "x.test", 80, "x.test", "/a")),
    ],
)
def test_what_is_dialled_and_sent(url: str, target: Target) -> None:
    assert parse(url) == target


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://x.test/", "Request URL has an unsupported protocol 'ftp://'."),
        ("//x.test/", "Request URL is missing an 'http://' or 'https://' protocol."),
        ("http:///x", "Request URL is missing a host."),
        ("http://x.test:99999/", "Invalid port: '99999'"),
        ("http://x.test:0/", "Invalid port: '0'"),
        ("http://x.test:65536/", "Invalid port: '65536'"),
        ("http://x.test:8o/", "Invalid port: '8o'"),
        ("http://256.1.1.1/", "Invalid IPv4 address: '256.1.1.1'"),
        ("http://[::g]/", "Invalid IPv6 address: '[::g]'"),
        (
            "http://x.test/a\r\nHost: evil",
            "Invalid non-printable ASCII character in URL, '\\r' at position 15.",
        ),
        (
            "http://x.test/a\tb",
            "Invalid non-printable ASCII character in URL, '\\t' at position 15.",
        ),
        ("http://x.test/" + "a" * (65537 - len("http://x.test/")), "URL too long"),
    ],
)
def test_what_is_refused_and_why(url: str, reason: str) -> None:
    with pytest.raises(InvalidURL) as raised:
        parse(url)
    assert str(raised.value) == reason


LABEL = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,10}", fullmatch=True)
HOSTS = st.one_of(
    st.lists(LABEL, min_size=1, max_size=4).map(".".join),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"),
    st.sampled_from(["bücher.test", "ÉCOLE.fr", "пример.рф", "a.例え.jp"]),
)
TEXT = st.lists(
    st.one_of(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E),
        st.sampled_from(["é", "☕", "/", ".", "..", "/../", "/./", "%", "%2f", "%zz", " "]),
    ),
    max_size=30,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(
    scheme=st.sampled_from(["http", "https", "HTTP", "Https"]),
    host=HOSTS,
    port=st.one_of(
        st.none(), st.integers(min_value=1, max_value=65535), st.sampled_from([80, 443])
    ),
    rest=TEXT,
)
def test_the_same_as_httpx(scheme: str, host: str, port: int | None, rest: str) -> None:
    url = f"{scheme}://{host}{'' if port is None else f':{port}'}/{rest}"
    try:
        theirs = httpx2.URL(url)
    except httpx2.InvalidURL:
        with pytest.raises(InvalidURL):
            parse(url)
        return
    ours = parse(url)
    assert ours.tls is (theirs.scheme == "https")
    assert ours.host == theirs.raw_host.decode("ascii")
    assert ours.port == (theirs.port or (443 if ours.tls else 80))
    # httpx's one quirk: an upper-case scheme keeps its default port in Host.
    default = f":{443 if ours.tls else 80}"
    assert ours.authority == theirs.netloc.decode("ascii").removesuffix(default)
    assert ours.target == theirs.raw_path.decode("ascii")
