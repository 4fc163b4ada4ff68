"""What jobsd serves beyond a version's contract, written into its served spec.

VERSIONS.md gives 2026-06-04 clients the newer spec's retry policies and
some of its job attributes (`retry_policy`, `timezone`, `kind`); the seed's
schemas admit extra attributes, so these are extensions there, described
as such. jobsd's own attributes, in neither spec (`overlap_policy`, the
read-only `paused_reason`: top-level in the seed, in each environment
entry in 2026-08-07), are extensions in both versions. An extension omitted from a PUT keeps its
stored value (VERSIONS.md, "Extension attributes and PUT"), which each
description says, so a generated client knows it.
"""

from __future__ import annotations

import copy
from typing import Any

from jobsd.api.fields import SLUG
from jobsd.retry import MAX_POLICY_DELAY_S, MAX_STATUS_PATTERNS, STATUS_PATTERN
from jobsd.store.policies import MAX_POLICIES, MAX_REFERENCING_LISTED

NEWER = "2026-08-07"
POLICY_PATHS = ("/api/v1/retry-policies", "/api/v1/retry-policies/{policy_id}")
_POLICY_SCHEMAS = (
    "RetryPolicy",
    "RetryPolicyCreateRequest",
    "RetryPolicyCreateResource",
    "RetryPolicyListResponse",
    "RetryPolicyRequest",
    "RetryPolicyResource",
    "RetryPolicyResponse",
)
# Attributes of the newer Job schema that the seed's jobs also carry.
SEED_JOB_EXTENSIONS = ("timezone", "retry_policy", "kind")
_KEPT_BY_PUT = (
    " jobsd extension in this version: a PUT that omits it keeps the stored value;"
    " an explicit null resets it."
)


def add_retry_policies(spec: dict[str, Any], newer: dict[str, Any]) -> None:
    """Give the seed's served spec the newer spec's retry-policy paths and schemas."""
    for path in POLICY_PATHS:
        spec["paths"][path] = copy.deepcopy(newer["paths"][path])
    schemas = spec["components"]["schemas"]
    for name in _POLICY_SCHEMAS:
        schemas[name] = copy.deepcopy(newer["components"]["schemas"][name])
    job = schemas["Job"]["properties"]
    for name in SEED_JOB_EXTENSIONS:
        attribute = copy.deepcopy(newer["components"]["schemas"]["Job"]["properties"][name])
        if not attribute.get("readOnly"):
            attribute["description"] += _KEPT_BY_PUT
        job[name] = attribute


_OVERLAP = {
    "type": "string",
    "enum": ["ALLOW", "SKIP"],
    "title": "Overlap Policy",
    "default": "ALLOW",
    "description": "jobsd extension. What a slot does while a run of the same job and"
    " environment is still PENDING or RUNNING (a retry waiting for its instant"
    " included): `ALLOW` fires anyway, unless an earlier slot's run there is still"
    " PENDING, waiting to start (a slot never queues behind another); `SKIP` sends no"
    " request. A skipped slot is recorded as a SCHEDULE run, CANCELED and not metered,"
    " whose `error` begins with `skipped:` and names the run still going." + _KEPT_BY_PUT,
}


_PAUSED = (
    "jobsd extension, read-only (ignored on input). Why the job was auto-paused in"
    " {where}: after the plan's `auto_pause_after` consecutive failed runs (after"
    " retries) jobsd disables it there and says so here, naming the last failed run."
    " Enabling it there again clears it."
)


def add_extension_attributes(spec: dict[str, Any], version: str) -> None:
    """jobsd's own job attributes (both versions), and what runs' retries look like."""
    job = spec["components"]["schemas"]["Job"]["properties"]
    job["overlap_policy"] = copy.deepcopy(_OVERLAP)
    if version == NEWER:
        job["environments"]["description"] += (
            " jobsd: an entry also reports the read-only `paused_reason` while it is"
            " auto-paused (absent otherwise). " + _PAUSED.format(where="that environment")
        )
    else:
        job["paused_reason"] = {
            "anyOf": [{"type": "string"}, {"type": "null"}],
            "title": "Paused Reason",
            "description": _PAUSED.format(where="the default environment")
            + " `null` when it was not auto-paused.",
            "readOnly": True,
        }
    run = spec["components"]["schemas"]["Run"]["properties"]
    if version == NEWER:
        run["scheduled_for"]["description"] += (
            " jobsd: for a `RETRY` run, the instant its backoff made it due (its lateness"
            " is `started_at` minus it, as for a scheduled run)."
        )
    else:
        run["trigger"]["description"] += (
            " jobsd: an automatic retry (`RETRY` in 2026-08-07) shows here as a `RERUN`"
            " whose `rerun_of` is the run it retries."
        )


def describe_retries(spec: dict[str, Any]) -> None:
    """The retry-policy rules the contract leaves open, written into its schemas."""
    paths = spec["paths"]
    paths[POLICY_PATHS[1]]["delete"]["description"] += (
        f"\n\njobsd: the 409's error object lists at most {MAX_REFERENCING_LISTED} job ids"
        " in `meta.referencing_jobs`, and the whole count in `meta.referencing_jobs_total`."
    )
    schemas = spec["components"]["schemas"]
    schemas["RetryPolicyCreateResource"]["properties"]["id"]["pattern"] = f"^{SLUG.pattern}$"
    policy = schemas["RetryPolicy"]
    policy["description"] += (
        "\n\njobsd: an id is 1-100 characters of a-z 0-9 - _ starting with a letter or"
        f" digit; an account holds at most {MAX_POLICIES} policies (403"
        " retry_policies_limit). Our extension: a failed `429` or `503` answer with"
        " `Retry-After` waits the larger of the policy's delay and the header's (capped"
        " by `max_delay_seconds` when set, and by 24 hours)."
    )
    rules = policy["properties"]
    rules["delay_seconds"]["maximum"] = MAX_POLICY_DELAY_S
    rules["max_delay_seconds"]["anyOf"][0]["maximum"] = MAX_POLICY_DELAY_S
    for name in ("retry_statuses", "retry_statuses_except"):
        rules[name]["maxItems"] = MAX_STATUS_PATTERNS
        rules[name]["items"]["pattern"] = f"^{STATUS_PATTERN.pattern}$"


# What the newer GET /jobs parameters mean through 2026-06-04 (`jobsd.api.v2026_06_04`).
_SEED_JOB_PARAMETERS = {
    "filter[kind]": "Restrict to a single job kind: `recurring` or `one_off` (`manual`, a job "
    "without a schedule, has no form in this version and is never listed). By default both "
    "are listed.",
    "filter[scheduled]": "When `true`, list only jobs with a `next_run_at`; when `false`, only "
    "jobs without one (as this version shows them: in the account's default environment).",
    "filter[name]": None,  # as the newer spec says
    "sort": "Field to sort by. Prefix with `-` for descending order. Default: `-created_at` "
    "(newest first). Allowed values: `created_at`, `-created_at`, `name`, `-name`, "
    "`updated_at`, `-updated_at`.",
}


def add_seed_job_parameters(spec: dict[str, Any], newer: dict[str, Any]) -> None:
    """The newer GET /jobs filters and sort, which the seed takes too (query parameters
    are additive), described as they work there; its default order stays newest first."""
    listing = spec["paths"]["/api/v1/jobs"]["get"]["parameters"]
    for parameter in newer["paths"]["/api/v1/jobs"]["get"]["parameters"]:
        if parameter["name"] not in _SEED_JOB_PARAMETERS:
            continue
        added = copy.deepcopy(parameter)
        if (said := _SEED_JOB_PARAMETERS[added["name"]]) is not None:
            added["description"] = added["schema"]["description"] = said
        if added["name"] == "sort":
            added["schema"]["default"] = "-created_at"
        listing.append(added)
