"""A job's URL as the HTTP/1.1 exchange needs it: where to dial, what to send.

The rules are httpx's (the client jobsd used before `jobsd.http1`), so a
target sees byte for byte the request line and Host it saw before: scheme
and ASCII host lower-cased, a non-ASCII host IDNA-encoded (IDNA 2008, the
`idna` package, as httpx did), the default port left out of Host, IPv6
literals bracketed in Host and bare for dialling, `.` and `..` segments
removed, characters outside the path and query sets percent-encoded as
UTF-8 (an existing `%xx` kept), the fragment dropped, an empty path sent
as `/`. `tests/test_http_url.py` checks this against httpx2's parser.

Pure: no I/O. Parsed URLs are cached (bounded): a job fires the same URL
run after run, and parsing is the one costly step left before the dial.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache

import idna

MAX_URL_LENGTH = 65536
PARSED_URLS_KEPT = 4096

_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_SUB_DELIMS = "!$&'()*+,;="
_PRINTABLE = [chr(i) for i in range(0x20, 0x7F)]
_QUERY_SAFE = _UNRESERVED + "".join(c for c in _PRINTABLE if c not in ' "#<>')
_PATH_SAFE = _UNRESERVED + "".join(c for c in _PRINTABLE if c not in ' "#<>?`{}')
_HOST_SAFE = _UNRESERVED + _SUB_DELIMS + '"`{}%|\\'
_URL = re.compile(
    r"(?:(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*):)?"
    r"(?://(?P<authority>[^/?#]*))?"
    r"(?P<path>[^?#]*)"
    r"(?:\?(?P<query>[^#]*))?"
    r"(?:#.*)?",
    re.DOTALL,
)
_AUTHORITY = re.compile(r"(?:.*@)?(?P<host>\[.*\]|[^:@]*):?(?P<port>.*)?", re.DOTALL)
_IPV4_STYLE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class InvalidURL(ValueError):
    """The URL cannot be sent; the message says why, in httpx's words."""


@dataclass(frozen=True, slots=True)
class Target:
    tls: bool
    host: str  # to resolve, to name in SNI and to check the certificate against
    port: int
    authority: str  # the Host header
    target: str  # the request line's target: path and query


@lru_cache(maxsize=PARSED_URLS_KEPT)
def parse(url: str) -> Target:
    """Raises InvalidURL."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidURL("URL too long")
    for index, char in enumerate(url):
        if char.isascii() and not char.isprintable():
            raise InvalidURL(
                f"Invalid non-printable ASCII character in URL, {char!r} at position {index}."
            )
    match = _URL.fullmatch(url)
    assert match is not None  # every part is optional
    scheme = (match["scheme"] or "").lower()
    if scheme not in _DEFAULT_PORTS:
        if not scheme:
            raise InvalidURL("Request URL is missing an 'http://' or 'https://' protocol.")
        raise InvalidURL(f"Request URL has an unsupported protocol '{scheme}://'.")
    authority = _AUTHORITY.fullmatch(match["authority"] or "")
    assert authority is not None
    host, bracketed = _host(authority["host"] or "")
    if not host:
        raise InvalidURL("Request URL is missing a host.")
    port = _port(authority["port"], scheme)
    path = match["path"]
    if path and not path.startswith("/"):
        raise InvalidURL("For absolute URLs, path must be empty or begin with '/'")
    target = _quote(_remove_dots(path), _PATH_SAFE) or "/"
    if match["query"] is not None:
        target += "?" + _quote(match["query"], _QUERY_SAFE)
    shown = f"[{host}]" if bracketed else host
    if port != _DEFAULT_PORTS[scheme]:
        shown = f"{shown}:{port}"
    return Target(scheme == "https", host, port, shown, target)


def _host(host: str) -> tuple[str, bool]:
    """(the host to dial, whether Host shows it bracketed)."""
    if _IPV4_STYLE.fullmatch(host):
        try:
            ipaddress.IPv4Address(host)
        except ipaddress.AddressValueError:
            raise InvalidURL(f"Invalid IPv4 address: {host!r}") from None
        return host, False
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ipaddress.AddressValueError:
            raise InvalidURL(f"Invalid IPv6 address: {host!r}") from None
        return host[1:-1], True
    if host.isascii():
        return _quote(host.lower(), _HOST_SAFE), False
    try:
        return idna_host(host), False
    except idna.IDNAError:
        raise InvalidURL(f"Invalid IDNA hostname: {host!r}") from None


def idna_host(host: str) -> str:
    """A non-ASCII host name as sent (IDNA 2008, as httpx encoded it); raises
    `idna.IDNAError`. The API judges a job's URL by this too (`jobsd.urls`)."""
    return idna.encode(host.lower()).decode("ascii")


def _port(text: str | None, scheme: str) -> int:
    if not text:
        return _DEFAULT_PORTS[scheme]
    if not text.isdigit() or not 0 < int(text) <= 65535:
        raise InvalidURL(f"Invalid port: {text!r}")
    return int(text)


def _remove_dots(path: str) -> str:
    """RFC 3986 5.2.4, as httpx applies it."""
    if "." not in path:
        return path
    segments = path.split("/")
    if "." not in segments and ".." not in segments:
        return path
    kept: list[str] = []
    for segment in segments:
        if segment == ".":
            continue
        if segment == "..":
            if kept and kept != [""]:
                kept.pop()
        else:
            kept.append(segment)
    return "/".join(kept)


def _quote(text: str, safe: str) -> str:
    """Every character outside `safe` as UTF-8 `%XX`; `%` is in every safe set
    used here, so an existing escape is kept as it is."""
    if not text.rstrip(safe):
        return text
    return "".join(c if c in safe else "".join(f"%{b:02X}" for b in c.encode()) for c in text)
