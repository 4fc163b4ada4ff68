"""A token has one scope: an account's, a scoped token's, or the scrapers'.

The config refused a digest listed under two accounts, or twice in one, but
took `[metrics] token_sha256` equal to an account's digest: the token in
Prometheus's credentials file then read and wrote that account's jobs, and
everyone holding the account's token could scrape every account's metrics.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jobsd.config import parse_config
from tests.daemon_process import jobsd_command
from tests.test_config import DIGEST_A, DIGEST_B, PLAN, account, error_key


def scoped(digest: str) -> str:
    return f'[[accounts.scoped_tokens]]\nsha256 = "{digest}"\nenvironments = ["production"]\n'


@pytest.mark.parametrize(
    "accounts",
    [account(), account(digests="[]") + scoped(DIGEST_A)],
    ids=["an account's token", "a scoped token"],
)
def test_the_scrapers_token_may_not_be_an_accounts(accounts: str) -> None:
    metrics = f'[metrics]\ntoken_sha256 = "{DIGEST_A}"\n'
    assert error_key(PLAN + metrics + accounts) == "metrics.token_sha256"
    config = parse_config(PLAN + f'[metrics]\ntoken_sha256 = "{DIGEST_B}"\n' + accounts)
    assert config.metrics.token_sha256 == DIGEST_B


def test_check_config_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "jobsd.toml"
    path.write_text(PLAN + f'[metrics]\ntoken_sha256 = "{DIGEST_A}"\n' + account())
    done = jobsd_command("check-config", str(path), cwd=tmp_path)
    assert done.returncode == 2
    assert "metrics.token_sha256" in done.stderr and "accounts[0]" in done.stderr
