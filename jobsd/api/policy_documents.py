"""Retry policy documents: a POST/PUT body in, a validated policy out; and out again.

The resource is the same in both API versions (the newer spec's
`RetryPolicy`, served to 2026-06-04 clients as well, VERSIONS.md), so
this module is shared. Pure, like `jobsd.api.documents`, whose checks it
reuses: every bad field is reported at once with its pointer, and the
rules themselves (0-10 retries, `max_delay_seconds` only with exponential
backoff, status patterns) are `jobsd.retry.RetryPolicy`'s, turned into 422
entries here.

Decisions where the spec is silent:
- A policy id follows the job id rule: 1-100 characters of a-z 0-9 - _,
  starting with a letter or digit (ids appear in paths and in jobs).
- Attributes outside the schema are refused (422 `unknown_field`), so a
  misspelt `retry_on_timout` is not silently a policy that never retries;
  the read-only ones (`created_at`, `updated_at`, `deleted_at`, `version`)
  are ignored, so a client may send back what it read.
- `max_delay_seconds: null` is the same as leaving it out.
"""

from __future__ import annotations

from typing import Final

from jobsd.api import doc_reader as r
from jobsd.api import documents as d
from jobsd.clock import iso
from jobsd.errors import (
    RetryPolicyError,
    ValidationFailed,
    conflict,
    not_found,
    pointer_part,
)
from jobsd.retry import Backoff, NamedRetryPolicy, RetryPolicy

TYPE: Final = "retry_policy"
_ATTRS: Final = "/data/attributes"
_READ_ONLY: Final = frozenset({"created_at", "updated_at", "deleted_at", "version"})
_WRITABLE: Final = frozenset(
    {
        "name",
        "max_retries",
        "backoff",
        "delay_seconds",
        "max_delay_seconds",
        "retry_on_timeout",
        "retry_on_connection_error",
        "retry_statuses",
        "retry_statuses_except",
    }
)


def parse_policy_document(doc: object, *, path_id: str | None) -> tuple[str, str, RetryPolicy]:
    """(id, name, rules) of a decoded POST (`path_id` None) or PUT body; raises if refused."""
    if path_id is not None and not d.is_slug(path_id):
        raise not_found("No retry policy has this id: ids are 1-100 characters of a-z 0-9 - _.")
    errs = r.Errors()
    if not isinstance(doc, dict):
        errs.add("invalid_type", "", f"The body must be an object with `data`, not {r.kind(doc)}.")
        raise ValidationFailed(errs.items)
    data = r.read_object(errs, doc.get("data", r.MISSING), "/data", "`data` (the retry policy)")
    if data is None:
        raise ValidationFailed(errs.items)
    kind = data.get("type", TYPE)
    if isinstance(kind, str) and kind != TYPE:
        raise conflict(
            "type_mismatch", f'This endpoint takes resources of type "{TYPE}".', "/data/type"
        )
    if not isinstance(kind, str):
        errs.add("invalid_type", "/data/type", f'`type` must be "{TYPE}", not {r.kind(kind)}.')
    policy_id = _id(errs, data.get("id", r.MISSING), path_id)
    attrs = r.read_object(errs, data.get("attributes", r.MISSING), _ATTRS, "`attributes`")
    if attrs is None:
        raise ValidationFailed(errs.items)
    name = r.read_string(
        errs, attrs.get("name", r.MISSING), f"{_ATTRS}/name", min_len=1, max_len=200
    )
    values = {
        "max_retries": _integer(errs, attrs, "max_retries"),
        "backoff": _backoff(errs, attrs.get("backoff", r.MISSING)),
        "delay_seconds": _integer(errs, attrs, "delay_seconds"),
        "max_delay_seconds": _integer(errs, attrs, "max_delay_seconds", optional=True),
        "retry_on_timeout": _flag(errs, attrs, "retry_on_timeout"),
        "retry_on_connection_error": _flag(errs, attrs, "retry_on_connection_error"),
        "retry_statuses": _patterns(errs, attrs, "retry_statuses"),
        "retry_statuses_except": _patterns(errs, attrs, "retry_statuses_except"),
    }
    for key in attrs:
        if key not in _WRITABLE and key not in _READ_ONLY:
            allowed = ", ".join(sorted(_WRITABLE))
            errs.add(
                "unknown_field",
                f"{_ATTRS}/{pointer_part(key)}",
                f"Unknown field; allowed: {allowed}.",
            )
    # The rules are judged even when some field was refused already (every bad
    # field at once): a refused field stands in as a value the rules accept.
    judged = {key: _STAND_INS.get(key) if value is None else value for key, value in values.items()}
    try:
        rules = RetryPolicy(**judged)  # type: ignore[arg-type]
    except RetryPolicyError as exc:
        for where, detail in exc.problems:
            errs.add("invalid_retry_policy", f"{_ATTRS}/{where}", detail)
    if errs.items:
        raise ValidationFailed(errs.items)
    assert name is not None
    return policy_id, name, rules


# For a required field already refused (None): a value every rule accepts,
# with exponential backoff so that a `max_delay_seconds` is still judged.
_STAND_INS: Final[dict[str, object]] = {
    "max_retries": 0,
    "backoff": Backoff.EXPONENTIAL,
    "delay_seconds": 1,
}


def render_policy(policy: NamedRetryPolicy) -> dict[str, object]:
    rules = policy.rules
    return {
        "id": policy.id,
        "type": TYPE,
        "attributes": {
            "name": policy.name,
            "max_retries": rules.max_retries,
            "backoff": rules.backoff.value,
            "delay_seconds": rules.delay_seconds,
            "max_delay_seconds": rules.max_delay_seconds,
            "retry_on_timeout": rules.retry_on_timeout,
            "retry_on_connection_error": rules.retry_on_connection_error,
            "retry_statuses": list(rules.retry_statuses),
            "retry_statuses_except": list(rules.retry_statuses_except),
            "created_at": iso(policy.created_at),
            "updated_at": iso(policy.updated_at),
            "deleted_at": None,  # a deleted policy is gone, never shown
            "version": policy.version,
        },
    }


def _id(errs: r.Errors, given: object, path_id: str | None) -> str:
    if path_id is not None:  # PUT: `id` may be omitted or null, else it must match
        if given is r.MISSING or given is None:
            return path_id
        if not isinstance(given, str):
            errs.add("invalid_type", "/data/id", f"`id` must be a string, not {r.kind(given)}.")
        elif given != path_id:
            raise conflict(
                "id_mismatch",
                "`data.id` differs from the policy id in the path; omit it or send the same id.",
                "/data/id",
            )
        return path_id
    if given is r.MISSING:
        errs.add("required", "/data/id", "`id` is required: the policy's id, e.g. retry-on-5xx.")
    elif not isinstance(given, str):
        errs.add("invalid_type", "/data/id", f"`id` must be a string, not {r.kind(given)}.")
    elif not d.is_slug(given):
        errs.add(
            "invalid_id",
            "/data/id",
            "`id` must be 1-100 characters of a-z 0-9 - _, starting with a letter or digit.",
        )
    else:
        return given
    return ""


def _integer(
    errs: r.Errors, attrs: dict[str, object], key: str, *, optional: bool = False
) -> int | None:
    """A whole number (an integral float counts); None when optional and absent or null."""
    value = attrs.get(key, None if optional else r.MISSING)
    ptr = f"{_ATTRS}/{key}"
    if value is None and optional:
        return None
    if value is r.MISSING:
        errs.add("required", ptr, f"`{key}` is required.")
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        errs.add("invalid_type", ptr, f"`{key}` must be a whole number, not {r.kind(value)}.")
        return None
    return value


def _backoff(errs: r.Errors, value: object) -> Backoff | None:
    ptr = f"{_ATTRS}/backoff"
    if value is r.MISSING:
        errs.add("required", ptr, "`backoff` is required: fixed or exponential.")
    elif not isinstance(value, str) or value not in {b.value for b in Backoff}:
        errs.add("invalid_value", ptr, "`backoff` must be fixed or exponential (exact case).")
    else:
        return Backoff(value)
    return None


def _flag(errs: r.Errors, attrs: dict[str, object], key: str) -> bool:
    value = attrs.get(key, False)
    if not isinstance(value, bool):
        errs.add(
            "invalid_type",
            f"{_ATTRS}/{key}",
            f"`{key}` must be true or false, not {r.kind(value)}.",
        )
        return False
    return value


def _patterns(errs: r.Errors, attrs: dict[str, object], key: str) -> tuple[str, ...]:
    """A list of strings; whether each is a status pattern is RetryPolicy's check.

    An item that is no string is refused here and stands in as `5xx`, so the
    rules' pointers to the items after it keep their indices."""
    value = attrs.get(key, [])
    ptr = f"{_ATTRS}/{key}"
    if not isinstance(value, list):
        errs.add("invalid_type", ptr, f"`{key}` must be an array of strings, not {r.kind(value)}.")
        return ()
    patterns: list[str] = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            patterns.append(item)
        else:
            errs.add(
                "invalid_type", f"{ptr}/{i}", f"A status pattern is a string, not {r.kind(item)}."
            )
            patterns.append("5xx")
    return tuple(patterns)
