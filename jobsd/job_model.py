"""What a job is: its request, its environments' overrides, its kind, as frozen values.

Split from `jobsd.messages` (the values actors send each other about runs):
these are what the store hands the API and the scheduler about jobs, and
what an executor performs (`HttpConfig`). Immutable, like every value that
crosses an actor boundary, so no two actors ever share mutable state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

# jobsd's own request headers (run id, job, scheduled instant) start with this;
# a job may not set such a name, so a target never gets two of them.
OWN_HEADER_PREFIX = "X-Jobsd-"


@dataclass(frozen=True, slots=True)
class Header:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """The request a job performs (`JobHttpConfiguration`), values in plaintext."""

    url: str
    method: str = "POST"
    headers: tuple[Header, ...] = ()
    success_status: str = "2xx"
    tls_verify: bool = True
    ca_cert: str | None = None
    body: str | None = None
    timeout_s: int = 30
    # Not the job's: which runs may share a kept connection (jobsd.keepalive).
    # The executor sets the run's account id; None (alerts, tools) never reuses.
    reuse_scope: str | None = None

    def job_headers(self) -> tuple[Header, ...]:
        """The headers a run sends for the job: without any under jobsd's own
        prefix, which a job stored before that rule may still hold."""
        own = OWN_HEADER_PREFIX.lower()
        return tuple(h for h in self.headers if not h.name.lower().startswith(own))

    def payload(self) -> bytes:
        """The body's bytes as sent, and as signed."""
        return (self.body or "").encode("utf-8")


class OverlapPolicy(StrEnum):
    """What a slot does while a run of the same job and environment is still going."""

    ALLOW = "ALLOW"  # fire anyway
    SKIP = "SKIP"  # record the slot as skipped (CANCELED, not metered), send nothing


class JobKind(StrEnum):
    """How a job runs, derived from its base schedule."""

    RECURRING = "recurring"
    MANUAL = "manual"
    ONE_OFF = "one_off"


@dataclass(frozen=True, slots=True)
class Overlay:
    """One environment's sparse overrides of the base job; None inherits.

    `schedule` and `timezone` apply to recurring jobs only. Header overrides
    replace the base headers of the same name (any case) and add the rest.
    """

    url: str | None = None
    method: str | None = None
    timeout_s: int | None = None
    body: str | None = None
    success_status: str | None = None
    tls_verify: bool | None = None
    ca_cert: str | None = None
    schedule: str | None = None
    timezone: str | None = None
    retry_policy: str | None = None
    headers: tuple[Header, ...] = ()

    def apply(self, base: HttpConfig) -> HttpConfig:
        """The request this environment sends: the base with these leaves over it."""
        overrides = {h.name.lower(): h for h in self.headers}
        headers: list[Header] = []
        for header in base.headers:
            key = header.name.lower()
            if key not in overrides:
                headers.append(header)
            elif all(h.name.lower() != key for h in headers):
                headers.append(overrides[key])  # in the place of the first it replaces
        placed = {h.name.lower() for h in headers}
        headers.extend(h for h in self.headers if h.name.lower() not in placed)
        return HttpConfig(
            url=base.url if self.url is None else self.url,
            method=base.method if self.method is None else self.method,
            headers=tuple(headers),
            success_status=(
                base.success_status if self.success_status is None else self.success_status
            ),
            tls_verify=base.tls_verify if self.tls_verify is None else self.tls_verify,
            ca_cert=base.ca_cert if self.ca_cert is None else self.ca_cert,
            body=base.body if self.body is None else self.body,
            timeout_s=base.timeout_s if self.timeout_s is None else self.timeout_s,
            reuse_scope=base.reuse_scope,
        )


@dataclass(frozen=True, slots=True)
class JobSpec:
    """The writable base of a job, validated; what create and replace take."""

    slug: str
    name: str
    description: str | None
    schedule: str | None  # None: a manual job
    config: HttpConfig
    kind: JobKind = JobKind.RECURRING
    timezone: str | None = None
    retry_policy: str | None = None
    overlap_policy: OverlapPolicy = OverlapPolicy.ALLOW


@dataclass(frozen=True, slots=True)
class EnvironmentSpec:
    """One environment entry as a request sets it. `overlay` None keeps the stored one.

    `add` False: set the entry only where the job has one. The seed version
    reads a job with no default-environment entry as `enabled: false`, so its
    write of `false` there adds none: written back as read, the job stays as
    it was (a one-off's entries are its targets, which 2026-08-07 shows).
    """

    enabled: bool
    overlay: Overlay | None = Overlay()
    add: bool = True


@dataclass(frozen=True, slots=True)
class JobWrite:
    """A create or a replace, as one API version can say it.

    `environments` are the entries the write sets; `owns` names every entry
    it replaces: an owned entry it does not set is removed, and one it does
    not own (another token scope's, an environment no longer configured, or
    every other environment for the seed version) is kept as it is. `keep`
    names base attributes left as stored (`timezone`, `retry_policy`,
    `overlap_policy`: extensions a version may omit without resetting them).
    """

    spec: JobSpec
    environments: Mapping[str, EnvironmentSpec]
    owns: frozenset[str]
    keep: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class JobEnvironment:
    """One environment of a stored job: its switch, its next fire, its overrides,
    and why it was auto-paused (read-only; cleared when it is enabled again)."""

    enabled: bool
    next_run_at: datetime | None
    overlay: Overlay = Overlay()
    paused_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """A job as stored: its base, its environments, and what the service maintains."""

    pk: int
    account_id: str
    spec: JobSpec
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    version: int
    environments: Mapping[str, JobEnvironment] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class JobCounting:
    """Which jobs count against `active_jobs_limit`, by the account's version.

    `enabled_in` set: the jobs enabled in that environment (2026-06-04 counts
    the default environment's). None: every permanent job, recurring or
    manual, enabled anywhere or not (2026-08-07).
    """

    enabled_in: str | None

    def counts(self, kind: JobKind, enabled: Mapping[str, bool]) -> bool:
        if self.enabled_in is None:
            return kind is not JobKind.ONE_OFF
        return enabled.get(self.enabled_in, False)
