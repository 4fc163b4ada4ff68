"""The key file holds every signing account's secrets: its size bound must fit them.

The file is read whole, up to `keyfile.MAX_FILE_BYTES`. A signing account
takes one line (about 80 bytes, up to 150 with a 64-character id) and a
second during a rotation's overlap, so a bound of 64 KiB held a few hundred
accounts: `jobsd signing-secret` for the next one wrote a file that the
running daemon then refused to reload and the next start refused to read
(a config error, no serving at all). Now the bound holds thousands, and no
command writes a file past it: the write is refused and the file kept.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from jobsd import keyfile, signing_secrets
from jobsd.clock import system_utc_now
from jobsd.config import Config, parse_config
from jobsd.crypto import KeyRing
from jobsd.errors import ConfigError
from jobsd.signing import SigningSecret, new_secret
from tests.conftest import config_text

ACCOUNTS = 600


def many_accounts(tmp_path: Path) -> Config:
    account = '[[accounts]]\nid = "{}"\nplan = "big"\ntokens_sha256 = []\nsign_requests = true\n'
    ids = [f"{n:04d}-{'x' * 59}" for n in range(ACCOUNTS)]
    return parse_config(config_text(tmp_path, extra="".join(account.format(i) for i in ids)))


def test_hundreds_of_signing_accounts_rotating_at_once_fit_the_key_file(tmp_path: Path) -> None:
    config = many_accounts(tmp_path)
    path = config.secrets.key_file
    KeyRing.load_or_create(path)
    until = (system_utc_now() + timedelta(hours=24)).replace(microsecond=0)
    signing = [a.id for a in config.accounts if a.sign_requests][1:]
    lines = [
        entry.line()
        for account in signing
        for entry in (
            SigningSecret(account, new_secret()),
            SigningSecret(account, new_secret(), until),
        )
    ]
    keyfile.rewrite(path, keyfile.is_signing_line, lines)  # all but one, mid-rotation
    assert path.stat().st_size > 64 * 1024  # what the bound was
    first = next(a.id for a in config.accounts if a.sign_requests)
    signing_secrets.active_secret(config, first)  # `jobsd signing-secret` for one more
    signing_secrets.rotate(config, first, system_utc_now(), timedelta(hours=24))
    secrets = signing_secrets.load(path)  # what a start and a reload read
    assert len(secrets) == ACCOUNTS and all(len(s) == 2 for s in secrets.values())
    signing_secrets.check_accounts(config, secrets)
    KeyRing.load(path)


def test_no_command_writes_a_key_file_past_what_jobsd_reads(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    KeyRing.load_or_create(path)
    before = path.read_bytes()
    line = "# " + "x" * 998
    lines = [line] * (keyfile.MAX_FILE_BYTES // len(line) + 1)
    with pytest.raises(ConfigError, match="at most"):
        keyfile.rewrite(path, keyfile.is_signing_line, lines)
    assert path.read_bytes() == before  # kept as it was
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_file_of_exactly_the_bound_is_written_and_read_one_byte_more_is_not(
    tmp_path: Path,
) -> None:
    path = tmp_path / "secret.key"
    bound = keyfile.MAX_FILE_BYTES
    full = ("#" * 99 + "\n") * (bound // 100) + "#" * (bound % 100 - 1) + "\n"
    assert len(full) == bound
    keyfile.publish(path, full, replace=False)
    assert keyfile.read_text(path) == full
    with pytest.raises(ConfigError, match="at most"):
        keyfile.publish(path, full + "\n", replace=True)
    assert keyfile.read_text(path) == full  # kept as it was
    path.write_text(full + "\n")  # one byte more, by hand
    with pytest.raises(ConfigError, match="larger than"):
        keyfile.read_text(path)
