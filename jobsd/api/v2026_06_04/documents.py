"""2026-06-04's job document: a POST or PUT body in, a validated `JobSpec` out.

What is the seed's own: the job's attributes with `enabled` at the top (the
default environment's), and `headers` as an array of {name, value}. The
readers both versions share (the envelope, the slug, the schedule, the
configuration) are `jobsd.api.documents`'; the rules they follow are in its
docstring.
"""

from __future__ import annotations

from dataclasses import replace

from jobsd.api import doc_reader as r
from jobsd.api import documents as d
from jobsd.api.documents import ATTRS, CONF
from jobsd.api.extensions import extension_values
from jobsd.api.fields import FIELD_VALUE, FIELD_VALUE_RULE, header_name_problem
from jobsd.errors import ValidationFailed, not_found
from jobsd.job_bounds import MAX_HEADERS
from jobsd.job_model import Header, HttpConfig, JobSpec


def parse_job_document(
    doc: object, *, path_slug: str | None, max_timeout_s: int
) -> tuple[JobSpec, bool]:
    """Validate a decoded 2026-06-04 POST (`path_slug` None) or PUT body.

    Returns the base spec and `enabled`; raises ApiError if refused.
    """
    spec, enabled, _ = parse_seed_job(doc, path_slug=path_slug, max_timeout_s=max_timeout_s)
    return spec, enabled


def parse_seed_job(
    doc: object, *, path_slug: str | None, max_timeout_s: int
) -> tuple[JobSpec, bool, frozenset[str]]:
    """`parse_job_document`, and the extension attributes (`jobsd.api.extensions`)
    the document sets: those it leaves out keep their stored values."""
    if path_slug is not None and not d.is_slug(path_slug):
        raise not_found("No job has this id: job ids are 1-100 characters of a-z 0-9 - _.")
    errs = r.Errors()
    data = d.envelope(errs, doc)
    if data is None:
        raise ValidationFailed(errs.items)
    d.refuse_conflicts(data, path_slug)
    slug = d.read_slug(errs, data, path_slug)
    attrs = data.get("attributes", r.MISSING)
    spec, enabled = _attributes(errs, attrs, slug, max_timeout_s)
    given: frozenset[str] = frozenset()
    if isinstance(attrs, dict):
        timezone, policy, overlap, given = extension_values(errs, attrs, spec.kind)
        spec = replace(spec, timezone=timezone, retry_policy=policy, overlap_policy=overlap)
    if errs.items:
        raise ValidationFailed(errs.items)
    return spec, enabled, given


def _attributes(
    errs: r.Errors, value: object, slug: str, max_timeout_s: int
) -> tuple[JobSpec, bool]:
    attrs = r.read_object(errs, value, ATTRS, "`attributes`")
    if attrs is None:
        return JobSpec(slug, "", None, "", HttpConfig(url="")), True
    name = r.read_string(
        errs, attrs.get("name", r.MISSING), f"{ATTRS}/name", min_len=1, max_len=200
    )
    description = attrs.get("description")
    if description is not None:
        description = r.read_string(errs, description, f"{ATTRS}/description", max_len=2000)
    enabled = r.read_boolean(errs, attrs, "enabled", f"{ATTRS}/enabled")
    r.read_choice(errs, attrs, "type", f"{ATTRS}/type", ("http",))
    r.read_choice(errs, attrs, "concurrency_policy", f"{ATTRS}/concurrency_policy", ("ALLOW",))
    schedule, kind = d.read_schedule(errs, attrs.get("schedule", r.MISSING))
    conf = r.read_object(errs, attrs.get("configuration", r.MISSING), CONF, "`configuration`")
    config = (
        HttpConfig(url="")
        if conf is None
        else d.read_configuration(errs, conf, max_timeout_s, _headers)
    )
    return JobSpec(slug, name or "", description, schedule, config, kind=kind), enabled


def _headers(errs: r.Errors, value: object) -> tuple[Header, ...]:
    """2026-06-04: an array of {name, value}."""
    ptr = f"{CONF}/headers"
    if value is r.MISSING:
        return ()
    if not isinstance(value, list):
        errs.add(
            "invalid_type",
            ptr,
            f"`headers` must be an array of {{name, value}}, not {r.kind(value)}.",
        )
        return ()
    if len(value) > MAX_HEADERS:
        errs.add("too_many_headers", ptr, f"{len(value)} headers; a job may have {MAX_HEADERS}.")
        return ()
    headers: list[Header] = []
    for i, item in enumerate(value):
        obj = r.read_object(errs, item, f"{ptr}/{i}", "A header")
        if obj is None:
            continue
        at = f"{ptr}/{i}"
        name = r.read_string(
            errs, obj.get("name", r.MISSING), f"{at}/name", min_len=1, max_len=200, chars_code=None
        )
        if name is not None and (problem := header_name_problem(name)):
            errs.add("invalid_header", f"{at}/name", problem)
        val = r.read_string(
            errs, obj.get("value", r.MISSING), f"{at}/value", max_len=8192, chars_code=None
        )
        if val is not None and not FIELD_VALUE.fullmatch(val):
            errs.add("invalid_header", f"{at}/value", FIELD_VALUE_RULE)
        if name is not None and val is not None:
            headers.append(Header(name, val))
    return tuple(headers)
