"""Field rules for job documents: the checks that are grammar, not policy.

Slugs, RFC 9110 header tokens and values, success statuses, URLs and PEM
certificate bundles, and the bounds on one job's size. Split from
`documents.py`, which walks a document and collects errors; these answer "is
this one value acceptable, and if not, why", so each can be tested alone and
every API version's parser applies the same rules.

Bounds where the spec sets none (README, "Decisions"): at most `MAX_HEADERS`
headers, and the configuration's strings together at most
`MAX_CONFIGURATION_BYTES` as UTF-8. They keep one job, and so one row of a
listing, cheap: 60,000 headers once cost a second of the single writer per
create and gigabytes to list.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from jobsd.messages import OWN_HEADER_PREFIX, HttpConfig

MAX_HEADERS = 64
# A 1 MiB body, a 64 KiB CA bundle and a 2 KiB URL leave 190 KiB for headers:
# 64 of 3 KiB, or 23 at the 8 KiB maximum, several times the whole request
# head that common servers accept (nginx 32 KiB, Node.js 16 KiB).
MAX_CONFIGURATION_BYTES = 1280 * 1024
REFUSED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})

SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")
SURROGATE = re.compile("[\ud800-\udfff]")
TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
TOKEN_RULE = (
    "A header name is an RFC 9110 token: letters, digits and !#$%&'*+-.^_`|~ only,"
    " no spaces or colons."
)
FIELD_VALUE = re.compile(r"(?:[\x21-\x7e](?:[\t\x20-\x7e]*[\x21-\x7e])?)?")
FIELD_VALUE_RULE = (
    "A header value is printable ASCII with inner spaces or tabs: no CR, LF, NUL or other"
    " control characters, no non-ASCII, no leading or trailing space."
)


def header_name_problem(name: str) -> str | None:
    """Why a job may not send a header of this name; None when it may."""
    if not TOKEN.fullmatch(name):
        return TOKEN_RULE
    if name.lower() in REFUSED_HEADERS:
        return f"{name} is set by jobsd itself; remove it."
    if name.lower().startswith(OWN_HEADER_PREFIX.lower()):
        return (
            f"Names starting with {OWN_HEADER_PREFIX} are jobsd's own (it stamps"
            f" {OWN_HEADER_PREFIX}Run-Id and others on every request); choose another name."
        )
    return None


def configuration_bytes(config: HttpConfig) -> dict[str, int]:
    """The UTF-8 size of each variable-length part of a configuration."""

    def size(text: str | None) -> int:
        return 0 if text is None else len(text.encode("utf-8", "surrogatepass"))

    return {
        "body": size(config.body),
        "headers": sum(size(h.name) + size(h.value) for h in config.headers),
        "ca_cert": size(config.ca_cert),
        "url": size(config.url),
    }


def configuration_size_problem(config: HttpConfig) -> str | None:
    parts = configuration_bytes(config)
    total = sum(parts.values())
    if total <= MAX_CONFIGURATION_BYTES:
        return None
    shares = ", ".join(f"{name} {n}" for name, n in parts.items() if n)
    return (
        f"The configuration is {total} bytes as UTF-8 ({shares}); the limit for url, header"
        f" names and values, ca_cert and body together is {MAX_CONFIGURATION_BYTES} bytes."
    )


SUCCESS_STATUS = re.compile(r"[1-5](?:[0-9][0-9]|xx)")
_HOST = re.compile(r"[A-Za-z0-9_-]{1,63}(?:\.[A-Za-z0-9_-]{1,63})*\.?")
_PORT = re.compile(r"[0-9]{1,5}")
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})


def url_problem(url: str) -> str | None:
    if any(unicodedata.category(c) in _INVISIBLE for c in url):
        return "must not contain spaces, control or invisible characters; percent-encode them"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "is not a well-formed URL"
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "must be an absolute http:// or https:// URL with a host"
    if "@" in parts.netloc:
        return "must not carry a user name or password (user:pass@); send them in a header"
    if parts.netloc.startswith("["):
        host, _, rest = parts.netloc[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
        if "%" in host or not _is_ipv6(host) or (rest and port is None):
            return "has a malformed IPv6 address; write it like http://[2001:db8::1]:8080/"
    else:
        host, colon, port_text = parts.netloc.partition(":")
        port = port_text if colon else None
        if not host.isascii():
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                return "has a host name that is not a valid international domain name"
        if not _HOST.fullmatch(host) or len(host.rstrip(".")) > 253:
            return "has a malformed host name"
        if problem := numeric_host_problem(host):
            return problem
    if port is not None and not (_PORT.fullmatch(port) and 1 <= int(port) <= 65535):
        return "has a port that is not a number 1-65535"
    return None


_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_QUAD = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def numeric_host_problem(host: str) -> str | None:
    """Why a host that reads as an IPv4 address is refused; None for names and 1.2.3.4.

    A host whose last label is a number is an address to the WHATWG URL
    parser and to inet_aton, which read `0177.0.0.1` as octal, `0x7f.1` as
    hex, and `127.1` or `2130706433` as shorthand; other software reads the
    same text as decimal or as a name. Only the one form everyone reads
    alike is accepted: four decimal numbers 0-255 without leading zeros.
    """
    last = host.removesuffix(".").rsplit(".", 1)[-1]
    if not _NUMERIC_LABEL.fullmatch(last) or _DOTTED_QUAD.fullmatch(host):
        return None
    return (
        f"has the host {host}, which reads as an IPv4 address but is not written as four"
        " decimal numbers 0-255 without leading zeros or a trailing dot (octal, hex,"
        " shortened and single-number forms are read differently by different software);"
        " write it like 192.0.2.10"
    )


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


_BEGIN, _END = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
_SPACE = re.compile(r"\s*", re.ASCII)
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+", re.ASCII)
_OTHER_LABEL = re.compile(r"-----BEGIN ([A-Z0-9 ]{1,40})-----")


def reencode_certificates(text: str) -> tuple[str | None, str | None]:
    """(every block re-encoded, None) or (None, the problem).

    Re-encoding is what guarantees that nothing but certificates is stored:
    OpenSSL would silently skip a pasted private key (OUTBOUND.md).
    """
    pems: list[str] = []
    pos = _skip_space(text, 0)
    while pos < len(text):
        n = len(pems) + 1
        if not text.startswith(_BEGIN, pos):
            if other := _OTHER_LABEL.match(text, pos):
                return None, f"block {n} is a {other[1]}; only CERTIFICATE blocks are accepted"
            return None, f"has text outside the certificate blocks (before block {n})"
        end = text.find(_END, pos)
        if end < 0:
            return None, f"block {n} has no {_END} line"
        body = text[pos + len(_BEGIN) : end]
        if not _BASE64.fullmatch(body):
            return None, f"block {n} is not base64 between its BEGIN and END lines"
        try:
            cert = x509.load_pem_x509_certificate(f"{_BEGIN}{body}{_END}\n".encode("ascii"))
        except ValueError:
            return None, f"block {n} is not a parseable X.509 certificate"
        pems.append(cert.public_bytes(Encoding.PEM).decode("ascii"))
        pos = _skip_space(text, end + len(_END))
    if not pems:
        return None, f"must hold one or more {_BEGIN} blocks"
    return "".join(pems), None


def _skip_space(text: str, pos: int) -> int:
    match = _SPACE.match(text, pos)
    return pos if match is None else match.end()
