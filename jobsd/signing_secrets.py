"""The accounts' signing secrets in the key file: show, rotate, check, follow.

`jobsd signing-secret` and `jobsd rotate-signing-secret` change the key
file under its lock (`jobsd.keyfile`) while the daemon runs; the daemon's
`LiveSigningSecrets` follows the file the way its key ring does, so a
rotation is picked up at the next signed request with no signal or restart,
and both secrets sign until the overlap ends.

The daemon never makes a secret itself: an account with `sign_requests`
and no secret in the key file is refused at start, at reload and by
`check-config` (naming `accounts[N].sign_requests`), so the operator has
the secret, and can give it to the receiver, before the first signed
request leaves. A secret removed from the file while the daemon runs fails
that account's runs without sending them (`SigningError`) rather than
sending them unsigned.

`LiveSigningSecrets.headers` is the one signing entry point, shared by job
runs (`RequestSigner`) and anything else jobsd sends for an account.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from jobsd import keyfile
from jobsd.clock import Clock
from jobsd.config import Config
from jobsd.errors import ConfigError, SigningError
from jobsd.signing import (
    SigningSecret,
    new_secret,
    parse,
    rotated,
    signature_headers,
    signing_with,
)

AllSecrets = dict[str, tuple[SigningSecret, ...]]


def load(path: Path) -> AllSecrets:
    return parse(keyfile.read_text(path), path)


def _existing(path: Path) -> AllSecrets:
    try:
        return load(path)
    except FileNotFoundError:
        raise ConfigError(
            keyfile.KEY, f"{path} does not exist: start jobsd once (it creates the key file)"
        ) from None


def _save(path: Path, secrets: AllSecrets) -> None:
    lines = [entry.line() for account in sorted(secrets) for entry in secrets[account]]
    keyfile.rewrite(path, keyfile.is_signing_line, lines)


def _known(config: Config, account: str) -> None:
    if not any(a.id == account for a in config.accounts):
        raise ConfigError("ACCOUNT", f"the config has no account {account!r}")


def active_secret(config: Config, account: str) -> str:
    """The account's active secret, made (and saved) first if it has none."""
    _known(config, account)
    path = config.secrets.key_file
    with keyfile.locked(path):
        secrets = _existing(path)
        entries = secrets.get(account, ())
        if not entries:
            entries = (SigningSecret(account, new_secret()),)
            _save(path, {**secrets, account: entries})
        return entries[0].secret


def rotate(
    config: Config, account: str, now: datetime, overlap: timedelta
) -> tuple[SigningSecret, ...]:
    """A new active secret; the replaced one signs too until `now + overlap`."""
    _known(config, account)
    path = config.secrets.key_file
    with keyfile.locked(path):
        secrets = _existing(path)
        entries = rotated(secrets.get(account, ()), account, now, overlap)
        _save(path, {**secrets, account: entries})
        return entries


def check_accounts(config: Config, secrets: AllSecrets | None = None) -> None:
    """Every account that signs has a secret to sign with; else name its `sign_requests`."""
    signing = [(i, a.id) for i, a in enumerate(config.accounts) if a.sign_requests]
    if not signing:
        return
    if secrets is None:
        try:
            secrets = load(config.secrets.key_file)
        except FileNotFoundError:
            secrets = {}
    for i, account in signing:
        if account not in secrets:
            raise ConfigError(
                f"accounts[{i}].sign_requests",
                f"the key file holds no signing secret for account {account!r}: make one with "
                f"`jobsd signing-secret {account} --config FILE`, give it to the receiving "
                "service, then start or reload jobsd",
            )


class LiveSigningSecrets:
    """The key file's signing secrets, re-read whenever the file changes."""

    def __init__(self, path: Path, secrets: AllSecrets | None = None) -> None:
        initial = load(path) if secrets is None else secrets
        self._followed = keyfile.Followed(path, load, initial, "signing secrets")

    def signing_with(self, account: str, now: datetime) -> tuple[str, ...]:
        self._followed.refresh()
        return signing_with(self._followed.value.get(account, ()), now)

    def headers(
        self, account: str, msg_id: str, body: bytes, now: datetime
    ) -> list[tuple[str, str]]:
        """`webhook-id`, `-timestamp` and `-signature` for `body`, timestamped `now`."""
        secrets = self.signing_with(account, now)
        if not secrets:
            raise SigningError(
                f"account {account!r} has sign_requests on but the key file holds no signing "
                f"secret for it, so nothing was sent; run `jobsd signing-secret {account}`"
            )
        return signature_headers(msg_id, int(now.timestamp()), body, secrets)


class RequestSigner:
    """What an executor adds to a run's request: signatures, if its account signs."""

    def __init__(
        self, secrets: LiveSigningSecrets, signs: Callable[[str], bool], clock: Clock
    ) -> None:
        self._secrets = secrets
        self._signs = signs
        self._clock = clock

    def headers_for(self, account: str, run_id: str, body: bytes) -> list[tuple[str, str]]:
        if not self._signs(account):
            return []
        return self._secrets.headers(account, run_id, body, self._clock.now())
