"""The OpenAPI document `/api/v1/openapi.json` serves, one per API version.

Each is the version's shared contract (packaged beside the code) plus our
additions: the health endpoint, the `Jobsd-Version` request header, the
error responses every operation can give, the parameter rules SEMANTICS.md
states in prose, and OpenAPI links that say which response names the
resource the next request acts on. Built once per version at import, so
every request gets the same bytes.

Every path of both contracts is served. What jobsd serves beyond a
version's contract (retry policies and the newer jobs and runs parameters
to 2026-06-04 clients, extension attributes) is written in by
`_add_finding_to_the_seed` and `jobsd.api.spec_additions`.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

from jobsd.api import jsonapi
from jobsd.api.spec_additions import (
    NEWER,
    add_extension_attributes,
    add_retry_policies,
    add_seed_job_parameters,
    describe_retries,
)
from jobsd.api.spec_links import add_links
from jobsd.job_bounds import MAX_CONFIGURATION_BYTES, MAX_HEADERS, MAX_STORED_JOB_BYTES
from jobsd.job_model import OWN_HEADER_PREFIX

VERSION_HEADER = "Jobsd-Version"
_FILES = {"2026-06-04": "openapi.json", "2026-08-07": "openapi-2026-08-07.json"}

_ERROR_STATUSES = {
    "400": "Bad request: malformed JSON (code malformed_json), a bad query parameter "
    "(invalid_parameter, named in source.parameter), an unknown Jobsd-Version or a header "
    "sent twice (invalid_header, source.header), a Host that is not host[:port] "
    "(invalid_host), or an HTTP message whose framing could be read two ways (bad_framing; "
    "the connection closes)",
    "401": "Missing or unknown bearer token",
    "403": "Forbidden by the plan (code active_jobs_limit), by the bound on retry policies "
    "(code retry_policies_limit) or by the token's environments (code environment_scope)",
    "404": "No such resource for this account",
    "406": "Accept names application/vnd.api+json only with media type parameters other "
    "than profile",
    "409": "Conflict: slug or policy id taken (slug_taken, id_taken), id or type mismatch "
    "(id_mismatch, type_mismatch), run already terminal (run_terminal), job deleted "
    "(job_deleted), environment not enabled or, for a rerun, no longer configured "
    "(environment_not_enabled, environment_not_configured), retry policy still used by "
    "jobs (retry_policy_in_use)",
    "413": "Request body over 2 MiB or over 10,000 JSON values",
    "415": "Request body not application/vnd.api+json or application/json",
    "422": "Invalid fields, each with its source.pointer (at most 100, then a count)",
    "408": "Request body not received whole within the server's body_timeout_s",
    "431": "Request line and headers over the server's max_request_header_bytes",
    "503": "Not answered within the server's request_timeout_s (code request_timeout; "
    "the request may have taken effect); the store busy or unavailable (store_busy, "
    "store_unavailable; Retry-After); this client holding its share of the server's "
    "connections (too_many_connections, Retry-After; the connection closes)",
}

# Lists are streamed from a snapshot an account may hold two of at once
# (jobsd.store.snapshots): the answers a list alone can give.
_LIST_STATUSES = {
    "429": "Too many list responses of this account are being sent (code too_many_lists, "
    "Retry-After)",
    "503": "Too many list responses are being sent, or those being sent hold the "
    "database's write-ahead log past 64 MiB (code busy, Retry-After)",
}
_LISTS = (("/api/v1/jobs", "get"), ("/api/v1/runs", "get"))
# What a request that queues a run can answer when the account's backlog is full.
_QUEUEING_STATUSES = {
    "429": "The account already has scheduler.max_pending_runs runs waiting to start "
    "(code too_many_pending_runs, Retry-After); no run was created",
}
_QUEUEING = (
    ("/api/v1/jobs/{job_id}/actions/run", "post"),
    ("/api/v1/runs/{run_id}/actions/rerun", "post"),
)
# What only a create can answer: the bound on the jobs an account stores
# (a replace never counts against it).
_CREATING_STATUSES = {
    "403": "Forbidden: the account already stores its plan's max_jobs jobs, of any kind "
    "and state (code jobs_limit; delete one to make room), or its active_jobs_limit "
    "counted jobs (code active_jobs_limit), or the token's environments do not allow "
    "it (code environment_scope); nothing was created",
}
_CREATING = (("/api/v1/jobs", "post"),)


def _statuses(path: str, method: str) -> dict[str, str]:
    """The error statuses one operation can give, each described with every code it may
    carry: a status only some operations give besides (a list's 503) is added to the
    common description, not put in its place, since the common codes still come."""
    statuses = dict(_ERROR_STATUSES)
    if (path, method) in _LISTS:
        for status, description in _LIST_STATUSES.items():
            common = statuses.get(status)
            statuses[status] = description if common is None else f"{common}; {description}"
    if (path, method) in _QUEUEING:
        statuses.update(_QUEUEING_STATUSES)
    if (path, method) in _CREATING:
        statuses.update(_CREATING_STATUSES)  # names the common 403's codes that apply
    return statuses


def base_spec(version: str) -> dict[str, Any]:
    text = resources.files("jobsd").joinpath(_FILES[version]).read_text(encoding="utf-8")
    spec: dict[str, Any] = json.loads(text)
    return spec


# Rules SEMANTICS.md states in prose, written into the served spec's schemas
# so that clients and fuzzers see them: (path, parameter) -> schema additions.
_PARAMETER_RULES: dict[tuple[str, str], dict[str, Any]] = {
    ("/api/v1/jobs", "page[number]"): {"minimum": 1},
    ("/api/v1/jobs", "page[size]"): {"minimum": 1, "maximum": 1000},
    ("/api/v1/usage", "filter[period]"): {"pattern": "^(current|[0-9]{4}-(0[1-9]|1[0-2]))$"},
}


def _tighten_parameters(spec: dict[str, Any]) -> None:
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                rule = _PARAMETER_RULES.get((path, parameter["name"]))
                if rule is not None:
                    parameter["schema"].update(rule)
                if path == "/api/v1/runs" and parameter["name"] == "page[size]":
                    parameter["schema"]["anyOf"][0]["maximum"] = 1000


def _add_finding_to_the_seed(spec: dict[str, Any]) -> None:
    """The newer jobs and runs parameters and `/run_stats`, served to 2026-06-04 too
    (additive).

    Copied from the 2026-08-07 contract, so both documents describe them
    alike; the seed's own `page[size]` of runs (default 100) stays, and the
    jobs' parameters say what they mean here (`add_seed_job_parameters`).
    """
    newer = base_spec("2026-08-07")
    runs = spec["paths"]["/api/v1/runs"]["get"]
    have = {p["name"] for p in runs["parameters"]}
    runs["parameters"] += [
        copy.deepcopy(p)
        for p in newer["paths"]["/api/v1/runs"]["get"]["parameters"]
        if p["name"] not in have
    ]
    add_seed_job_parameters(spec, newer)
    spec["paths"]["/api/v1/run_stats"] = copy.deepcopy(newer["paths"]["/api/v1/run_stats"])
    schemas = newer["components"]["schemas"]
    for name in schemas:
        if name.startswith("RunStat") or name == "GetRunStatsBucketType0":
            spec["components"]["schemas"][name] = copy.deepcopy(schemas[name])


def _bound_jobs(spec: dict[str, Any]) -> None:
    """The bounds on one job that the shared schema leaves open (`jobsd.job_bounds`)."""
    config = spec["components"]["schemas"]["JobHttpConfiguration"]
    config["description"] += (
        f"\n\njobsd: url, header names and values, ca_cert and body together are at most"
        f" {MAX_CONFIGURATION_BYTES} bytes as UTF-8 (422 configuration_too_large), in the"
        " request of every environment; the configuration with every environment's"
        f" overrides at most {MAX_STORED_JOB_BYTES} bytes (422 job_too_large)."
    )
    headers = config["properties"]["headers"]
    headers["maxItems" if headers["type"] == "array" else "maxProperties"] = MAX_HEADERS
    headers["description"] += (
        f" At most {MAX_HEADERS}. Names starting with {OWN_HEADER_PREFIX} (any case) are"
        " jobsd's own and refused, as are Host, Content-Length, Transfer-Encoding and"
        " Connection."
    )


_ERROR_DOCUMENT = {
    "type": "object",
    "required": ["errors"],
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["status", "code", "title", "detail"],
                "properties": {
                    "status": {"type": "string"},
                    "code": {"type": "string"},
                    "title": {"type": "string"},
                    "detail": {"type": "string"},
                    "source": {
                        "type": "object",
                        "properties": {
                            "pointer": {"type": "string"},
                            "parameter": {"type": "string"},
                            "header": {"type": "string"},
                        },
                    },
                    "meta": {
                        "type": "object",
                        "description": "More about this error: a retry policy still in use "
                        "lists the jobs that use it (referencing_jobs, at most 100, and "
                        "referencing_jobs_total).",
                    },
                },
            },
        }
    },
}


def served_spec(version: str) -> bytes:
    spec = copy.deepcopy(base_spec(version))
    if version == "2026-06-04":
        _add_finding_to_the_seed(spec)
        add_retry_policies(spec, base_spec(NEWER))
    describe_retries(spec)
    add_extension_attributes(spec, version)
    _tighten_parameters(spec)
    _bound_jobs(spec)
    add_links(spec)
    spec["components"]["schemas"]["ErrorDocument"] = _ERROR_DOCUMENT
    error_ref = {
        "content": {jsonapi.MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ErrorDocument"}}}
    }
    version_header = {
        "name": VERSION_HEADER,
        "in": "header",
        "required": False,
        "description": "The API version to use; the account's configured one when omitted. "
        "Every response names the version used in its own Jobsd-Version header.",
        "schema": {"type": "string", "enum": [version]},
    }
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            operation.setdefault("parameters", []).append(copy.deepcopy(version_header))
            responses = operation.setdefault("responses", {})
            for status, description in _statuses(path, method).items():
                given = responses.get(status)
                if given is None:
                    responses[status] = {"description": description, **error_ref}
                else:  # the contract's own words stay; the codes jobsd gives are added
                    given["description"] = f"{given.get('description', '')}\n\njobsd: {description}"
    spec["paths"]["/healthz"] = {
        "get": {
            "summary": "Health",
            "description": "200 once storage is open and every actor runs; 503 while "
            "starting or stopping. No authentication.",
            "operationId": "healthz",
            "responses": {
                "200": {"description": "Serving"},
                "503": {"description": "Starting or stopping", **error_ref},
            },
        }
    }
    spec["info"]["x-jobsd-api-version"] = version
    return json.dumps(spec, separators=(",", ":")).encode("utf-8")
