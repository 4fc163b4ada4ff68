"""Standard Webhooks signatures: the secret format, the signature, the key-file lines.

Pure: no I/O, `now` passed in. What is signed and how is fixed by
spec/OPERATIONS.md and the Standard Webhooks spec, so any of its libraries
verifies us: `webhook-id` (the run id; an alert's id for alerts),
`webhook-timestamp` (Unix seconds), and `webhook-signature`, `v1,` + base64
of HMAC-SHA256 over `"{id}.{timestamp}.{body}"` keyed with the bytes the
secret's base64 encodes, one entry per active secret, space-separated.

A secret is `whsec_` + base64 of 32 random bytes (the spec asks for 24 to
64). Each account's secrets live in the key file, one line each:

    signing:acme whsec_...= active
    signing:acme whsec_...= until=2026-06-06T12:00:00Z

`active` signs until it is replaced; a replaced secret keeps signing until
its `until` (the rotation's overlap), then is ignored and dropped at the
next rotation. Rotating again during an overlap drops the older replaced
secret at once, so a request carries at most two signatures.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jobsd.clock import iso
from jobsd.errors import ConfigError
from jobsd.keyfile import KEY, SIGNING_PREFIX, is_comment_or_blank, is_signing_line

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
_MIN_BYTES, _MAX_BYTES = 24, 64
_ACCOUNT = re.compile(r"[a-z0-9_-]{1,64}")
_UNTIL = re.compile(r"until=([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z)")


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode("ascii")


def secret_bytes(secret: str) -> bytes:
    """The HMAC key a `whsec_` secret stands for; ValueError if it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a signing secret starts with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("a signing secret is whsec_ followed by base64") from None
    if not _MIN_BYTES <= len(key) <= _MAX_BYTES:
        raise ValueError(f"a signing secret encodes {_MIN_BYTES}-{_MAX_BYTES} bytes")
    return key


def signature(secret: str, msg_id: str, timestamp_s: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_headers(
    msg_id: str, timestamp_s: int, body: bytes, secrets: Sequence[str]
) -> list[tuple[str, str]]:
    """The three Standard Webhooks headers, signed with every secret in `secrets`."""
    if not secrets:
        raise ValueError("nothing to sign with")
    signatures = " ".join(signature(s, msg_id, timestamp_s, body) for s in secrets)
    return [
        ("webhook-id", msg_id),
        ("webhook-timestamp", str(timestamp_s)),
        ("webhook-signature", signatures),
    ]


@dataclass(frozen=True, slots=True)
class SigningSecret:
    account: str
    secret: str
    until: datetime | None = None  # None: the active one

    def __repr__(self) -> str:  # never print the secret by accident
        return f"SigningSecret(account={self.account!r}, until={self.until!r})"

    def line(self) -> str:
        state = "active" if self.until is None else f"until={iso(self.until)}"
        return f"{SIGNING_PREFIX}{self.account} {self.secret} {state}"


Secrets = Mapping[str, tuple[SigningSecret, ...]]


def parse(text: str, path: Path) -> dict[str, tuple[SigningSecret, ...]]:
    """Every account's secrets from the key file's `signing:` lines, active first."""
    found: dict[str, list[SigningSecret]] = {}
    for line_no, line in enumerate(text.splitlines(), start=1):
        if is_comment_or_blank(line) or not is_signing_line(line):
            continue
        entry = _parse_line(line, f"{path} line {line_no}")
        entries = found.setdefault(entry.account, [])
        if entry.until is None and any(e.until is None for e in entries):
            raise ConfigError(
                KEY, f"{path} line {line_no}: account {entry.account!r} has two active secrets"
            )
        entries.append(entry)
    for account, entries in found.items():
        if not any(e.until is None for e in entries):
            raise ConfigError(KEY, f"{path}: account {account!r} has no active signing secret")
    return {a: tuple(sorted(e, key=_active_first)) for a, e in found.items()}


def _parse_line(line: str, where: str) -> SigningSecret:
    fields = line.split()
    if len(fields) != 3:
        raise ConfigError(KEY, f'{where}: expected "signing:<account> whsec_... active|until=..."')
    account = fields[0].removeprefix(SIGNING_PREFIX)
    if not _ACCOUNT.fullmatch(account):
        raise ConfigError(KEY, f"{where}: the account id is 1-64 of a-z 0-9 - _")
    try:
        secret_bytes(fields[1])
    except ValueError as exc:
        raise ConfigError(KEY, f"{where}: {exc}") from None
    if fields[2] == "active":
        return SigningSecret(account, fields[1])
    match = _UNTIL.fullmatch(fields[2])
    if match is None:
        raise ConfigError(
            KEY, f'{where}: the last field is "active" or "until=YYYY-MM-DDTHH:MM:SSZ"'
        )
    try:
        until = datetime.fromisoformat(match[1].replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(KEY, f"{where}: {match[1]} is not a valid instant") from None
    return SigningSecret(account, fields[1], until)


def _active_first(entry: SigningSecret) -> tuple[int, datetime]:
    return (0, datetime.min.replace(tzinfo=UTC)) if entry.until is None else (1, entry.until)


def signing_with(entries: Iterable[SigningSecret], now: datetime) -> tuple[str, ...]:
    """The secrets that sign at `now`: the active one, then any still in their overlap."""
    ordered = sorted(entries, key=_active_first)
    return tuple(e.secret for e in ordered if e.until is None or e.until > now)


def rotated(
    entries: Sequence[SigningSecret], account: str, now: datetime, overlap: timedelta
) -> tuple[SigningSecret, ...]:
    """A fresh active secret; the one it replaces signs too until `now + overlap`."""
    fresh = SigningSecret(account, new_secret())
    current = [e for e in entries if e.until is None]
    if not current or overlap <= timedelta(0):
        return (fresh,)
    until = (now + overlap).replace(microsecond=0)
    return (fresh, SigningSecret(account, current[0].secret, until))
