"""Job attributes a version's contract does not have, or shares with the other.

`timezone` and `retry_policy` are the newer spec's and, served to
2026-06-04 clients, extensions there (VERSIONS.md); `overlap_policy` is
jobsd's own, an extension in both. One check each, used by
both versions' parsers, so a value means the same whichever version wrote
it. In a version where an attribute is an extension, a PUT that leaves it
out keeps what is stored and an explicit `null` resets it
(`extension_values`), so a client that does not know it cannot erase it.

Standalone (errors go to any `Problems`), so that both document parsers
can use it without importing each other.
"""

from __future__ import annotations

from typing import Protocol

from jobsd.api.fields import SURROGATE
from jobsd.job_model import JobKind, OverlapPolicy
from jobsd.zones import timezone_problem

_ATTRS = "/data/attributes"
# The seed version's extension attributes that a write may set (`kind` is read-only).
EXTENSIONS = frozenset({"timezone", "retry_policy", "overlap_policy"})
MAX_POLICY_ID = 100
MAX_ZONE_NAME = 100


class Problems(Protocol):
    def add(self, code: str, pointer: str, detail: str) -> None: ...


def _text(errs: Problems, value: object, ptr: str, name: str, max_len: int) -> str | None:
    """A string of 1-`max_len` characters (the codes are the job fields')."""
    if not isinstance(value, str):
        errs.add("invalid_type", ptr, f"`{name}` must be a string or null.")
    elif not value:
        errs.add("too_short", ptr, f"`{name}` must not be empty.")
    elif len(value) > max_len:
        errs.add("too_long", ptr, f"`{name}` is {len(value)} characters; the limit is {max_len}.")
    elif "\x00" in value or SURROGATE.search(value):
        detail = f"`{name}` must not contain NUL or unpaired surrogates."
        errs.add("invalid_characters", ptr, detail)
    else:
        return value
    return None


def timezone_attribute(errs: Problems, value: object, ptr: str, kind: JobKind) -> str | None:
    """An IANA zone name, on a recurring job only (422 with its pointer otherwise)."""
    if value is None:
        return None
    text = _text(errs, value, ptr, "timezone", MAX_ZONE_NAME)
    if text is None:
        return None
    if kind is not JobKind.RECURRING:
        errs.add("not_recurring", ptr, "`timezone` applies to a cron schedule only.")
    elif problem := timezone_problem(text):
        errs.add("invalid_timezone", ptr, problem)
    return text


def policy_attribute(errs: Problems, value: object, ptr: str) -> str | None:
    """A retry policy id, or null; whether the account has it is the store's check."""
    if value is None:
        return None
    return _text(errs, value, ptr, "retry_policy", MAX_POLICY_ID)


def overlap_attribute(errs: Problems, attrs: dict[str, object]) -> OverlapPolicy:
    """`overlap_policy`: ALLOW or SKIP; null (or absent) is the default, ALLOW."""
    value = attrs.get("overlap_policy")
    if value is None:
        return OverlapPolicy.ALLOW
    if not isinstance(value, str) or value not in {p.value for p in OverlapPolicy}:
        choices = " or ".join(p.value for p in OverlapPolicy)
        errs.add(
            "invalid_value",
            f"{_ATTRS}/overlap_policy",
            f"`overlap_policy` must be {choices} (exact case), or null for ALLOW.",
        )
        return OverlapPolicy.ALLOW
    return OverlapPolicy(value)


def extension_values(
    errs: Problems, attrs: dict[str, object], kind: JobKind
) -> tuple[str | None, str | None, OverlapPolicy, frozenset[str]]:
    """(timezone, retry_policy, overlap_policy, the ones the document sets) for the
    seed version, where all three are extensions: one left out is not set (the
    stored value stays)."""
    given = frozenset(k for k in EXTENSIONS if k in attrs)
    timezone = timezone_attribute(errs, attrs.get("timezone"), f"{_ATTRS}/timezone", kind)
    policy = policy_attribute(errs, attrs.get("retry_policy"), f"{_ATTRS}/retry_policy")
    return timezone, policy, overlap_attribute(errs, attrs), given
