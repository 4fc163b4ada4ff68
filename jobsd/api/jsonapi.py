"""JSON:API on the wire: media types, strict JSON bodies, documents, errors.

Every answer leaves through here, so every error, including the ones
Quart and Werkzeug raise themselves (404 route, 405 method, 413 body), is a
JSON:API error document with `application/vnd.api+json`; nothing ever
answers with HTML or a stack trace. Request bodies are decoded strictly:
invalid UTF-8, NaN/Infinity, numbers Python refuses, and nesting deep
enough to exhaust the parser are all a 400, never a 500. A body may hold at
most `MAX_JSON_VALUES` values (413): decoded, 2 MiB of `[{},{},...]` is
48 MiB of Python objects, and no job document needs a thousandth of that.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from http import HTTPStatus
from typing import Any

from quart import Response, request
from werkzeug.exceptions import HTTPException

from jobsd import errors
from jobsd.config import DEFAULT_API_VERSION
from jobsd.logs import failure, fields

MEDIA_TYPE = "application/vnd.api+json"
ACCEPTED_BODY_TYPES = frozenset({MEDIA_TYPE, "application/json"})
MAX_BODY_BYTES = 2 * 1024 * 1024
# The headers by which HTTP/1.1 says a request has a body (names as in an ASGI scope).
FRAMING_HEADERS = (b"content-length", b"transfer-encoding")
_MAX_DEPTH = 64
MAX_JSON_VALUES = 10_000
# A JSON string, escapes and all; possessive, so a long one costs one pass.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"')

log = logging.getLogger("jobsd.api")


def encoded(payload: dict[str, Any]) -> str:
    """A document's JSON as every answer spells it: compact, UTF-8 left as is."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def document(payload: dict[str, Any], status: int = 200, **headers: str) -> Response:
    response = Response(encoded(payload), status=status, content_type=MEDIA_TYPE)
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response


def no_content() -> Response:
    return Response("", status=204)


def error_payload(err: errors.ApiError) -> dict[str, Any]:
    return {"errors": [item.to_json() for item in err.items]}


def error_response(err: errors.ApiError) -> Response:
    response = document(error_payload(err), status=err.status)
    for name, value in err.headers.items():
        response.headers[name] = value
    return response


def closing_error(status: int, code: str, detail: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Head and body of an error sent below Quart, on a connection about to close.

    Like every answer it names the version that answered: below Quart no
    version was chosen, so the daemon's default (VERSIONS.md).
    """
    item = errors.ErrorItem(status, code, HTTPStatus(status).phrase, detail)
    body = json.dumps({"errors": [item.to_json()]}).encode()
    headers = [
        (b"content-type", MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"jobsd-version", DEFAULT_API_VERSION.encode()),
        (b"connection", b"close"),
    ]
    return headers, body


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _depth(value: Any, limit: int) -> int:
    """Nesting depth, iteratively, stopping as soon as `limit` is passed."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


async def json_body() -> Any:
    """The request's JSON document, checked for media type, size and syntax."""
    _check_media_type()
    return _decode(await _raw_body())


async def optional_json_body() -> Any:
    """Like `json_body`, but no body at all (or only whitespace) is None, not an error."""
    return optional_document(await _raw_body(), request.headers.get("Content-Type"))


def optional_document(raw: bytes, content_type: str | None) -> Any:
    """`optional_json_body` of these bytes, sent with this `Content-Type`: apart from
    Quart's request, so that the run-now answered below Quart
    (`jobsd.api.fast_run_now`) parses its body by the very same rules."""
    if not raw.strip():
        return None
    check_media_type(content_type)
    return _decode(raw)


def _check_media_type() -> None:
    check_media_type(request.headers.get("Content-Type"))


def check_media_type(header: str | None) -> None:
    """415 unless `header` (a `Content-Type`, if any) names a media type we read.

    JSON:API's own media type may carry no parameter but `profile` (which
    may be ignored): any other is a 415, `ext` included, since no extension
    is supported. `application/json` keeps its parameters (a charset)."""
    content_type, *parameters = (header or "").split(";")
    content_type = content_type.strip().lower()
    if content_type not in ACCEPTED_BODY_TYPES:
        raise errors.unsupported_media(
            f"send the body as {MEDIA_TYPE} or application/json"
            + (f", not {content_type}" if content_type else "")
        )
    if content_type == MEDIA_TYPE:
        names = {p.partition("=")[0].strip().lower() for p in parameters if p.strip()}
        if names - {"profile"}:
            raise errors.unsupported_media(
                f"{MEDIA_TYPE} may carry no media type parameter but profile "
                f"(JSON:API; no extension is supported), not {', '.join(sorted(names))}"
            )


def check_accept(header: str | None) -> None:
    """406 when `header` (an `Accept`, its lines joined by commas) names JSON:API's media
    type only with a parameter other than profile (JSON:API: such instances are ignored,
    and when every one is, nothing we send is acceptable; an `ext` asks for an extension
    jobsd does not have). A weight (`q`) and what follows it are not media type
    parameters; an `Accept` without the media type (`*/*`, none) is answered as ever."""
    instances: list[bool] = []
    for media_range in (header or "").split(","):
        kind, *parameters = media_range.split(";")
        if kind.strip().lower() != MEDIA_TYPE:
            continue
        names: set[str] = set()
        for parameter in parameters:
            name = parameter.partition("=")[0].strip().lower()
            if name == "q":
                break
            names.add(name)
        instances.append(names <= {"profile"})
    if instances and not any(instances):
        raise errors.not_acceptable(
            f"Accept names {MEDIA_TYPE} only with media type parameters; JSON:API allows "
            f"none but profile here (jobsd supports no extension): accept {MEDIA_TYPE}"
        )


async def _raw_body() -> bytes:
    raw = await request.get_data(cache=False, as_text=False)
    if isinstance(raw, str):  # pragma: no cover - as_text=False gives bytes
        raw = raw.encode("utf-8")
    return raw


def json_values_at_most(raw: bytes) -> int:
    """An upper bound on the values in a JSON text, containers included;
    when it is MAX_JSON_VALUES or less, exact for valid JSON but for one too
    many per empty container."""

    def bound(text: bytes) -> int:
        return text.count(b",") + text.count(b"[") + text.count(b"{") + 1

    rough = bound(raw)  # counts what strings hold too: cheap, and mostly enough
    if rough <= MAX_JSON_VALUES:
        return rough
    inside = 0
    for n, string in enumerate(_STRING.finditer(raw)):
        if n >= 2 * MAX_JSON_VALUES:
            return rough  # a value has at most one member name beside it: too many
        inside += bound(string[0]) - 1
    return rough - inside


def _decode(raw: bytes) -> Any:
    if len(raw) > MAX_BODY_BYTES:
        raise errors.payload_too_large("the request body is over 2 MiB")
    if json_values_at_most(raw) > MAX_JSON_VALUES:
        raise errors.ApiError(
            413,
            [
                errors.ErrorItem(
                    413,
                    "too_many_values",
                    "Payload Too Large",
                    f"the JSON document holds more than {MAX_JSON_VALUES} values",
                )
            ],
        )
    try:
        text = raw.decode("utf-8")
        doc = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_members)
    except RecursionError:
        raise errors.bad_request(
            "malformed_json", "the JSON document is nested too deeply"
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise errors.bad_request("malformed_json", f"the body is not valid JSON: {exc}") from None
    if _depth(doc, _MAX_DEPTH) > _MAX_DEPTH:
        raise errors.bad_request("malformed_json", "the JSON document is nested too deeply")
    return doc


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose member names are unique (RFC 7493); ValueError otherwise.

    Python keeps the last of two equal names, other parsers the first: a
    gateway that checked one `url` or header while jobsd kept the other
    would pass what nobody checked. Which was meant cannot be known.
    """
    members = dict(pairs)
    if len(members) == len(pairs):
        return members
    name = next(n for n, count in Counter(n for n, _ in pairs).items() if count > 1)
    shown = repr(name) if len(name) <= 60 else "a member name"
    raise ValueError(f"{shown} appears twice in one object")


def http_error(exc: HTTPException, method: str) -> errors.ApiError:
    """A Werkzeug HTTP error as the API words it; apart from Quart's request, so that
    a body timeout met below Quart (`jobsd.api.fast_run_now`) is worded alike."""
    status = exc.code or 500
    if status == 413:
        return errors.payload_too_large("the request body is over 2 MiB")
    code = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}.get(
        status, "http_error"
    )
    detail = {
        404: "no such resource",
        405: f"{method} is not allowed here",
        # Werkzeug's words speak of a browser and "the specified time": name the bound.
        408: "the request body did not arrive whole within the server's body_timeout_s;"
        " nothing was changed and the connection closes",
    }.get(status, exc.description or exc.name)
    return errors.ApiError(status, [errors.ErrorItem(status, code, exc.name, str(detail))])


def http_exception_response(exc: HTTPException) -> Response:
    status = exc.code or 500
    response = error_response(http_error(exc, request.method))
    if status == 405:
        allowed = exc.get_headers()
        for name, value in allowed:
            if name.lower() == "allow":
                response.headers["Allow"] = value
    return response


def internal_error_response(exc: BaseException) -> Response:
    # Its type and line only: a message may quote the request's body (header values).
    log.error(
        "unhandled error in %s %s", request.method, request.path, extra=fields(**failure(exc))
    )
    return error_response(errors.internal())
