"""Job request documents in, a validated `JobSpec` out.

The one place that decides whether a POST/PUT body describes a job. It is pure
(no I/O, no clock) so tests can drive it with tables and hypothesis. The spec
asks for every bad field in one 422, so checks never raise: each appends an
ErrorItem with its JSON pointer and returns a placeholder, and the document is
refused at the end if anything was collected. Only the two 409s raise at once
(a `type` that is not `job`, an `id` that contradicts the path): the request is
aimed at the wrong resource, so field errors would be beside the point. POST
and PUT share the parser, so an omitted optional field is its default on both.

Decisions where the spec is silent:
- Types are JSON Schema's: `"true"` is not a boolean, `true` is not an integer,
  an integral number such as `30.0` is an integer (taken as 30), `30.5` is not.
- No string may hold an unpaired surrogate (json.loads makes them from
  `"\\ud800"`; UTF-8 cannot encode them) or NUL; only `body`, sent verbatim,
  may hold NUL. The schedule is stored as written (the scheduler re-parses it).
- `url` also refuses whitespace, control and invisible (format) characters,
  a malformed host, and a port outside 1-65535 (an empty one included).
- A header value follows RFC 9110's field-value grammar, in ASCII: visible
  characters with inner spaces/tabs. Beyond CR/LF/NUL that refuses other
  controls and leading/trailing whitespace (h11 will not send them) and
  non-ASCII (httpx encodes str values as ASCII): every run would fail.
- A PUT path that breaks the slug rule is 404: no job can have that id.
- At most MAX_ERRORS problems are listed, then one `too_many_errors` item
  counts the rest: the answer stays small whatever the document holds.
- The bounds on one job (header count, configuration size) and the header
  names jobsd keeps for itself are in `fields.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from enum import Enum
from typing import Final

from jobsd.api.extensions import extension_values
from jobsd.api.fields import (
    FIELD_VALUE,
    FIELD_VALUE_RULE,
    SLUG,
    SUCCESS_STATUS,
    SURROGATE,
    header_name_problem,
    reencode_certificates,
)
from jobsd.errors import ErrorItem, ScheduleError, ValidationFailed, conflict, invalid, not_found
from jobsd.job_bounds import MAX_HEADERS, configuration_size_problem
from jobsd.messages import Header, HttpConfig, JobKind, JobSpec
from jobsd.schedule import CronSchedule, parse_schedule
from jobsd.urls import url_problem

METHODS: Final = ("POST", "GET", "PUT", "PATCH", "DELETE")  # the default first
CONFIG_FIELDS: Final = frozenset(
    {"method", "url", "headers", "success_status", "tls_verify", "ca_cert", "body", "timeout"}
)
DEFAULT_TIMEOUT_S: Final = 30
_ATTRS: Final = "/data/attributes"
_CONF: Final = "/data/attributes/configuration"
_MiB: Final = 1024 * 1024
MAX_ERRORS: Final = 100


class _Missing(Enum):
    MISSING = 0


MISSING: Final = _Missing.MISSING


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
    if path_slug is not None and not is_slug(path_slug):
        raise not_found("No job has this id: job ids are 1-100 characters of a-z 0-9 - _.")
    errs = _Errors()
    data = _envelope(errs, doc)
    if data is None:
        raise ValidationFailed(errs.items)
    _refuse_conflicts(data, path_slug)
    slug = _slug(errs, data, path_slug)
    attrs = data.get("attributes", MISSING)
    spec, enabled = _attributes(errs, attrs, slug, max_timeout_s)
    given: frozenset[str] = frozenset()
    if isinstance(attrs, dict):
        timezone, policy, overlap, given = extension_values(errs, attrs, spec.kind)
        spec = replace(spec, timezone=timezone, retry_policy=policy, overlap_policy=overlap)
    if errs.items:
        raise ValidationFailed(errs.items)
    return spec, enabled, given


def is_slug(text: str) -> bool:
    return SLUG.fullmatch(text) is not None


class _Errors:
    """The problems found so far; past MAX_ERRORS only counted, so that a
    2 MiB document of bad members cannot turn into a 50 MiB answer."""

    def __init__(self) -> None:
        self._found: list[ErrorItem] = []
        self._unlisted = 0

    def add(self, code: str, pointer: str, detail: str) -> None:
        if len(self._found) >= MAX_ERRORS:
            self._unlisted += 1
            return
        # Escaped so that an error about a bad string can always be encoded.
        pointer = pointer.encode("utf-8", "backslashreplace").decode("utf-8")
        detail = detail.encode("utf-8", "backslashreplace").decode("utf-8")
        self._found.append(invalid(code, pointer, detail))

    @property
    def items(self) -> list[ErrorItem]:
        if not self._unlisted:
            return list(self._found)
        more = ErrorItem(
            422,
            "too_many_errors",
            "Too many errors",
            f"{self._unlisted} more problems were found and not listed; fix these and send again.",
        )
        return [*self._found, more]


def _kind(value: object) -> str:
    """The JSON type of a decoded value, for details a person can act on."""
    if value is None or isinstance(value, bool | str | int | float):
        names = {type(None): "null", bool: "a boolean", str: "a string", int: "an integer"}
        return names.get(type(value), "a number")
    return "an array" if isinstance(value, list) else "an object"


def _object(errs: _Errors, value: object, ptr: str, what: str) -> dict[str, object] | None:
    if value is MISSING:
        errs.add("required", ptr, f"{what} is required.")
    elif not isinstance(value, dict):
        errs.add("invalid_type", ptr, f"{what} must be an object, not {_kind(value)}.")
    else:
        return value
    return None


def _envelope(errs: _Errors, doc: object) -> dict[str, object] | None:
    if not isinstance(doc, dict):
        errs.add("invalid_type", "", f"The body must be an object with `data`, not {_kind(doc)}.")
        return None
    return _object(errs, doc.get("data", MISSING), "/data", "`data` (the job resource)")


def _refuse_conflicts(data: dict[str, object], path_slug: str | None) -> None:
    kind = data.get("type", MISSING)
    if isinstance(kind, str) and kind != "job":
        raise conflict(
            "type_mismatch", 'This endpoint takes resources of type "job".', "/data/type"
        )
    given = data.get("id")
    if path_slug is not None and isinstance(given, str) and given != path_slug:
        detail = "`data.id` differs from the job id in the path; omit it or send the same id."
        raise conflict("id_mismatch", detail, "/data/id")


def _slug(errs: _Errors, data: dict[str, object], path_slug: str | None) -> str:
    kind = data.get("type", "job")  # a string other than "job" was a 409 already
    if not isinstance(kind, str):
        errs.add("invalid_type", "/data/type", f'`type` must be "job", not {_kind(kind)}.')
    given = data.get("id", MISSING)
    if path_slug is not None:  # PUT: `id` may be omitted or null (JobResource)
        if given is not MISSING and given is not None and not isinstance(given, str):
            errs.add("invalid_type", "/data/id", f"`id` must be a string, not {_kind(given)}.")
        return path_slug
    if given is MISSING:
        errs.add("required", "/data/id", "`id` is required: the job's slug, e.g. nightly-backup.")
    elif not isinstance(given, str):
        errs.add("invalid_type", "/data/id", f"`id` must be a string, not {_kind(given)}.")
    elif not is_slug(given):
        detail = "`id` must be 1-100 characters of a-z 0-9 - _, starting with a letter or digit."
        errs.add("invalid_slug", "/data/id", detail)
    else:
        return given
    return ""


def _string(
    errs: _Errors,
    value: object,
    ptr: str,
    *,
    max_len: int | None,
    min_len: int = 0,
    chars_code: str | None = "invalid_characters",
    allow_nul: bool = False,
) -> str | None:
    """A present value as a string within its limits (code points, as JSON Schema counts)."""
    name = ptr.rsplit("/", 1)[-1]
    if value is MISSING:
        errs.add("required", ptr, f"`{name}` is required.")
    elif not isinstance(value, str):
        errs.add("invalid_type", ptr, f"`{name}` must be a string, not {_kind(value)}.")
    elif len(value) < min_len:
        errs.add("too_short", ptr, f"`{name}` must not be empty.")
    elif max_len is not None and len(value) > max_len:
        errs.add("too_long", ptr, f"`{name}` is {len(value)} characters; the limit is {max_len}.")
    elif chars_code is not None and (
        (not allow_nul and "\x00" in value) or SURROGATE.search(value)
    ):
        nul = "" if allow_nul else "NUL characters or "
        errs.add(chars_code, ptr, f"`{name}` must not contain {nul}unpaired surrogates.")
    else:
        return value
    return None


def _boolean(errs: _Errors, obj: dict[str, object], key: str, ptr: str) -> bool:
    value = obj.get(key, True)  # both booleans of the spec default to true
    if not isinstance(value, bool):
        errs.add("invalid_type", ptr, f"`{key}` must be true or false, not {_kind(value)}.")
        return True
    return value


def _choice(
    errs: _Errors, obj: dict[str, object], key: str, ptr: str, allowed: tuple[str, ...]
) -> str:
    """An enum (or a const, with one value); omitted is the default, `allowed[0]`."""
    value = obj.get(key, allowed[0])
    if not isinstance(value, str):
        errs.add("invalid_type", ptr, f"`{key}` must be a string, not {_kind(value)}.")
    elif value not in allowed:
        code = "invalid_method" if key == "method" else "invalid_value"
        choices = f'"{allowed[0]}"' if len(allowed) == 1 else f"one of {', '.join(allowed)}"
        errs.add(code, ptr, f"`{key}` must be {choices} (exact case).")
    else:
        return value
    return allowed[0]


def _attributes(
    errs: _Errors, value: object, slug: str, max_timeout_s: int
) -> tuple[JobSpec, bool]:
    attrs = _object(errs, value, _ATTRS, "`attributes`")
    if attrs is None:
        return JobSpec(slug, "", None, "", HttpConfig(url="")), True
    name = _string(errs, attrs.get("name", MISSING), f"{_ATTRS}/name", min_len=1, max_len=200)
    description = attrs.get("description")
    if description is not None:
        description = _string(errs, description, f"{_ATTRS}/description", max_len=2000)
    enabled = _boolean(errs, attrs, "enabled", f"{_ATTRS}/enabled")
    _choice(errs, attrs, "type", f"{_ATTRS}/type", ("http",))
    _choice(errs, attrs, "concurrency_policy", f"{_ATTRS}/concurrency_policy", ("ALLOW",))
    schedule, kind = _schedule(errs, attrs.get("schedule", MISSING))
    conf = _object(errs, attrs.get("configuration", MISSING), _CONF, "`configuration`")
    config = (
        HttpConfig(url="") if conf is None else _configuration(errs, conf, max_timeout_s, _headers)
    )
    return JobSpec(slug, name or "", description, schedule, config, kind=kind), enabled


def _schedule(errs: _Errors, value: object, ptr: str = f"{_ATTRS}/schedule") -> tuple[str, JobKind]:
    """The schedule as written and the kind it makes (a cron: recurring; else one-off)."""
    text = _string(errs, value, ptr, max_len=None, chars_code="invalid_schedule")
    if text is None:
        return "", JobKind.RECURRING
    try:
        parsed = parse_schedule(text)
    except ScheduleError as e:
        errs.add("invalid_schedule", ptr, e.detail)
        return text, JobKind.RECURRING
    return text, JobKind.RECURRING if isinstance(parsed, CronSchedule) else JobKind.ONE_OFF


def _url(errs: _Errors, value: object, ptr: str = f"{_CONF}/url") -> str:
    url = _string(errs, value, ptr, min_len=1, max_len=2048, chars_code=None)
    if url and (problem := url_problem(url)):
        errs.add("invalid_url", ptr, f"`url` {problem}.")
    return url or ""


def _success_status(errs: _Errors, status: object, ptr: str = f"{_CONF}/success_status") -> str:
    if not isinstance(status, str):
        errs.add(
            "invalid_type",
            ptr,
            f'`success_status` must be a string like "2xx", not {_kind(status)}.',
        )
        return "2xx"
    if not SUCCESS_STATUS.fullmatch(status):
        detail = '`success_status` must be a code 100-599 such as "204" or a class "1xx"-"5xx".'
        errs.add("invalid_success_status", ptr, detail)
    return status


HeadersParser = Callable[[_Errors, object], tuple[Header, ...]]


def _configuration(
    errs: _Errors, conf: dict[str, object], max_timeout_s: int, headers: HeadersParser
) -> HttpConfig:
    """The configuration object; `headers` reads the version's form of `headers`."""
    config = HttpConfig(
        url=_url(errs, conf.get("url", MISSING)),
        method=_choice(errs, conf, "method", f"{_CONF}/method", METHODS),
        headers=headers(errs, conf.get("headers", MISSING)),
        success_status=_success_status(errs, conf.get("success_status", "2xx")),
        tls_verify=_boolean(errs, conf, "tls_verify", f"{_CONF}/tls_verify"),
        ca_cert=_ca_cert(errs, conf.get("ca_cert")),
        body=_body(errs, conf.get("body")),
        timeout_s=_timeout(errs, conf.get("timeout", MISSING), max_timeout_s),
    )
    if problem := configuration_size_problem(config):
        errs.add("configuration_too_large", _CONF, problem)
    for key in conf:
        if key not in CONFIG_FIELDS:
            escaped = key.replace("~", "~0").replace("/", "~1")
            allowed = ", ".join(sorted(CONFIG_FIELDS))
            errs.add("unknown_field", f"{_CONF}/{escaped}", f"Unknown field; allowed: {allowed}.")
    return config


def _headers(errs: _Errors, value: object) -> tuple[Header, ...]:
    """2026-06-04: an array of {name, value}."""
    ptr = f"{_CONF}/headers"
    if value is MISSING:
        return ()
    if not isinstance(value, list):
        errs.add(
            "invalid_type",
            ptr,
            f"`headers` must be an array of {{name, value}}, not {_kind(value)}.",
        )
        return ()
    if len(value) > MAX_HEADERS:
        errs.add("too_many_headers", ptr, f"{len(value)} headers; a job may have {MAX_HEADERS}.")
        return ()
    headers: list[Header] = []
    for i, item in enumerate(value):
        obj = _object(errs, item, f"{ptr}/{i}", "A header")
        if obj is None:
            continue
        at = f"{ptr}/{i}"
        name = _string(
            errs, obj.get("name", MISSING), f"{at}/name", min_len=1, max_len=200, chars_code=None
        )
        if name is not None and (problem := header_name_problem(name)):
            errs.add("invalid_header", f"{at}/name", problem)
        val = _string(errs, obj.get("value", MISSING), f"{at}/value", max_len=8192, chars_code=None)
        if val is not None and not FIELD_VALUE.fullmatch(val):
            errs.add("invalid_header", f"{at}/value", FIELD_VALUE_RULE)
        if name is not None and val is not None:
            headers.append(Header(name, val))
    return tuple(headers)


def _ca_cert(errs: _Errors, value: object, ptr: str = f"{_CONF}/ca_cert") -> str | None:
    text = None if value is None else _string(errs, value, ptr, max_len=65536, chars_code=None)
    if text is None:
        return None
    pem, problem = reencode_certificates(text)
    if problem:
        errs.add("invalid_ca_cert", ptr, f"`ca_cert` {problem}.")
    return pem


def _body(errs: _Errors, value: object, ptr: str = f"{_CONF}/body") -> str | None:
    body = None if value is None else _string(errs, value, ptr, max_len=_MiB, allow_nul=True)
    if body is not None and (size := len(body.encode("utf-8"))) > _MiB:
        errs.add("too_long", ptr, f"`body` is {size} bytes as UTF-8; the limit is 1 MiB.")
    return body


def _timeout(
    errs: _Errors, value: object, max_timeout_s: int, ptr: str = f"{_CONF}/timeout"
) -> int:
    default = min(DEFAULT_TIMEOUT_S, max_timeout_s)
    if value is MISSING:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        errs.add(
            "invalid_type", ptr, f"`timeout` must be a whole number of seconds, not {_kind(value)}."
        )
    elif value < 1:
        errs.add("invalid_timeout", ptr, "`timeout` must be at least 1 second.")
    elif value > max_timeout_s:
        detail = f"`timeout` is above your plan's maximum of {max_timeout_s} seconds."
        errs.add("timeout_above_plan", ptr, detail)
    else:
        return value
    return default
