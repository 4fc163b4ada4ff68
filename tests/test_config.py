"""The config file: defaults, errors that name their key, and docs that match code."""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from jobsd.api.tokens import Tokens
from jobsd.config import (
    Config,
    LogConfig,
    MetricsConfig,
    OutboundConfig,
    RetentionConfig,
    SchedulerConfig,
    SecretsConfig,
    ServerConfig,
    StorageConfig,
    builtin_config,
    load_config,
    new_token,
    parse_config,
    token_sha256,
)
from jobsd.errors import ConfigError
from tests.conftest import EXAMPLE, example_text

DIGEST_A = token_sha256("token-a")
DIGEST_B = token_sha256("token-b")
PLAN = "[plans.free]\nruns_included = 1\nactive_jobs_limit = 1\nmax_timeout = 30\n"


def account(id_: str = "acme", plan: str = "free", digests: str = f'["{DIGEST_A}"]') -> str:
    return f'[[accounts]]\nid = "{id_}"\nplan = "{plan}"\ntokens_sha256 = {digests}\n'


def error_key(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert info.value.message
    return info.value.key


# -- defaults -----------------------------------------------------------------


def test_every_default() -> None:
    config = parse_config("")
    assert config == Config()
    assert config.server.listen == "127.0.0.1:8080"
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)
    assert config.server.max_connections == 256
    assert config.server.keep_alive_timeout_s == 5
    assert config.server.max_request_header_bytes == 16384
    assert config.storage.path == Path("/var/lib/jobsd/jobsd.sqlite3")
    assert config.secrets.key_file == Path("/var/lib/jobsd/secret.key")
    assert config.scheduler.workers == 64
    assert config.scheduler.misfire_grace_s == 60
    assert config.scheduler.shutdown_grace_s == 10
    assert config.outbound.allow_cidrs == ()
    assert config.retention.days == 90
    assert config.retention.max_runs_per_job == 10000
    assert config.plans == {}
    assert config.accounts == ()
    assert config.server.trusted_proxies == ()
    assert config.metrics.enabled and config.metrics.path == "/metrics"
    assert [str(n) for n in config.metrics.allow_cidrs] == ["127.0.0.0/8", "::1/128"]
    assert config.metrics.token_sha256 == ""
    assert (config.log.format, config.log.level) == ("text", "info")
    (acme,) = parse_config(PLAN + account()).accounts
    assert (acme.sign_requests, acme.alert_url) == (False, "")


def test_operations_keys_accept_what_the_spec_shows() -> None:
    config = parse_config(
        '[server]\ntrusted_proxies = ["10.0.0.0/8", "::1"]\n'
        f'[metrics]\nenabled = false\npath = "/internal/metrics"\ntoken_sha256 = "{DIGEST_B}"\n'
        'allow_cidrs = []\n[log]\nformat = "json"\nlevel = "debug"\n'
        + PLAN
        + account()
        + 'sign_requests = true\nalert_url = "https://alerts.example.com/jobsd?k=1"\n'
    )
    assert [str(n) for n in config.server.trusted_proxies] == ["10.0.0.0/8", "::1/128"]
    assert not config.metrics.enabled and config.metrics.allow_cidrs == ()
    assert config.metrics.token_sha256 == DIGEST_B
    assert (config.log.format, config.log.level) == ("json", "debug")
    assert config.accounts[0].sign_requests
    assert config.accounts[0].alert_url == "https://alerts.example.com/jobsd?k=1"


def test_an_empty_section_is_all_defaults() -> None:
    assert parse_config("[server]\n[scheduler]\n[retention]\n") == Config()


def test_ipv6_listen_and_port_zero() -> None:
    server = parse_config('[server]\nlisten = "[::1]:0"').server
    assert (server.host, server.port) == ("::1", 0)
    assert parse_config('[server]\nlisten = "localhost:9000"').server.host == "localhost"


def test_allow_cidrs_parse_to_networks() -> None:
    text = '[outbound]\nallow_cidrs = ["127.0.0.0/8", "::1", "10.0.0.0/8"]'
    nets = parse_config(text).outbound.allow_cidrs
    assert nets == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("10.0.0.0/8"),
    )


def test_config_is_frozen() -> None:
    config = parse_config(PLAN + account())
    with pytest.raises(ValueError):
        config.scheduler.workers = 3  # type: ignore[misc]


# -- bad values name their key ---------------------------------------------------


BAD_VALUES = [
    ('[server]\nlisten = "localhost"', "server.listen"),
    ('[server]\nlisten = "[::1]:99999"', "server.listen"),
    ('[server]\nlisten = "127.0.0.1:65536"', "server.listen"),  # one past the last port
    ('[server]\nlisten = "1.2.3.4.5:80"', "server.listen"),
    ('[server]\nlisten = "[nope]:80"', "server.listen"),
    ("[server]\nlisten = 8080", "server.listen"),
    ("[server]\nmax_connections = 0", "server.max_connections"),
    ("[server]\nkeep_alive_timeout_s = 1.5", "server.keep_alive_timeout_s"),
    ("[server]\nmax_request_header_bytes = 100", "server.max_request_header_bytes"),
    ("[server]\nwrite_timeout_s = 0", "server.write_timeout_s"),
    ("[server]\nbody_timeout_s = 3601", "server.body_timeout_s"),
    ("[server]\nrequest_timeout_s = 30", "server.request_timeout_s"),  # not above the body's 30
    ("[server]\nbody_timeout_s = 9\nrequest_timeout_s = 9", "server.request_timeout_s"),
    ('[storage]\npath = "relative.sqlite3"', "storage.path"),
    ("[storage]\npath = 5", "storage.path"),
    ('[storage]\npath = "/var/lib/a\\u0000b"', "storage.path"),
    ('[secrets]\nkey_file = ""', "secrets.key_file"),
    ("[scheduler]\nworkers = 0", "scheduler.workers"),
    ("[scheduler]\nworkers = 1025", "scheduler.workers"),
    ('[scheduler]\nworkers = "64"', "scheduler.workers"),
    ("[scheduler]\nworkers = true", "scheduler.workers"),
    ("[scheduler]\nworkers = 64.0", "scheduler.workers"),
    ("[scheduler]\nmisfire_grace_s = -1", "scheduler.misfire_grace_s"),
    ("[scheduler]\nshutdown_grace_s = -1", "scheduler.shutdown_grace_s"),
    ('[outbound]\nallow_cidrs = ["10.0.0.1/8"]', "outbound.allow_cidrs[0]"),
    ('[outbound]\nallow_cidrs = ["127.0.0.0/8", "nope"]', "outbound.allow_cidrs[1]"),
    ('[outbound]\nallow_cidrs = ["127.0.0.0/8", 5]', "outbound.allow_cidrs[1]"),
    ('[outbound]\nallow_cidrs = "127.0.0.0/8"', "outbound.allow_cidrs"),
    ("[retention]\ndays = 0", "retention.days"),
    ("[retention]\nmax_runs_per_job = 0", "retention.max_runs_per_job"),
    (PLAN.replace("runs_included = 1", "runs_included = -2"), "plans.free.runs_included"),
    (
        PLAN.replace("active_jobs_limit = 1", 'active_jobs_limit = "1"'),
        "plans.free.active_jobs_limit",
    ),
    (PLAN.replace("max_timeout = 30", "max_timeout = 0"), "plans.free.max_timeout"),
    (PLAN.replace("max_timeout = 30", "max_timeout = 86401"), "plans.free.max_timeout"),
    (PLAN.replace("max_timeout = 30\n", ""), "plans.free.max_timeout"),
    (PLAN.replace("free", '"Free!"'), "plans.Free!"),
    ("plans = 5", "plans"),
    ("accounts = 5", "accounts"),
    ("[server]\n[server]", "<config>:2:8"),
    (PLAN + account(id_="Acme"), "accounts[0].id"),
    (PLAN + account(id_=""), "accounts[0].id"),
    (PLAN + account(id_="a" * 65), "accounts[0].id"),
    (
        PLAN + account() + account("b", digests=f'["{DIGEST_B.upper()}"]'),
        "accounts[1].tokens_sha256[0]",
    ),
    (PLAN + account(digests=f'["{DIGEST_A}", "abc"]'), "accounts[0].tokens_sha256[1]"),
    (PLAN + account(digests=f'"{DIGEST_A}"'), "accounts[0].tokens_sha256"),
    (PLAN + account().replace('plan = "free"\n', ""), "accounts[0].plan"),
    (PLAN + account().replace("tokens_sha256", "#"), "accounts[0].tokens_sha256"),
    # operations (spec/OPERATIONS.md)
    ('[server]\ntrusted_proxies = ["10.0.0.1/8"]', "server.trusted_proxies[0]"),
    ('[server]\ntrusted_proxies = "127.0.0.1"', "server.trusted_proxies"),
    ('[metrics]\nenabled = "yes"', "metrics.enabled"),
    ("[metrics]\nenabled = 1", "metrics.enabled"),
    ('[metrics]\npath = "metrics"', "metrics.path"),
    ('[metrics]\npath = "/api/v1/metrics"', "metrics.path"),
    ('[metrics]\npath = "/healthz"', "metrics.path"),
    ('[metrics]\npath = "/m<int:x>"', "metrics.path"),
    ('[metrics]\npath = "/m?x=1"', "metrics.path"),
    # dot segments and empty ones: served literally, but a client or proxy
    # normalising the path would ask for another (here the API's jobs)
    ('[metrics]\npath = "/x/../api/v1/jobs"', "metrics.path"),
    ('[metrics]\npath = "/./metrics"', "metrics.path"),
    ('[metrics]\npath = "/a//metrics"', "metrics.path"),
    ('[metrics]\npath = "//"', "metrics.path"),
    ('[metrics]\nallow_cidrs = ["127.0.0.1/8"]', "metrics.allow_cidrs[0]"),
    ('[metrics]\ntoken_sha256 = "abc"', "metrics.token_sha256"),
    (f'[metrics]\ntoken_sha256 = "{DIGEST_A.upper()}"', "metrics.token_sha256"),
    ('[log]\nformat = "yaml"', "log.format"),
    ("[log]\nformat = 1", "log.format"),
    ('[log]\nlevel = "verbose"', "log.level"),
    ('[log]\nlevel = "INFO"', "log.level"),
    # versions and environments (VERSIONS.md)
    (PLAN + account() + 'api_version = "2026-07-01"\n', "accounts[0].api_version"),
    (PLAN + account() + "api_version = 20260807\n", "accounts[0].api_version"),
    (PLAN + account() + "environments = []\n", "accounts[0].environments"),
    (PLAN + account() + 'environments = ["prod", "prod"]\n', "accounts[0].environments"),
    (PLAN + account() + 'environments = ["prod", "Staging"]\n', "accounts[0].environments[1]"),
    (PLAN + account() + 'environments = "prod"\n', "accounts[0].environments"),
    (
        PLAN + account() + f'[[accounts.scoped_tokens]]\nsha256 = "{DIGEST_B}"\n'
        'environments = ["staging"]\n',
        "accounts[0].scoped_tokens[0].environments[0]",
    ),
    (
        PLAN + account() + f'[[accounts.scoped_tokens]]\nsha256 = "{DIGEST_A}"\n'
        'environments = ["production"]\n',
        "accounts[0].scoped_tokens[0].sha256",
    ),
    (
        PLAN
        + account()
        + f'[[accounts.scoped_tokens]]\nsha256 = "{DIGEST_B}"\nenvironments = []\n',
        "accounts[0].scoped_tokens[0].environments",
    ),
    (
        PLAN
        + account()
        + '[[accounts.scoped_tokens]]\nsha256 = "x"\nenvironments = ["production"]\n',
        "accounts[0].scoped_tokens[0].sha256",
    ),
    (
        PLAN + account() + f'[[accounts.scoped_tokens]]\nsha256 = "{DIGEST_B}"\n',
        "accounts[0].scoped_tokens[0].environments",
    ),
    (PLAN + account() + 'sign_requests = "true"\n', "accounts[0].sign_requests"),
    (PLAN + account() + 'alert_url = "ftp://example.com/a"\n', "accounts[0].alert_url"),
    (PLAN + account() + 'alert_url = "https://u:p@example.com/a"\n', "accounts[0].alert_url"),
    (PLAN + account() + 'alert_url = "https://exa mple.com/"\n', "accounts[0].alert_url"),
    (PLAN + account() + f'alert_url = "https://e.com/{"a" * 2048}"\n', "accounts[0].alert_url"),
    (PLAN + account() + "alert_url = 5\n", "accounts[0].alert_url"),
    (PLAN + "auto_pause_after = -1\n", "plans.free.auto_pause_after"),
    (PLAN + "auto_pause_after = 1001\n", "plans.free.auto_pause_after"),
    (PLAN + 'auto_pause_after = "3"\n', "plans.free.auto_pause_after"),
    (PLAN + "auto_pause_after = 2.0\n", "plans.free.auto_pause_after"),
    (PLAN + "auto_pause_after = true\n", "plans.free.auto_pause_after"),
    (PLAN + "max_jobs = 0\n", "plans.free.max_jobs"),
    (PLAN + "max_jobs = -2\n", "plans.free.max_jobs"),
    (PLAN + 'max_jobs = "5"\n', "plans.free.max_jobs"),
    (PLAN + "max_jobs = 5.0\n", "plans.free.max_jobs"),
    (PLAN + "max_jobs = true\n", "plans.free.max_jobs"),
]


@pytest.mark.parametrize(("text", "key"), BAD_VALUES)
def test_a_bad_value_names_its_key(text: str, key: str) -> None:
    assert error_key(text) == key


UNKNOWN_KEYS = [
    ("extra = 1", "extra"),
    ("[extra]", "extra"),
    ("[server]\nextra = 1", "server.extra"),
    ("[storage]\nextra = 1", "storage.extra"),
    ("[secrets]\nextra = 1", "secrets.extra"),
    ("[scheduler]\nWorkers = 1", "scheduler.Workers"),
    ("[outbound]\nextra = 1", "outbound.extra"),
    ("[retention]\nextra = 1", "retention.extra"),
    (PLAN + "extra = 1\n", "plans.free.extra"),
    (PLAN + account() + "extra = 1\n", "accounts[0].extra"),
    (PLAN + account() + "[accounts.extra]\n", "accounts[0].extra"),
    ("[metrics]\nport = 9100", "metrics.port"),
    ("[log]\nfile = 1", "log.file"),
]


@pytest.mark.parametrize(("text", "key"), UNKNOWN_KEYS)
def test_unknown_keys_are_refused_at_every_level(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert (info.value.key, info.value.message) == (key, "unknown key")


def test_an_undefined_plan_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(PLAN + account() + account("b", plan="gold", digests="[]"))
    assert info.value.key == "accounts[1].plan"
    assert "gold" in info.value.message


def test_a_digest_may_not_appear_twice() -> None:
    text = (
        PLAN
        + account(digests=f'["{DIGEST_A}"]')
        + account("b", digests=f'["{DIGEST_B}", "{DIGEST_A}"]')
    )
    assert error_key(text) == "accounts[1].tokens_sha256[1]"
    assert (
        error_key(PLAN + account(digests=f'["{DIGEST_A}", "{DIGEST_A}"]'))
        == "accounts[0].tokens_sha256[1]"
    )


def test_account_ids_are_unique() -> None:
    assert error_key(PLAN + account() + account(digests="[]")) == "accounts[1].id"


# -- files ----------------------------------------------------------------------


def test_load_config_reports_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert info.value.key == str(missing)
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nlisten = \n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert info.value.key == f"{bad}:2:10"
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe[server]")
    with pytest.raises(ConfigError) as info:
        load_config(binary)
    assert info.value.key == str(binary)
    good = tmp_path / "good.toml"
    good.write_text(PLAN + account())
    assert load_config(good).accounts[0].id == "acme"


# -- accounts and tokens --------------------------------------------------------------


def test_a_token_finds_its_account_and_plan() -> None:
    config = parse_config(PLAN + account() + account("b", digests=f'["{DIGEST_B}"]'))
    tokens = Tokens()
    found = tokens.match(config, DIGEST_B)
    assert found is not None and found.account.id == "b" and found.scope is None
    assert config.plan_of(found.account).max_timeout == 30
    assert tokens.match(config, token_sha256("other")) is None
    assert tokens.match(config, "") is None
    assert tokens.match(config, "é") is None


def test_a_scoped_token_matches_with_its_scope() -> None:
    config = parse_config(
        PLAN
        + account()
        + 'environments = ["production", "staging"]\n'
        + f'[[accounts.scoped_tokens]]\nsha256 = "{DIGEST_B}"\nenvironments = ["staging"]\n'
    )
    scoped, full = Tokens().match(config, DIGEST_B), Tokens().match(config, DIGEST_A)
    assert scoped is not None and scoped.account.id == "acme"
    assert scoped.scope == frozenset({"staging"})
    assert full is not None and full.scope is None


def test_toml_nested_too_deeply_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_config("x = " + "[" * 100_000 + "]" * 100_000, source="deep.toml")


def test_builtin_config(tmp_path: Path) -> None:
    token = new_token()
    config = builtin_config(tmp_path, token_sha256(token))
    assert config.server.listen == "127.0.0.1:8080"
    assert config.storage.path == tmp_path / "jobsd.sqlite3"
    assert config.secrets.key_file == tmp_path / "secret.key"
    match = Tokens().match(config, token_sha256(token))
    assert match is not None and match.account.id == "local"
    plan = config.plan_of(match.account)
    assert (plan.runs_included, plan.active_jobs_limit, plan.max_timeout) == (-1, -1, 300)
    assert plan.max_jobs == 100_000  # the bound on stored jobs holds here too
    assert config.scheduler == SchedulerConfig()


def test_tokens() -> None:
    tokens = {new_token() for _ in range(20)}
    assert len(tokens) == 20
    for token in tokens:
        assert re.fullmatch(r"jobsd_[A-Za-z0-9_-]{43}", token)
    assert token_sha256("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# -- etc/jobsd.toml and the models agree ------------------------------------------------


def model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        ann, path = field.annotation, prefix + name
        args = get_args(ann)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys |= model_keys(ann, path + ".")
        elif get_origin(ann) is dict and issubclass(args[1], BaseModel):
            keys |= model_keys(args[1], path + ".*.")
        elif (
            get_origin(ann) is tuple
            and isinstance(args[0], type)
            and issubclass(args[0], BaseModel)
        ):
            keys |= model_keys(args[0], path + "[].")
        else:
            keys.add(path)
    return keys


def toml_keys(data: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, value in data.items():
        if prefix == "" and name == "plans":
            for plan in value.values():
                keys |= toml_keys(plan, "plans.*.")
        elif prefix == "" and name == "accounts":
            for acct in value:
                keys |= toml_keys(acct, "accounts[].")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for table in value:  # an array of tables, such as [[accounts.scoped_tokens]]
                keys |= toml_keys(table, f"{prefix}{name}[].")
        elif isinstance(value, dict):
            keys |= toml_keys(value, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def test_the_example_is_refused_until_its_token_placeholders_are_replaced() -> None:
    """An install that forgot to paste a token's digest must not serve the API to
    whoever guesses a placeholder: the placeholders are not digests."""
    with pytest.raises(ConfigError) as refused:
        parse_config(EXAMPLE.read_text(), source=str(EXAMPLE))
    assert "accounts[0].tokens_sha256[0]" in str(refused.value)
    assert "jobsd token" in str(refused.value)


def test_the_example_documents_exactly_the_model_keys() -> None:
    text = example_text()
    parse_config(text, source=str(EXAMPLE))
    assert toml_keys(tomllib.loads(text)) == model_keys(Config)
    assert "plans.*.max_timeout" in model_keys(Config)  # the walk reached the nested models
    assert "accounts[].scoped_tokens[].environments" in model_keys(Config)


def test_the_example_shows_the_defaults() -> None:
    config = parse_config(example_text())
    assert config.server == ServerConfig()
    assert config.storage == StorageConfig()
    assert config.secrets == SecretsConfig()
    assert config.scheduler == SchedulerConfig()
    assert config.outbound == OutboundConfig()
    assert config.retention == RetentionConfig()
    assert config.metrics == MetricsConfig()
    assert config.log == LogConfig()
    free = config.plans["free"]
    assert (free.runs_included, free.active_jobs_limit, free.max_timeout) == (3000, 10, 30)
    assert len(config.plans) == 2
    (acme,) = config.accounts
    assert (acme.id, acme.plan, acme.tokens_sha256) == (
        "acme",
        "free",
        (token_sha256("example-token"),),
    )
    assert (acme.sign_requests, acme.alert_url) == (False, "")
    assert (acme.api_version, acme.environments) == ("2026-06-04", ("production",))
    (scoped,) = acme.scoped_tokens
    assert scoped.sha256 == token_sha256("example-scoped-token")


def test_every_key_line_of_the_example_carries_a_comment() -> None:
    lines = EXAMPLE.read_text().splitlines()
    key_lines = [line for line in lines if re.match(r"\s*[A-Za-z0-9_]+\s*=", line)]
    assert len(key_lines) >= len(model_keys(Config))
    for line in key_lines:
        assert re.search(r"\S\s+#\s*\S", line), f"no comment on: {line}"
    assert "jobsd token" in EXAMPLE.read_text()


# -- garbage in, ConfigError out ------------------------------------------------------------

NAMES = [
    "server",
    "storage",
    "secrets",
    "scheduler",
    "outbound",
    "retention",
    "plans",
    "accounts",
    "listen",
    "workers",
    "path",
    "allow_cidrs",
    "days",
    "plan",
    "id",
    "tokens_sha256",
    "plans.free",
    "max_timeout",
    "runs_included",
    "x",
    '"a.b"',
    "free",
    "metrics",
    "log",
    "trusted_proxies",
    "enabled",
    "token_sha256",
    "format",
    "level",
    "sign_requests",
    "alert_url",
]
LITERALS = (
    'true false [] {} 1979-05-27T07:32:00Z 07:32:00 "" -1 0 "free" "/abs" [[1],[2]] {a=1}'
    ' "127.0.0.1:8080" ["::1"] ' + f'["{DIGEST_A}"] ' + "[" * 50
).split()
VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True).map(repr),
    st.sampled_from(LITERALS),
    st.text(max_size=12).map(lambda s: '"' + s.replace("\\", "").replace('"', "") + '"'),
)
LINES = st.one_of(
    st.sampled_from(NAMES).map(lambda n: f"[{n}]"),
    st.sampled_from(NAMES).map(lambda n: f"[[{n}]]"),
    st.tuples(st.sampled_from(NAMES), VALUES).map(lambda kv: f"{kv[0]} = {kv[1]}"),
    st.text(alphabet="[]{}=\".,#'\\ \tab1-_\n", max_size=20),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(LINES, max_size=12).map("\n".join))
def test_garbage_raises_only_config_error(text: str) -> None:
    try:
        config = parse_config(text)
    except ConfigError as exc:
        assert exc.key and exc.message
    else:
        assert isinstance(config, Config)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_config_error(text: str) -> None:
    try:
        parse_config(text)
    except ConfigError as exc:
        assert exc.key and exc.message


def to_toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(to_toml(item) for item in value) + "]"
    pairs = (f"{json.dumps(k)} = {to_toml(v)}" for k, v in value.items())
    return "{" + ", ".join(pairs) + "}"


FIELDS = sorted({key.rsplit(".", 1)[-1] for key in model_keys(Config)} | {"extra"})
GOOD_STRINGS = ["127.0.0.1:0", "[::1]:80", "/var/x", DIGEST_A, "free", "10.0.0.0/8", "acme"]
LEAF = st.one_of(
    st.integers(min_value=-3, max_value=70000),
    st.integers(),
    st.booleans(),
    st.floats(),
    st.text(max_size=10),
    st.sampled_from(GOOD_STRINGS),
)
FIELD_VALUE = st.one_of(LEAF, st.lists(LEAF, max_size=3))
SECTION = st.dictionaries(st.sampled_from(FIELDS), FIELD_VALUE, max_size=4)
DOCUMENT = st.fixed_dictionaries(
    {},
    optional={
        **dict.fromkeys(
            ["server", "storage", "secrets", "scheduler", "outbound", "retention"], SECTION
        ),
        "plans": st.dictionaries(st.sampled_from(["free", "pro", "Bad!"]), SECTION, max_size=2),
        "accounts": st.lists(SECTION, max_size=3),
        "extra": LEAF,
    },
)


@settings(max_examples=150, deadline=None)
@given(DOCUMENT)
def test_config_shaped_garbage_raises_only_config_error(document: dict[str, Any]) -> None:
    text = "\n".join(f"{key} = {to_toml(value)}" for key, value in document.items())
    try:
        parse_config(text)
    except ConfigError as exc:
        assert exc.key and exc.message


def test_keepalive_s_defaults_to_one_second_and_is_bounded() -> None:
    assert parse_config("").outbound.keepalive_s == 1.0
    assert parse_config("[outbound]\nkeepalive_s = 0").outbound.keepalive_s == 0
    assert parse_config("[outbound]\nkeepalive_s = 10").outbound.keepalive_s == 10
    assert parse_config("[outbound]\nkeepalive_s = 0.25").outbound.keepalive_s == 0.25
    for bad in ("-0.5", "10.5", "true", '"1"', "nan", "inf"):
        with pytest.raises(ConfigError) as info:
            parse_config(f"[outbound]\nkeepalive_s = {bad}")
        assert "outbound.keepalive_s" in str(info.value)


def test_misfire_grace_is_bounded_so_a_late_fire_cannot_overflow() -> None:
    # Any TOML integer passed: misfire_grace_s = 2**63 - 1 started the daemon,
    # and the first late cron fire raised OverflowError (no timedelta that
    # long) out of the scheduler, which stopped the daemon.
    from datetime import UTC, datetime

    from jobsd.schedule import parse_schedule, plan_fire

    with pytest.raises(ConfigError, match=r"scheduler\.misfire_grace_s: must be <= 315360000"):
        parse_config(f"[scheduler]\nmisfire_grace_s = {2**63 - 1}\n")
    grace = parse_config("[scheduler]\nmisfire_grace_s = 315360000\n").scheduler.misfire_grace_s
    due = datetime(2026, 6, 5, 2, 0, tzinfo=UTC)
    now = datetime(2026, 6, 5, 3, 30, tzinfo=UTC)
    fired, _ = plan_fire(parse_schedule("0 * * * *"), due=due, now=now, misfire_grace_s=grace)
    # 02:00 and 03:00 missed, both within the grace: one run, for the latest
    assert fired == datetime(2026, 6, 5, 3, 0, tzinfo=UTC)
