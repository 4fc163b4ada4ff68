"""The config file: TOML in, frozen pydantic models out.

A deployment's config is read once at start, so every mistake must stop the
daemon there with a message naming the exact key (`scheduler.workers`,
`plans.free.max_timeout`, `accounts[0].plan`) — never surface later as odd
behaviour. Hence: unknown keys are refused at every level, numbers are strict
(TOML `"64"` or `true` is not an integer), and cross-references (an account's
plan, token digests, account ids) are checked here, not by their users.
`etc/jobsd.toml` documents every key with its unit; a test walks these
models and that file so the two cannot drift.

The sections themselves are in `config_sections.py`.

Decisions the spec leaves open:
- Paths must be absolute: under systemd the working directory is `/`, so a
  relative path would mean something different in a shell than in service.
- `outbound.allow_cidrs` entries are parsed strictly: `10.1.2.3/8` (host bits
  set) is refused rather than widened silently; a bare address means /32 or
  /128.
- `listen` port 0 asks the OS for a free port (tests use it).
- Durations are whole seconds; `max_timeout` is capped at one day so a typo
  cannot hold an executor for weeks.
- An account with `tokens_sha256 = []` is allowed: it keeps its data but
  nobody can authenticate as it (a way to lock an account out).
- `[metrics]`, `[log]`, `trusted_proxies`, `sign_requests` and `alert_url`
  are fixed by spec/OPERATIONS.md; `metrics.path` may not shadow the API
  (`/api/...`, `/healthz`).
- An account's `environments` are names like account ids; the first is its
  default. A scoped token names a non-empty subset of them, each once.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from jobsd.config_fields import Name, Section
from jobsd.config_sections import (
    API_VERSIONS,
    DEFAULT_API_VERSION,
    DEFAULT_ENVIRONMENT,
    AccountConfig,
    ApiVersion,
    LogConfig,
    MetricsConfig,
    OutboundConfig,
    PlanConfig,
    RetentionConfig,
    SchedulerConfig,
    ScopedToken,
    SecretsConfig,
    ServerConfig,
    StorageConfig,
)
from jobsd.errors import ConfigError

TOKEN_PREFIX = "jobsd_"


@dataclass(frozen=True, slots=True)
class TokenMatch:
    """Whose token it is, and which environments it may reach (None: all)."""

    account: AccountConfig
    scope: frozenset[str] | None


class Config(Section):
    server: ServerConfig = Field(default_factory=ServerConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    secrets: SecretsConfig = Field(default_factory=SecretsConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    outbound: OutboundConfig = Field(default_factory=OutboundConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    plans: dict[Name, PlanConfig] = Field(default_factory=dict)
    accounts: tuple[AccountConfig, ...] = ()

    def model_post_init(self, context: Any, /) -> None:
        # Raised as ConfigError (not ValueError) so pydantic lets it through
        # with the exact key instead of wrapping it at the root.
        ids: set[str] = set()
        owners: dict[str, int] = {}
        for i, account in enumerate(self.accounts):
            if account.id in ids:
                raise ConfigError(f"accounts[{i}].id", f"account id {account.id!r} appears twice")
            ids.add(account.id)
            if account.plan not in self.plans:
                raise ConfigError(
                    f"accounts[{i}].plan",
                    f"plan {account.plan!r} is not defined (no [plans.{account.plan}] table)",
                )
            digests = [(f"tokens_sha256[{j}]", d) for j, d in enumerate(account.tokens_sha256)]
            digests += [
                (f"scoped_tokens[{j}].sha256", t.sha256)
                for j, t in enumerate(account.scoped_tokens)
            ]
            for where, digest in digests:
                if digest in owners:
                    raise ConfigError(
                        f"accounts[{i}].{where}",
                        f"digest already listed under accounts[{owners[digest]}];"
                        " a token belongs to one account and has one scope",
                    )
                owners[digest] = i
            for j, token in enumerate(account.scoped_tokens):
                for k, env in enumerate(token.environments):
                    if env not in account.environments:
                        raise ConfigError(
                            f"accounts[{i}].scoped_tokens[{j}].environments[{k}]",
                            f"{env!r} is not one of the account's environments"
                            f" ({', '.join(account.environments)})",
                        )
        # The scrapers' token is a scope of its own: one an account also holds would
        # make Prometheus's credentials file a key to that account's jobs, and every
        # holder of the account's token a scraper.
        scraper = self.metrics.token_sha256
        if scraper and scraper in owners:
            raise ConfigError(
                "metrics.token_sha256",
                f"digest already listed under accounts[{owners[scraper]}]; a token belongs to"
                " one account and has one scope: give the scrapers a token of their own"
                " (`jobsd token`)",
            )

    def account(self, account_id: str) -> AccountConfig | None:
        for account in self.accounts:
            if account.id == account_id:
                return account
        return None

    def default_environments(self) -> dict[str, str]:
        """account id -> its default environment (what a pre-environment job belongs to)."""
        return {a.id: a.default_environment for a in self.accounts}

    def plan_of(self, account: AccountConfig) -> PlanConfig:
        return self.plans[account.plan]


_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
    "model_type": "must be a table",
    "dict_type": "must be a table",
    "tuple_type": "must be an array",
    "int_type": "must be an integer",
    "string_type": "must be a string",
    "path_type": "must be a string (a file path)",
    "too_short": "must not be empty",
}


def _error_from(exc: ValidationError) -> ConfigError:
    first = exc.errors(include_url=False, include_input=False)[0]
    key = ""
    for part in first["loc"]:
        if isinstance(part, int):
            key += f"[{part}]"
        elif part != "[key]":  # a bad table name: the name itself is the key
            key += f".{part}" if key else part
    ctx = first.get("ctx", {})
    if first["type"] == "greater_than_equal":
        bound = ctx["ge"]
        message = "must be -1 (unlimited) or >= 0" if bound == -1 else f"must be >= {bound}"
    elif first["type"] == "less_than_equal":
        message = f"must be <= {ctx['le']}"
    else:
        message = _MESSAGES.get(first["type"]) or first["msg"].removeprefix("Value error, ")
    return ConfigError(key or "<root>", message)


def _validate(data: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise _error_from(exc) from None


def parse_config(text: str, source: str = "<config>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = re.search(r"\(at line (\d+), column (\d+)\)$", str(exc))
        key = f"{source}:{where[1]}:{where[2]}" if where else source
        raise ConfigError(key, f"not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(source, "not valid TOML: nested too deeply") from None
    return _validate(data)


def load_config(path: Path) -> Config:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            str(path), f"cannot read the config file: {exc.strerror or exc}"
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(str(path), "the config file is not valid UTF-8") from None
    return parse_config(text, source=str(path))


def builtin_config(data_dir: Path, token_sha256: str) -> Config:
    """What `jobsd serve` runs on without --config: one unlimited local account."""
    data_dir = data_dir.absolute()
    return _validate(
        {
            "storage": {"path": data_dir / "jobsd.sqlite3"},
            "secrets": {"key_file": data_dir / "secret.key"},
            "plans": {"local": {"runs_included": -1, "active_jobs_limit": -1, "max_timeout": 300}},
            "accounts": [{"id": "local", "plan": "local", "tokens_sha256": [token_sha256]}],
        }
    )


def new_token() -> str:
    """256 random bits behind a prefix that secret scanners can match."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


__all__ = [
    "API_VERSIONS",
    "DEFAULT_API_VERSION",
    "DEFAULT_ENVIRONMENT",
    "AccountConfig",
    "ApiVersion",
    "Config",
    "LogConfig",
    "MetricsConfig",
    "OutboundConfig",
    "PlanConfig",
    "RetentionConfig",
    "SchedulerConfig",
    "ScopedToken",
    "SecretsConfig",
    "ServerConfig",
    "StorageConfig",
    "TokenMatch",
    "builtin_config",
    "load_config",
    "new_token",
    "parse_config",
    "token_sha256",
]
