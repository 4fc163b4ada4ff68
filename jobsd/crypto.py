"""Header values sealed at rest: AES-256-GCM under a key ring read from a file.

Why this shape: the database must never hold a header value in plaintext,
and a sealed value must not open anywhere but where it was written. Each
value gets a fresh random 96-bit nonce and is bound, as associated data, to
(account, job, header name) by `header_aad`, so a ciphertext copied to
another row fails to open. The key id travels in the value
(`v1.<key_id>.<base64url(nonce + ciphertext + tag)>`, unpadded) so keys can
rotate: add a key and make it active, re-seal stored values in the
background (`key_id_of` finds the stale ones), then drop the old key. A ring
remembers the file it was loaded from (`source`), so the store can follow
that file while the daemon runs (`jobsd.store.keyring`), and `jobsd
rotate-key` (`jobsd.rotation`) does the rest.

The key file (`secrets.key_file`) is text, so an operator can rotate or
inspect it with an editor:

    # comments and blank lines are ignored
    3f9a1c2e 4x0C...base64 of 32 bytes...= active
    77aa01bb q8Zl...base64 of 32 bytes...=

One line per key: an id (1-64 of A-Z a-z 0-9 - _), the key in standard
base64, and the word `active` on exactly one line. Lines starting with
`signing:` are the accounts' request-signing secrets (`jobsd.signing`) and
are left to that module. How the file is read, created, replaced and locked
is `jobsd.keyfile`'s. A file that does not parse stops the daemon
(`ConfigError` naming `secrets.key_file`). Messages never quote key material.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jobsd import keyfile
from jobsd.errors import ConfigError, SealError

_KEY = keyfile.KEY
_KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_FILE_NOTE = (
    "# jobsd secret keys: keep this file mode 0600 and back it up with the database;\n"
    "# values sealed under a key cannot be opened without it.\n"
    '# One key per line: "<key-id> <base64 32-byte key> [active]"; exactly one is active.\n'
    "# Lines starting with signing: are request-signing secrets (`jobsd signing-secret`).\n"
)


def _text(value: str) -> bytes:
    # surrogatepass: any Python str round-trips, so sealing never fails on input.
    return value.encode("utf-8", "surrogatepass")


def header_aad(
    account_id: str, job_pk: int, header_name: str, environment: str | None = None
) -> bytes:
    """Length-prefixed parts; header names compare case-insensitively, as in HTTP.

    An environment's override also binds the environment, so a value does not
    open in another environment or as the base value of the same name.
    """
    if not account_id or not header_name:
        raise ValueError("account_id and header_name must not be empty")
    if isinstance(job_pk, bool) or not isinstance(job_pk, int):
        raise TypeError("job_pk must be an int")
    parts = [b"jobsd-header", _text(account_id), str(job_pk).encode(), _text(header_name.lower())]
    if environment is not None:
        if not environment:
            raise ValueError("environment must not be empty")
        parts.append(b"env:" + _text(environment))
    return b"".join(len(part).to_bytes(4, "big") + part for part in parts)


class KeyRing:
    """An immutable set of keys, one of them active for sealing."""

    def __init__(
        self, keys: Mapping[str, bytes], active_id: str, *, source: Path | None = None
    ) -> None:
        for key_id, key in keys.items():
            if not _KEY_ID.fullmatch(key_id) or len(key) != _KEY_BYTES:
                raise ValueError(
                    f"bad key {key_id!r}: ids are 1-64 of A-Z a-z 0-9 - _, keys 32 bytes"
                )
        if active_id not in keys:
            raise ValueError(f"active key {active_id!r} is not in the ring")
        self._keys = dict(keys)
        self._active_id = active_id
        self._aead = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._source = source

    def __repr__(self) -> str:
        return f"KeyRing(active_id={self._active_id!r}, key_ids={self.key_ids!r})"

    @property
    def active_id(self) -> str:
        return self._active_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    @property
    def source(self) -> Path | None:
        """The key file this ring was read from; None for a ring built in memory."""
        return self._source

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        """Read an existing key file; a missing one is a ConfigError, never created."""
        try:
            return cls._load(path)
        except FileNotFoundError:
            raise ConfigError(_KEY, f"{path} does not exist") from None

    @classmethod
    def load_or_create(cls, path: Path) -> KeyRing:
        try:
            return cls._load(path)
        except FileNotFoundError:
            pass
        fresh_id = secrets.token_hex(4)
        # Another process may create it between our read and our write: use theirs.
        with contextlib.suppress(FileExistsError):
            cls({fresh_id: os.urandom(_KEY_BYTES)}, fresh_id)._publish(path, replace=False)
        return cls._load(path)

    def with_new_active_key(self) -> KeyRing:
        new_id = secrets.token_hex(4)
        while new_id in self._keys:
            new_id = secrets.token_hex(4)
        keys = {**self._keys, new_id: os.urandom(_KEY_BYTES)}
        return KeyRing(keys, new_id, source=self._source)

    def without_key(self, key_id: str) -> KeyRing:
        """Retire a key once nothing is sealed under it; the active key stays."""
        if key_id == self._active_id:
            raise ValueError("cannot retire the active key; activate another first")
        keys = {k: v for k, v in self._keys.items() if k != key_id}
        return KeyRing(keys, self._active_id, source=self._source)

    def save(self, path: Path) -> None:
        self._publish(path, replace=True)

    def seal(self, plaintext: str, *, aad: bytes) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        aead = self._aead[self._active_id]
        sealed = aead.encrypt(nonce, _text(plaintext), _bind(self._active_id, aad))
        blob = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")
        return f"v1.{self._active_id}.{blob}"

    def open(self, sealed: str, *, aad: bytes) -> str:
        key_id, blob = _split(sealed)
        aead = self._aead.get(key_id)
        if aead is None:
            raise SealError(f"sealed under key {key_id!r}, which the key file no longer holds")
        try:
            plain = aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _bind(key_id, aad))
        except InvalidTag:
            raise SealError(
                "sealed value does not open: altered, or bound to another account, job or header"
            ) from None
        return plain.decode("utf-8", "surrogatepass")

    def key_id_of(self, sealed: str) -> str:
        return _split(sealed)[0]

    @classmethod
    def _load(cls, path: Path) -> KeyRing:
        return cls._parse(keyfile.read_text(path), path)

    @classmethod
    def _parse(cls, text: str, path: Path) -> KeyRing:
        def bad(line_no: int, why: str) -> ConfigError:
            return ConfigError(_KEY, f"{path} line {line_no}: {why}")

        keys: dict[str, bytes] = {}
        active: list[str] = []
        for line_no, line in enumerate(text.splitlines(), start=1):
            if keyfile.is_comment_or_blank(line) or keyfile.is_signing_line(line):
                continue
            fields = line.split()
            if len(fields) not in (2, 3) or fields[2:] not in ([], ["active"]):
                raise bad(line_no, 'expected "<key-id> <base64 key> [active]"')
            key_id, encoded = fields[0], fields[1]
            if not _KEY_ID.fullmatch(key_id):
                raise bad(line_no, "a key id is 1-64 characters of A-Z a-z 0-9 - _")
            if key_id in keys:
                raise bad(line_no, f"key id {key_id!r} appears twice")
            try:
                key = base64.b64decode(encoded, validate=True)
            except binascii.Error:
                raise bad(line_no, "the key is not valid base64") from None
            if len(key) != _KEY_BYTES:
                raise bad(line_no, f"the key is {len(key)} bytes, expected {_KEY_BYTES}")
            keys[key_id] = key
            if len(fields) == 3:
                active.append(key_id)
        if len(active) != 1:
            raise ConfigError(_KEY, f"{path}: exactly one key must be marked active")
        return cls(keys, active[0], source=path)

    def _publish(self, path: Path, *, replace: bool) -> None:
        lines = []
        for key_id, key in self._keys.items():
            marker = " active" if key_id == self._active_id else ""
            lines.append(f"{key_id} {base64.b64encode(key).decode('ascii')}{marker}")
        if replace:
            keyfile.rewrite(path, _is_key_line, lines)
        else:
            text = _FILE_NOTE + "".join(f"{line}\n" for line in lines)
            keyfile.publish(path, text, replace=False)


def _is_key_line(line: str) -> bool:
    return not keyfile.is_signing_line(line)


def _bind(key_id: str, aad: bytes) -> bytes:
    # The format version and key id are authenticated too: neither can be swapped.
    return f"jobsd.v1.{key_id}\0".encode("ascii") + aad


def _split(sealed: str) -> tuple[str, bytes]:
    parts = sealed.split(".")
    if len(parts) != 3 or parts[0] != "v1":
        raise SealError('not a sealed value (expected "v1.<key_id>.<data>")')
    key_id, encoded = parts[1], parts[2]
    if not _KEY_ID.fullmatch(key_id) or not _B64URL.fullmatch(encoded):
        raise SealError("malformed sealed value")
    try:
        blob = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except binascii.Error:
        raise SealError("malformed sealed value") from None
    if len(blob) < _NONCE_BYTES + _TAG_BYTES:
        raise SealError("sealed value is too short")
    return key_id, blob
