"""2026-08-07 job documents in, a validated base spec and environment entries out.

The envelope, the slug and every configuration field follow the same rules
as 2026-06-04 (`jobsd.api.documents`, whose checks this reuses); what is new
is the schedule's absence (a manual job), `timezone`, `retry_policy`,
headers as a name -> value object, and the `environments` map of sparse
overlays. Every bad field is reported at once, each with its pointer.

Decisions where the spec is silent:
- Header names compare without regard to case: two names equal but for
  case, in the base or in one environment's overrides, are a 422.
- In an overlay, a leaf sent as `null` inherits, as if it were absent; the
  read-only `next_run_at` the API renders in each entry is ignored on input.
- `enabled` in an entry defaults to true for a one-off (its keys name its
  targets) and to false otherwise (the spec: only `enabled: true` runs).
- An overlay's `schedule` must be a cron expression (it overrides a
  recurring job's cadence); `schedule` and `timezone` on a job that is not
  recurring, in the base or an overlay, are a 422.
- A one-off with an empty (or no) `environments` map targets the caller's
  only environment when it has exactly one; otherwise naming them is
  required (422): a one-off that runs nowhere is never what was meant.
- `retry_policy` must be a string or null here; whether the account has
  that policy is the store's check (in the write's transaction).
"""

from __future__ import annotations

from typing import Final, TypeVar

from jobsd.api import documents as d
from jobsd.api.fields import (
    FIELD_VALUE,
    FIELD_VALUE_RULE,
    MAX_HEADERS,
    configuration_size_problem,
    header_name_problem,
)
from jobsd.errors import ScheduleError, ValidationFailed, not_found, pointer_part
from jobsd.messages import EnvironmentSpec, Header, HttpConfig, JobKind, JobSpec, Overlay
from jobsd.schedule import CronSchedule, parse_schedule
from jobsd.zones import timezone_problem

_ATTRS: Final = "/data/attributes"
_CONF: Final = "/data/attributes/configuration"
_ENVS: Final = "/data/attributes/environments"
_MAX_HEADER_NAME: Final = 200
_MAX_HEADER_VALUE: Final = 8192
_T = TypeVar("_T")


def parse_job_document(
    doc: object, *, path_slug: str | None, max_timeout_s: int, environments: tuple[str, ...]
) -> tuple[JobSpec, dict[str, EnvironmentSpec]]:
    """Validate a decoded POST (`path_slug` None) or PUT body.

    `environments`: the ones the caller may name (the account's, narrowed to
    the token's scope). Returns the base spec and the entries to set.
    """
    if path_slug is not None and not d.is_slug(path_slug):
        raise not_found("No job has this id: job ids are 1-100 characters of a-z 0-9 - _.")
    errs = d._Errors()
    data = d._envelope(errs, doc)
    if data is None:
        raise ValidationFailed(errs.items)
    d._refuse_conflicts(data, path_slug)
    slug = d._slug(errs, data, path_slug)
    attrs = d._object(errs, data.get("attributes", d.MISSING), _ATTRS, "`attributes`")
    if attrs is None:
        raise ValidationFailed(errs.items)
    name = d._string(errs, attrs.get("name", d.MISSING), f"{_ATTRS}/name", min_len=1, max_len=200)
    description = attrs.get("description")
    if description is not None:
        description = d._string(errs, description, f"{_ATTRS}/description", max_len=2000)
    d._choice(errs, attrs, "type", f"{_ATTRS}/type", ("http",))
    d._choice(errs, attrs, "concurrency_policy", f"{_ATTRS}/concurrency_policy", ("ALLOW",))
    schedule, kind = _schedule(errs, attrs.get("schedule"))
    timezone = _timezone(errs, attrs.get("timezone"), f"{_ATTRS}/timezone", kind)
    retry_policy = _policy(errs, attrs.get("retry_policy"), f"{_ATTRS}/retry_policy")
    conf = d._object(errs, attrs.get("configuration", d.MISSING), _CONF, "`configuration`")
    config = (
        HttpConfig(url="")
        if conf is None
        else d._configuration(errs, conf, max_timeout_s, _header_map)
    )
    entries = _environments(
        errs, attrs.get("environments", d.MISSING), kind, environments, max_timeout_s, config
    )
    if errs.items:
        raise ValidationFailed(errs.items)
    spec = JobSpec(
        slug,
        name or "",
        description,
        schedule,
        config,
        kind=kind,
        timezone=timezone,
        retry_policy=retry_policy,
    )
    return spec, entries


def _schedule(errs: d._Errors, value: object) -> tuple[str | None, JobKind]:
    if value is None:
        return None, JobKind.MANUAL
    text, kind = d._schedule(errs, value)
    return text, kind


def _timezone(errs: d._Errors, value: object, ptr: str, kind: JobKind) -> str | None:
    if value is None:
        return None
    text = d._string(errs, value, ptr, max_len=100)
    if text is None:
        return None
    if kind is not JobKind.RECURRING:
        errs.add("not_recurring", ptr, "`timezone` applies to a cron schedule only.")
    elif problem := timezone_problem(text):
        errs.add("invalid_timezone", ptr, problem)
    return text


def _policy(errs: d._Errors, value: object, ptr: str) -> str | None:
    if value is None:
        return None
    return d._string(errs, value, ptr, min_len=1, max_len=100)


def _header_map(errs: d._Errors, value: object) -> tuple[Header, ...]:
    """2026-08-07: `headers` is a name -> value object."""
    ptr = f"{_CONF}/headers"
    if value is d.MISSING:
        return ()
    if not isinstance(value, dict):
        errs.add(
            "invalid_type",
            ptr,
            f"`headers` must be an object of name: value, not {d._kind(value)}.",
        )
        return ()
    headers: list[Header] = []
    seen: dict[str, str] = {}
    for name, val in value.items():
        header = _header(errs, name, val, f"{ptr}/{pointer_part(name)}", seen)
        if header is not None:
            headers.append(header)
    return tuple(headers)


def _header(
    errs: d._Errors, name: str, value: object, ptr: str, seen: dict[str, str]
) -> Header | None:
    """One header from a map: its name (the key) and value; `seen` catches case twins."""
    ok = True
    if not 1 <= len(name) <= _MAX_HEADER_NAME:
        errs.add("invalid_header", ptr, f"A header name is 1-{_MAX_HEADER_NAME} characters.")
        ok = False
    elif problem := header_name_problem(name):
        errs.add("invalid_header", ptr, problem)
        ok = False
    elif name.lower() in seen:
        errs.add(
            "duplicate_header",
            ptr,
            f"{name} and {seen[name.lower()]} are the same header (names ignore case); keep one.",
        )
        ok = False
    else:
        seen[name.lower()] = name
    text = d._string(errs, value, ptr, max_len=_MAX_HEADER_VALUE, chars_code=None)
    if text is not None and not FIELD_VALUE.fullmatch(text):
        errs.add("invalid_header", ptr, FIELD_VALUE_RULE)
        ok = False
    return Header(name, text) if ok and text is not None else None


_REQUEST_LEAVES: Final = (
    "url",
    "method",
    "timeout",
    "body",
    "success_status",
    "tls_verify",
    "ca_cert",
)
_LEAVES: Final = (*_REQUEST_LEAVES, "schedule", "timezone", "retry_policy")


def _environments(
    errs: d._Errors,
    value: object,
    kind: JobKind,
    allowed: tuple[str, ...],
    max_timeout_s: int,
    base: HttpConfig,
) -> dict[str, EnvironmentSpec]:
    if value is d.MISSING:
        value = {}
    if not isinstance(value, dict):
        errs.add(
            "invalid_type",
            _ENVS,
            f"`environments` must be an object keyed by environment, not {d._kind(value)}.",
        )
        return {}
    entries: dict[str, EnvironmentSpec] = {}
    for env, entry in value.items():
        ptr = f"{_ENVS}/{pointer_part(env)}"
        if env not in allowed:
            errs.add(
                "unknown_environment",
                ptr,
                f"No environment {env!r} here; this token may name: {', '.join(allowed)}.",
            )
            continue
        obj = d._object(errs, entry, ptr, f"The entry for {env}")
        if obj is None:
            continue
        entries[env] = _entry(errs, obj, ptr, kind, max_timeout_s)
        overlay = entries[env].overlay
        if overlay is not None:  # the bounds on one job hold for what each environment sends
            effective = overlay.apply(base)
            if len(effective.headers) > MAX_HEADERS:
                count = len(effective.headers)
                errs.add(
                    "too_many_headers",
                    ptr,
                    f"{count} headers with this environment's; a job may have {MAX_HEADERS}.",
                )
            if problem := configuration_size_problem(effective):
                errs.add("configuration_too_large", ptr, f"In {env}: {problem}")
    if kind is JobKind.ONE_OFF and not entries and not errs.items:
        if len(allowed) != 1:
            errs.add(
                "environment_required",
                _ENVS,
                "A one-off runs once in each environment named by the keys of `environments`; "
                f"name at least one of {', '.join(allowed)}.",
            )
        else:
            entries[allowed[0]] = EnvironmentSpec(True)
    return entries


def _entry(
    errs: d._Errors, obj: dict[str, object], ptr: str, kind: JobKind, max_timeout_s: int
) -> EnvironmentSpec:
    enabled = obj.get("enabled", kind is JobKind.ONE_OFF)
    if not isinstance(enabled, bool):
        errs.add(
            "invalid_type",
            f"{ptr}/enabled",
            f"`enabled` must be true or false, not {d._kind(enabled)}.",
        )
        enabled = False
    leaves: dict[str, object] = {}
    headers: list[Header] = []
    seen: dict[str, str] = {}
    for key, value in obj.items():
        at = f"{ptr}/{pointer_part(key)}"
        group, dot, header_name = key.partition(".")
        if key in ("enabled", "next_run_at") or value is None:
            continue
        if group == "headers" and dot:
            header = _header(errs, header_name, value, at, seen)
            if header is not None:
                headers.append(header)
        elif key in _LEAVES:
            leaves[key] = _leaf(errs, key, value, at, kind, max_timeout_s)
        else:
            allowed = ", ".join((*_LEAVES, "headers.<name>"))
            errs.add("unknown_field", at, f"Not an overridable leaf; allowed: enabled, {allowed}.")
    overlay = Overlay(
        url=_as(str, leaves.get("url")),
        method=_as(str, leaves.get("method")),
        timeout_s=_as(int, leaves.get("timeout")),
        body=_as(str, leaves.get("body")),
        success_status=_as(str, leaves.get("success_status")),
        tls_verify=_as(bool, leaves.get("tls_verify")),
        ca_cert=_as(str, leaves.get("ca_cert")),
        schedule=_as(str, leaves.get("schedule")),
        timezone=_as(str, leaves.get("timezone")),
        retry_policy=_as(str, leaves.get("retry_policy")),
        headers=tuple(headers),
    )
    return EnvironmentSpec(enabled, overlay)


def _as(kind: type[_T], value: object) -> _T | None:
    return value if isinstance(value, kind) else None


def _leaf(
    errs: d._Errors, key: str, value: object, ptr: str, kind: JobKind, max_timeout_s: int
) -> object:
    """One overlay leaf, checked as the base field it overrides."""
    if key == "url":
        return d._url(errs, value, ptr) or None
    if key == "method":
        return d._choice(errs, {key: value}, key, ptr, d.METHODS)
    if key == "timeout":
        return d._timeout(errs, value, max_timeout_s, ptr)
    if key == "body":
        return d._body(errs, value, ptr)
    if key == "success_status":
        return d._success_status(errs, value, ptr)
    if key == "tls_verify":
        return d._boolean(errs, {key: value}, key, ptr)
    if key == "ca_cert":
        return d._ca_cert(errs, value, ptr)
    if key == "retry_policy":
        return _policy(errs, value, ptr)
    if kind is not JobKind.RECURRING:
        errs.add("not_recurring", ptr, f"`{key}` can be overridden on a recurring job only.")
        return None
    if key == "timezone":
        return _timezone(errs, value, ptr, kind)
    text = d._string(errs, value, ptr, max_len=None, chars_code="invalid_schedule")
    if text is None:
        return None
    try:
        parsed = parse_schedule(text)
    except ScheduleError as e:
        errs.add("invalid_schedule", ptr, e.detail)
        return None
    if not isinstance(parsed, CronSchedule):
        errs.add(
            "invalid_schedule",
            ptr,
            "An environment's `schedule` overrides a recurring job's cadence: use a cron "
            "expression.",
        )
        return None
    return text
