"""What decides whether a job document is valid, in both versions.

The readers of a job document's parts that 2026-06-04
(`jobsd.api.v2026_06_04.documents`) and 2026-08-07
(`jobsd.api.v2026_08_07.documents`) share: the envelope, the slug, the
schedule, the configuration and its fields. Pure (no I/O, no clock) so tests
can drive them with tables and hypothesis. The spec asks for every bad field
in one 422, so checks never raise: each adds an ErrorItem with its JSON
pointer (`jobsd.api.doc_reader`) and returns a placeholder, and the document
is refused at the end if anything was collected. Only the two 409s raise at
once (a `type` that is not `job`, an `id` that contradicts the path): the
request is aimed at the wrong resource, so field errors would be beside the
point. POST and PUT share the parsers, so an omitted optional field is its
default on both.

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
from typing import Final

from jobsd.api import doc_reader as r
from jobsd.api.fields import (
    SLUG,
    SUCCESS_STATUS,
    reencode_certificates,
)
from jobsd.errors import ScheduleError, conflict
from jobsd.job_bounds import configuration_size_problem
from jobsd.job_model import Header, HttpConfig, JobKind
from jobsd.schedule import CronSchedule, parse_written_schedule
from jobsd.urls import url_problem

METHODS: Final = ("POST", "GET", "PUT", "PATCH", "DELETE")  # the default first
CONFIG_FIELDS: Final = frozenset(
    {"method", "url", "headers", "success_status", "tls_verify", "ca_cert", "body", "timeout"}
)
DEFAULT_TIMEOUT_S: Final = 30
ATTRS: Final = "/data/attributes"
CONF: Final = "/data/attributes/configuration"
_MiB: Final = 1024 * 1024


def is_slug(text: str) -> bool:
    return SLUG.fullmatch(text) is not None


def envelope(errs: r.Errors, doc: object) -> dict[str, object] | None:
    if not isinstance(doc, dict):
        errs.add("invalid_type", "", f"The body must be an object with `data`, not {r.kind(doc)}.")
        return None
    return r.read_object(errs, doc.get("data", r.MISSING), "/data", "`data` (the job resource)")


def refuse_conflicts(data: dict[str, object], path_slug: str | None) -> None:
    kind = data.get("type", r.MISSING)
    if isinstance(kind, str) and kind != "job":
        raise conflict(
            "type_mismatch", 'This endpoint takes resources of type "job".', "/data/type"
        )
    given = data.get("id")
    if path_slug is not None and isinstance(given, str) and given != path_slug:
        detail = "`data.id` differs from the job id in the path; omit it or send the same id."
        raise conflict("id_mismatch", detail, "/data/id")


def read_slug(errs: r.Errors, data: dict[str, object], path_slug: str | None) -> str:
    kind = data.get("type", "job")  # a string other than "job" was a 409 already
    if not isinstance(kind, str):
        errs.add("invalid_type", "/data/type", f'`type` must be "job", not {r.kind(kind)}.')
    given = data.get("id", r.MISSING)
    if path_slug is not None:  # PUT: `id` may be omitted or null (JobResource)
        if given is not r.MISSING and given is not None and not isinstance(given, str):
            errs.add("invalid_type", "/data/id", f"`id` must be a string, not {r.kind(given)}.")
        return path_slug
    if given is r.MISSING:
        errs.add("required", "/data/id", "`id` is required: the job's slug, e.g. nightly-backup.")
    elif not isinstance(given, str):
        errs.add("invalid_type", "/data/id", f"`id` must be a string, not {r.kind(given)}.")
    elif not is_slug(given):
        detail = "`id` must be 1-100 characters of a-z 0-9 - _, starting with a letter or digit."
        errs.add("invalid_slug", "/data/id", detail)
    else:
        return given
    return ""


def read_schedule(
    errs: r.Errors, value: object, ptr: str = f"{ATTRS}/schedule"
) -> tuple[str, JobKind]:
    """The schedule as written and the kind it makes (a cron: recurring; else one-off)."""
    text = r.read_string(errs, value, ptr, max_len=None, chars_code="invalid_schedule")
    if text is None:
        return "", JobKind.RECURRING
    try:
        parsed = parse_written_schedule(text)
    except ScheduleError as e:
        errs.add("invalid_schedule", ptr, e.detail)
        return text, JobKind.RECURRING
    return text, JobKind.RECURRING if isinstance(parsed, CronSchedule) else JobKind.ONE_OFF


def read_url(errs: r.Errors, value: object, ptr: str = f"{CONF}/url") -> str:
    url = r.read_string(errs, value, ptr, min_len=1, max_len=2048, chars_code=None)
    if url and (problem := url_problem(url)):
        errs.add("invalid_url", ptr, f"`url` {problem}.")
    return url or ""


def read_success_status(errs: r.Errors, status: object, ptr: str = f"{CONF}/success_status") -> str:
    if not isinstance(status, str):
        errs.add(
            "invalid_type",
            ptr,
            f'`success_status` must be a string like "2xx", not {r.kind(status)}.',
        )
        return "2xx"
    if not SUCCESS_STATUS.fullmatch(status):
        detail = '`success_status` must be a code 100-599 such as "204" or a class "1xx"-"5xx".'
        errs.add("invalid_success_status", ptr, detail)
    return status


HeadersParser = Callable[[r.Errors, object], tuple[Header, ...]]


def read_configuration(
    errs: r.Errors, conf: dict[str, object], max_timeout_s: int, headers: HeadersParser
) -> HttpConfig:
    """The configuration object; `headers` reads the version's form of `headers`."""
    config = HttpConfig(
        url=read_url(errs, conf.get("url", r.MISSING)),
        method=r.read_choice(errs, conf, "method", f"{CONF}/method", METHODS),
        headers=headers(errs, conf.get("headers", r.MISSING)),
        success_status=read_success_status(errs, conf.get("success_status", "2xx")),
        tls_verify=r.read_boolean(errs, conf, "tls_verify", f"{CONF}/tls_verify"),
        ca_cert=read_ca_cert(errs, conf.get("ca_cert")),
        body=read_body(errs, conf.get("body")),
        timeout_s=read_timeout(errs, conf.get("timeout", r.MISSING), max_timeout_s),
    )
    if problem := configuration_size_problem(config):
        errs.add("configuration_too_large", CONF, problem)
    for key in conf:
        if key not in CONFIG_FIELDS:
            escaped = key.replace("~", "~0").replace("/", "~1")
            allowed = ", ".join(sorted(CONFIG_FIELDS))
            errs.add("unknown_field", f"{CONF}/{escaped}", f"Unknown field; allowed: {allowed}.")
    return config


def read_ca_cert(errs: r.Errors, value: object, ptr: str = f"{CONF}/ca_cert") -> str | None:
    text = (
        None if value is None else r.read_string(errs, value, ptr, max_len=65536, chars_code=None)
    )
    if text is None:
        return None
    pem, problem = reencode_certificates(text)
    if problem:
        errs.add("invalid_ca_cert", ptr, f"`ca_cert` {problem}.")
    return pem


def read_body(errs: r.Errors, value: object, ptr: str = f"{CONF}/body") -> str | None:
    body = None if value is None else r.read_string(errs, value, ptr, max_len=_MiB, allow_nul=True)
    if body is not None and (size := len(body.encode("utf-8"))) > _MiB:
        errs.add("too_long", ptr, f"`body` is {size} bytes as UTF-8; the limit is 1 MiB.")
    return body


def read_timeout(
    errs: r.Errors, value: object, max_timeout_s: int, ptr: str = f"{CONF}/timeout"
) -> int:
    default = min(DEFAULT_TIMEOUT_S, max_timeout_s)
    if value is r.MISSING:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        errs.add(
            "invalid_type",
            ptr,
            f"`timeout` must be a whole number of seconds, not {r.kind(value)}.",
        )
    elif value < 1:
        errs.add("invalid_timeout", ptr, "`timeout` must be at least 1 second.")
    elif value > max_timeout_s:
        detail = f"`timeout` is above your plan's maximum of {max_timeout_s} seconds."
        errs.add("timeout_above_plan", ptr, detail)
    else:
        return value
    return default
