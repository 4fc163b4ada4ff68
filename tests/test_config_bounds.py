"""Every numeric bound of the config, at its limit and one past it.

`tests/test_config.py` refuses values below the floors and a few past the
ceilings; these are the ceilings nothing pushed on. A ceiling keeps an
operator's typo (an extra digit) from becoming a connection cap, a backlog
or a worker count that the machine cannot hold, so each must take its
limit and name its key one past it.
"""

from __future__ import annotations

import pytest

from jobsd.config import parse_config
from jobsd.errors import ConfigError
from tests.test_config import DIGEST_A, DIGEST_B, PLAN, account

# (key, limit, the config text for a value)
CEILINGS = [
    ("server.max_connections", 65536, "[server]\nmax_connections = {}"),
    ("server.keep_alive_timeout_s", 3600, "[server]\nkeep_alive_timeout_s = {}"),
    ("server.max_request_header_bytes", 1048576, "[server]\nmax_request_header_bytes = {}"),
    ("server.request_timeout_s", 3600, "[server]\nrequest_timeout_s = {}"),
    ("server.write_timeout_s", 3600, "[server]\nwrite_timeout_s = {}"),
    ("scheduler.max_pending_runs", 10_000_000, "[scheduler]\nmax_pending_runs = {}"),
    ("scheduler.worker_processes", 64, "[scheduler]\nworker_processes = {}"),
    ("retention.days", 1_000_000, "[retention]\ndays = {}"),
    ("scheduler.shutdown_grace_s", 86_400, "[scheduler]\nshutdown_grace_s = {}"),
]


@pytest.mark.parametrize(("key", "limit", "text"), CEILINGS)
def test_a_ceiling_takes_its_limit_and_refuses_one_more(key: str, limit: int, text: str) -> None:
    section, name = key.split(".")
    assert getattr(getattr(parse_config(text.format(limit)), section), name) == limit
    with pytest.raises(ConfigError) as info:
        parse_config(text.format(limit + 1))
    assert info.value.key == key


def test_the_pending_runs_bound_is_at_least_one() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("[scheduler]\nmax_pending_runs = 0")
    assert info.value.key == "scheduler.max_pending_runs"


def _names(n: int) -> str:
    return "[" + ", ".join(f'"e{i}"' for i in range(n)) + "]"


def test_an_account_has_at_most_64_environments() -> None:
    config = parse_config(PLAN + account() + f"environments = {_names(64)}\n")
    assert len(config.accounts[0].environments) == 64
    with pytest.raises(ConfigError) as info:
        parse_config(PLAN + account() + f"environments = {_names(65)}\n")
    assert info.value.key == "accounts[0].environments"


def test_a_scoped_token_names_at_most_64_environments() -> None:
    base = PLAN + account(digests=f'["{DIGEST_A}"]') + f"environments = {_names(65)}\n"
    scoped = '[[accounts.scoped_tokens]]\nsha256 = "{}"\nenvironments = {}\n'
    with pytest.raises(ConfigError) as info:  # the account's own 65 are refused first
        parse_config(base + scoped.format(DIGEST_B, _names(65)))
    assert info.value.key == "accounts[0].environments"
    base = PLAN + account(digests=f'["{DIGEST_A}"]') + f"environments = {_names(64)}\n"
    config = parse_config(base + scoped.format(DIGEST_B, _names(64)))
    assert len(config.accounts[0].scoped_tokens[0].environments) == 64
    with pytest.raises(ConfigError) as info:
        parse_config(base + scoped.format(DIGEST_B, _names(65)))
    assert info.value.key.startswith("accounts[0].scoped_tokens[0].environments")


@pytest.mark.parametrize("value", ['"x"', "-1", "65", "true", "2.0"])
def test_a_bad_worker_processes_names_its_key(value: str) -> None:
    """It is a count or "auto": pydantic named each bad value under its union's
    branch (`scheduler.worker_processes.constrained-int`), and said "must be an
    integer" of a key that also takes "auto"."""
    with pytest.raises(ConfigError) as info:
        parse_config(f"[scheduler]\nworker_processes = {value}")
    assert info.value.key == "scheduler.worker_processes"
    assert '"auto"' in info.value.message


def test_worker_processes_takes_auto_and_counts() -> None:
    assert (
        parse_config('[scheduler]\nworker_processes = "auto"').scheduler.worker_processes == "auto"
    )
    assert parse_config("[scheduler]\nworker_processes = 0").scheduler.worker_processes == 0
    assert parse_config("").scheduler.worker_processes == "auto"
