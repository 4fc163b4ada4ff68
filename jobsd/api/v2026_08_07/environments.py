"""2026-08-07 `environments`: each entry a sparse overlay, checked leaf by leaf.

An entry may hold `enabled`, the request leaves (each checked as the base
field it overrides), `schedule`/`timezone` (recurring jobs only; a schedule
override must be cron), `retry_policy`, and `headers.<name>`; anything else
is a 422 at its pointer, as is an environment the caller may not name. The
bounds on one job hold for each environment's effective request. Also here:
one header of a name -> value object, checked alike in the base and an
overlay (a time zone and a retry policy reference are `jobsd.api.extensions`'
checks, shared with the seed version).
"""

from __future__ import annotations

from typing import Final, TypeVar

from jobsd.api import doc_reader as r
from jobsd.api import documents as d
from jobsd.api.extensions import policy_attribute, timezone_attribute
from jobsd.api.fields import (
    FIELD_VALUE,
    FIELD_VALUE_RULE,
    header_name_problem,
)
from jobsd.errors import ScheduleError, pointer_part
from jobsd.job_bounds import MAX_HEADERS, configuration_size_problem
from jobsd.job_model import EnvironmentSpec, Header, HttpConfig, JobKind, Overlay
from jobsd.schedule import CronSchedule, parse_written_schedule

_ENVS: Final = "/data/attributes/environments"
_MAX_HEADER_NAME: Final = 200
_MAX_HEADER_VALUE: Final = 8192
_T = TypeVar("_T")


def header(
    errs: r.Errors, name: str, value: object, ptr: str, seen: dict[str, str]
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
    text = r.read_string(errs, value, ptr, max_len=_MAX_HEADER_VALUE, chars_code=None)
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
# What the API renders in an entry that no client sets: ignored on input, so
# a client may send back what it read.
READ_ONLY: Final = ("next_run_at", "paused_reason")


def environments(
    errs: r.Errors,
    value: object,
    kind: JobKind,
    allowed: tuple[str, ...],
    max_timeout_s: int,
    base: HttpConfig,
    *,
    aimed_elsewhere: bool = False,
) -> dict[str, EnvironmentSpec]:
    """The entries to set; `aimed_elsewhere`: the job keeps entries outside `allowed`
    (a one-off with none named here is then still aimed, by those)."""
    if value is r.MISSING:
        value = {}
    if not isinstance(value, dict):
        errs.add(
            "invalid_type",
            _ENVS,
            f"`environments` must be an object keyed by environment, not {r.kind(value)}.",
        )
        return {}
    entries: dict[str, EnvironmentSpec] = {}
    found_before = len(errs.items)  # problems elsewhere do not hide this map's own
    for env, entry in value.items():
        ptr = f"{_ENVS}/{pointer_part(env)}"
        if env not in allowed:
            errs.add(
                "unknown_environment",
                ptr,
                f"No environment {env!r} here; this token may name: {', '.join(allowed)}.",
            )
            continue
        obj = r.read_object(errs, entry, ptr, f"The entry for {env}")
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
    if (
        kind is JobKind.ONE_OFF
        and not entries
        and not aimed_elsewhere
        and len(errs.items) == found_before
    ):
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
    errs: r.Errors, obj: dict[str, object], ptr: str, kind: JobKind, max_timeout_s: int
) -> EnvironmentSpec:
    enabled = obj.get("enabled", kind is JobKind.ONE_OFF)
    if not isinstance(enabled, bool):
        errs.add(
            "invalid_type",
            f"{ptr}/enabled",
            f"`enabled` must be true or false, not {r.kind(enabled)}.",
        )
        enabled = False
    leaves: dict[str, object] = {}
    headers: list[Header] = []
    seen: dict[str, str] = {}
    for key, value in obj.items():
        at = f"{ptr}/{pointer_part(key)}"
        group, dot, header_name = key.partition(".")
        if key in ("enabled", *READ_ONLY) or value is None:
            continue
        if group == "headers" and dot:
            one = header(errs, header_name, value, at, seen)
            if one is not None:
                headers.append(one)
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
    errs: r.Errors, key: str, value: object, ptr: str, kind: JobKind, max_timeout_s: int
) -> object:
    """One overlay leaf, checked as the base field it overrides."""
    if key == "url":
        return d.read_url(errs, value, ptr) or None
    if key == "method":
        return r.read_choice(errs, {key: value}, key, ptr, d.METHODS)
    if key == "timeout":
        return d.read_timeout(errs, value, max_timeout_s, ptr)
    if key == "body":
        return d.read_body(errs, value, ptr)
    if key == "success_status":
        return d.read_success_status(errs, value, ptr)
    if key == "tls_verify":
        return r.read_boolean(errs, {key: value}, key, ptr)
    if key == "ca_cert":
        return d.read_ca_cert(errs, value, ptr)
    if key == "retry_policy":
        return policy_attribute(errs, value, ptr)
    if kind is not JobKind.RECURRING:
        errs.add("not_recurring", ptr, f"`{key}` can be overridden on a recurring job only.")
        return None
    if key == "timezone":
        return timezone_attribute(errs, value, ptr, kind)
    text = r.read_string(errs, value, ptr, max_len=None, chars_code="invalid_schedule")
    if text is None:
        return None
    try:
        parsed = parse_written_schedule(text)
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
