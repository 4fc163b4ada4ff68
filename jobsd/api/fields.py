"""Field rules for job documents: the checks that are grammar, not policy.

Slugs, RFC 9110 header tokens and values, success statuses, URLs and PEM
certificate bundles. Split from `documents.py`, which walks a document and
collects errors; these answer "is this one string acceptable, and if not,
why" for a single value, so each can be tested alone.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

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
    if port is not None and not (_PORT.fullmatch(port) and 1 <= int(port) <= 65535):
        return "has a port that is not a number 1-65535"
    return None


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
