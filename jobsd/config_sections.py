"""The config's sections: one frozen pydantic model per TOML table.

Split from `config.py`, which assembles them into `Config`, checks how they
refer to one another (an account's plan, token digests, scoped tokens) and
turns pydantic's errors into `ConfigError`s naming the key. Each key's
grammar is in `config_fields.py`; `etc/jobsd.toml` documents every key
here with its unit, and a test walks these models and that file so the two
cannot drift.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from jobsd.config_fields import (
    AbsolutePath,
    Bound,
    Cidr,
    Digest,
    Flag,
    Limit,
    Listen,
    Name,
    OptionalDigest,
    OptionalUrl,
    Section,
    UrlPath,
    WorkerProcesses,
    split_listen,
)
from jobsd.errors import ConfigError

API_VERSIONS = ("2026-06-04", "2026-08-07")  # oldest first; the first is the default
DEFAULT_API_VERSION: Literal["2026-06-04"] = "2026-06-04"
DEFAULT_ENVIRONMENT = "production"
MAX_AUTO_PAUSE_AFTER = 1000
DEFAULT_MAX_JOBS = 100_000  # jobs (any kind or state) an account may store; see PlanConfig


class ServerConfig(Section):
    listen: Listen = "127.0.0.1:8080"
    max_connections: Annotated[int, Field(strict=True, ge=1, le=65536)] = 256
    # 0: all but an eighth of max_connections (jobsd.api.client_share)
    max_connections_per_client: Annotated[int, Field(strict=True, ge=0, le=65536)] = 0
    keep_alive_timeout_s: Annotated[int, Field(strict=True, ge=1, le=3600)] = 5
    max_request_header_bytes: Annotated[int, Field(strict=True, ge=1024, le=1048576)] = 16384
    trusted_proxies: tuple[Cidr, ...] = ()
    body_timeout_s: Annotated[int, Field(strict=True, ge=1, le=3600)] = 30
    request_timeout_s: Annotated[int, Field(strict=True, ge=1, le=3600)] = 60
    write_timeout_s: Annotated[int, Field(strict=True, ge=1, le=3600)] = 10

    def model_post_init(self, context: Any, /) -> None:
        if self.request_timeout_s <= self.body_timeout_s:
            raise ConfigError(
                "server.request_timeout_s",
                f"must be longer than server.body_timeout_s ({self.body_timeout_s}),"
                " or a slow body would be cut short by the request deadline",
            )

    @property
    def client_share(self) -> int:
        """The connections one client (a peer address) may hold at once."""
        if self.max_connections_per_client:
            return min(self.max_connections_per_client, self.max_connections)
        return max(1, self.max_connections - max(1, self.max_connections // 8))

    @property
    def host(self) -> str:
        """The bind address without IPv6 brackets."""
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]


class StorageConfig(Section):
    path: AbsolutePath = Path("/var/lib/jobsd/jobsd.sqlite3")


class SecretsConfig(Section):
    key_file: AbsolutePath = Path("/var/lib/jobsd/secret.key")


class SchedulerConfig(Section):
    workers: Annotated[int, Field(strict=True, ge=1, le=1024)] = 64
    max_pending_runs: Annotated[int, Field(strict=True, ge=1, le=10_000_000)] = 10_000
    # At most ten years: any integer once passed, and one past what a timedelta
    # holds (~2.7 million years) raised out of the scheduler at a late fire.
    misfire_grace_s: Annotated[int, Field(strict=True, ge=0, le=315_360_000)] = 60
    # At most a day: past ~1.8e13 s the stop timeout jobsd asks systemd for
    # (EXTEND_TIMEOUT_USEC, jobsd.notify) overflows and systemd ignores it.
    shutdown_grace_s: Annotated[int, Field(strict=True, ge=0, le=86_400)] = 10
    # Processes that perform the requests: "auto" one per usable core but one
    # (jobsd.workers.count.process_count), 0 none: the daemon performs them.
    worker_processes: WorkerProcesses = "auto"


class OutboundConfig(Section):
    allow_cidrs: tuple[Cidr, ...] = ()
    # How long a connection a run finished with is kept for the next run of
    # the same account, origin and TLS settings (jobsd.keepalive); 0 = never.
    keepalive_s: Annotated[float, Field(strict=True, ge=0, le=10, allow_inf_nan=False)] = 1.0


class RetentionConfig(Section):
    # At most a million days (2,700 years): any TOML integer once passed, and
    # days * 86400e6 us beyond SQLite's integers raised in the first pass.
    days: Annotated[int, Field(strict=True, ge=1, le=1_000_000)] = 90
    max_runs_per_job: Annotated[int, Field(strict=True, ge=1)] = 10000


class MetricsConfig(Section):
    enabled: Flag = True
    path: UrlPath = "/metrics"
    allow_cidrs: tuple[Cidr, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    token_sha256: OptionalDigest = ""


class LogConfig(Section):
    format: Literal["text", "json"] = "text"
    level: Literal["debug", "info", "warning", "error"] = "info"


class PlanConfig(Section):
    """No defaults for its limits: a plan is a promise to customers, so every
    limit is explicit. `auto_pause_after` (spec/OPERATIONS.md) is off (0) by
    default: consecutive failed runs, after retries, that pause a job in an
    environment (`jobsd.alert_rules`).

    `max_jobs`, the jobs an account may store (any kind, any state), has a
    default: it bounds what one account may put on the disk all accounts
    share rather than what a customer buys, so a config written before it
    is bounded too (README, "Bounds on an account's jobs")."""

    runs_included: Limit
    active_jobs_limit: Limit
    max_timeout: Annotated[int, Field(strict=True, ge=1, le=86400)]
    auto_pause_after: Annotated[int, Field(strict=True, ge=0, le=MAX_AUTO_PAUSE_AFTER)] = 0
    max_jobs: Bound = DEFAULT_MAX_JOBS


ApiVersion = Literal["2026-06-04", "2026-08-07"]


def _distinct(names: tuple[str, ...]) -> tuple[str, ...]:
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"{name!r} appears twice")
    return names


Environments = Annotated[
    tuple[Name, ...], Field(min_length=1, max_length=64), AfterValidator(_distinct)
]


class ScopedToken(Section):
    """A token limited to some of its account's environments."""

    sha256: Digest
    environments: Environments


class AccountConfig(Section):
    id: Name
    plan: Name
    tokens_sha256: tuple[Digest, ...]
    sign_requests: Flag = False
    alert_url: OptionalUrl = ""
    api_version: ApiVersion = DEFAULT_API_VERSION
    environments: Environments = (DEFAULT_ENVIRONMENT,)
    scoped_tokens: tuple[ScopedToken, ...] = ()

    @property
    def default_environment(self) -> str:
        return self.environments[0]
