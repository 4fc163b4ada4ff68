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
  read-only `next_run_at` and `paused_reason` the API renders in each entry
  are ignored on input.
- `enabled` in an entry defaults to true for a one-off (its keys name its
  targets) and to false otherwise (the spec: only `enabled: true` runs).
- An overlay's `schedule` must be a cron expression (it overrides a
  recurring job's cadence); `schedule` and `timezone` on a job that is not
  recurring, in the base or an overlay, are a 422.
- A one-off with an empty (or no) `environments` map targets the caller's
  only environment when it has exactly one; otherwise naming them is
  required (422): a one-off that runs nowhere is never what was meant.
  Unless a PUT's job keeps entries outside the caller's environments (a
  scoped token's narrowed map): those stay its targets, so the job read
  with an empty map and sent back is left aimed where it was.
- `retry_policy` must be a string or null here; whether the account has
  that policy is the store's check (in the write's transaction).
- `overlap_policy` (jobsd's extension, `jobsd.api.extensions`) left out of
  a PUT keeps the stored value; null resets it to ALLOW.
- A header the stored job holds more than once (the seed's array may; this
  version shows it once, values joined) that a PUT sends back as read keeps
  its stored lines: the joined value is what was read, not a new value to
  judge (it may pass the bound on one value), and the seed goes on reading
  the lines it wrote. All sent back as read, the headers stay as stored.
"""

from __future__ import annotations

from functools import partial
from typing import Final

from jobsd.api import doc_reader as r
from jobsd.api import documents as d
from jobsd.api.extensions import overlap_attribute, policy_attribute, timezone_attribute
from jobsd.api.v2026_08_07 import environments as e
from jobsd.api.v2026_08_07.render import header_map
from jobsd.errors import ValidationFailed, not_found, pointer_part
from jobsd.job_bounds import MAX_HEADERS
from jobsd.job_model import EnvironmentSpec, Header, HttpConfig, JobKind, JobSpec

_ATTRS: Final = "/data/attributes"
_CONF: Final = "/data/attributes/configuration"


def parse_job_document(
    doc: object,
    *,
    path_slug: str | None,
    max_timeout_s: int,
    environments: tuple[str, ...],
    aimed_elsewhere: bool = False,
    stored_headers: tuple[Header, ...] = (),
) -> tuple[JobSpec, dict[str, EnvironmentSpec]]:
    """Validate a decoded POST (`path_slug` None) or PUT body.

    `environments`: the ones the caller may name (the account's, narrowed to
    the token's scope). `aimed_elsewhere`: the job a PUT replaces keeps entries
    outside them. `stored_headers`: the base headers of the job a PUT replaces.
    Returns the base spec and the entries to set.
    """
    if path_slug is not None and not d.is_slug(path_slug):
        raise not_found("No job has this id: job ids are 1-100 characters of a-z 0-9 - _.")
    errs = r.Errors()
    data = d.envelope(errs, doc)
    if data is None:
        raise ValidationFailed(errs.items)
    d.refuse_conflicts(data, path_slug)
    slug = d.read_slug(errs, data, path_slug)
    attrs = r.read_object(errs, data.get("attributes", r.MISSING), _ATTRS, "`attributes`")
    if attrs is None:
        raise ValidationFailed(errs.items)
    name = r.read_string(
        errs, attrs.get("name", r.MISSING), f"{_ATTRS}/name", min_len=1, max_len=200
    )
    description = attrs.get("description")
    if description is not None:
        description = r.read_string(errs, description, f"{_ATTRS}/description", max_len=2000)
    r.read_choice(errs, attrs, "type", f"{_ATTRS}/type", ("http",))
    r.read_choice(errs, attrs, "concurrency_policy", f"{_ATTRS}/concurrency_policy", ("ALLOW",))
    schedule, kind = _schedule(errs, attrs.get("schedule"))
    timezone = timezone_attribute(errs, attrs.get("timezone"), f"{_ATTRS}/timezone", kind)
    retry_policy = policy_attribute(errs, attrs.get("retry_policy"), f"{_ATTRS}/retry_policy")
    overlap = overlap_attribute(errs, attrs)
    conf = r.read_object(errs, attrs.get("configuration", r.MISSING), _CONF, "`configuration`")
    config = (
        HttpConfig(url="")
        if conf is None
        else d.read_configuration(
            errs, conf, max_timeout_s, partial(_header_map, stored=stored_headers)
        )
    )
    entries = e.environments(
        errs,
        attrs.get("environments", r.MISSING),
        kind,
        environments,
        max_timeout_s,
        config,
        aimed_elsewhere=aimed_elsewhere,
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
        overlap_policy=overlap,
    )
    return spec, entries


def _schedule(errs: r.Errors, value: object) -> tuple[str | None, JobKind]:
    if value is None:
        return None, JobKind.MANUAL
    text, kind = d.read_schedule(errs, value)
    return text, kind


def _header_map(errs: r.Errors, value: object, stored: tuple[Header, ...]) -> tuple[Header, ...]:
    """2026-08-07: `headers` is a name -> value object; a header `stored` more than
    once and sent back as read keeps its stored lines."""
    ptr = f"{_CONF}/headers"
    if value is r.MISSING:
        return ()
    if not isinstance(value, dict):
        errs.add(
            "invalid_type",
            ptr,
            f"`headers` must be an object of name: value, not {r.kind(value)}.",
        )
        return ()
    if len(value) > MAX_HEADERS:
        errs.add("too_many_headers", ptr, f"{len(value)} headers; a job may have {MAX_HEADERS}.")
        return ()
    shown = header_map(stored)
    repeated = {
        name: tuple(h for h in stored if h.name.lower() == name.lower())
        for name in shown
        if sum(h.name.lower() == name.lower() for h in stored) > 1
    }
    headers: list[Header] = []
    seen: dict[str, str] = {}
    for name, val in value.items():
        at = f"{ptr}/{pointer_part(name)}"
        if name in repeated and val == shown[name] and name.lower() not in seen:
            seen[name.lower()] = name
            headers.extend(repeated[name])  # as stored: they passed every check then
            continue
        one = e.header(errs, name, val, at, seen)
        if one is not None:
            headers.append(one)
    if len(headers) > MAX_HEADERS:
        errs.add("too_many_headers", ptr, f"{len(headers)} headers; a job may have {MAX_HEADERS}.")
        return ()
    if repeated and value == shown:  # all sent back as read: the seed's order too
        return stored
    return tuple(headers)
