"""Field rules for job documents: the checks that are grammar, not policy.

Slugs, RFC 9110 header tokens and values, success statuses and PEM
certificate bundles (URLs: `jobsd.urls`), and the bounds on one job's size. Split from
`documents.py`, which walks a document and collects errors; these answer "is
this one value acceptable, and if not, why", so each can be tested alone and
every API version's parser applies the same rules.

The bounds on one job's size, which the store also applies to what it
merges, live in `jobsd.job_bounds`.
"""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from jobsd.job_model import OWN_HEADER_PREFIX

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


SUCCESS_STATUS = re.compile(r"[1-5](?:[0-9][0-9]|xx)")
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
