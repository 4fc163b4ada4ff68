"""OpenAPI links for the served documents (`jobsd.api.spec`): how a response
feeds the next request, so that clients and a stateful fuzzer (schemathesis's
stateful run) chain create -> get/replace/delete/run -> get/cancel/rerun on
resources that exist. Split from `jobsd.api.spec` to keep it small.
"""

from __future__ import annotations

import copy
from typing import Any


# OpenAPI links: how a response feeds the next request, so that clients and a
# stateful fuzzer can chain create -> get/replace/delete/run -> get/cancel/rerun
# on resources that exist. (source path, method, status) -> link names.
def _job_links(expr: str) -> dict[str, Any]:
    job = {"job_id": expr}
    return {
        "GetJob": {"operationId": "get_job", "parameters": job},
        "UpdateJob": {"operationId": "update_job", "parameters": job},
        "ReplaceJobWithItself": {
            "operationId": "update_job",
            "parameters": job,
            "requestBody": "$response.body",
            "description": "PUT back what was read: read-only attributes are ignored",
        },
        "DeleteJob": {"operationId": "delete_job", "parameters": job},
        "RunJobNow": {"operationId": "run_job_now", "parameters": job},
        "ListRunsOfJob": {"operationId": "list_runs", "parameters": {"query.filter[job]": expr}},
    }


def _run_links(expr: str) -> dict[str, Any]:
    run = {"run_id": expr}
    return {
        "GetRun": {"operationId": "get_run", "parameters": run},
        "CancelRun": {"operationId": "cancel_run", "parameters": run},
        "RerunRun": {"operationId": "rerun_run", "parameters": run},
    }


def _policy_links(expr: str) -> dict[str, Any]:
    policy = {"policy_id": expr}
    return {
        "GetRetryPolicy": {"operationId": "get_retry_policy", "parameters": policy},
        "UpdateRetryPolicy": {"operationId": "update_retry_policy", "parameters": policy},
        "DeleteRetryPolicy": {"operationId": "delete_retry_policy", "parameters": policy},
    }


_ONE = "$response.body#/data/id"
_FIRST = "$response.body#/data/0/id"  # names nothing when the list is empty
_LINKS: dict[tuple[str, str, str], dict[str, Any]] = {
    ("/api/v1/jobs", "post", "201"): _job_links(_ONE),
    ("/api/v1/jobs", "get", "200"): _job_links(_FIRST),
    ("/api/v1/jobs/{job_id}", "get", "200"): _job_links(_ONE),
    ("/api/v1/jobs/{job_id}", "put", "200"): _job_links(_ONE),
    ("/api/v1/jobs/{job_id}/actions/run", "post", "200"): {
        **_run_links(_ONE),
        "GetJobOfRun": {
            "operationId": "get_job",
            "parameters": {"job_id": "$response.body#/data/attributes/job"},
        },
    },
    ("/api/v1/runs", "get", "200"): _run_links(_FIRST),
    ("/api/v1/retry-policies", "post", "201"): _policy_links(_ONE),
    ("/api/v1/retry-policies", "get", "200"): _policy_links(_FIRST),
    ("/api/v1/retry-policies/{policy_id}", "get", "200"): _policy_links(_ONE),
    ("/api/v1/retry-policies/{policy_id}", "put", "200"): _policy_links(_ONE),
    ("/api/v1/runs/{run_id}", "get", "200"): _run_links(_ONE),
    ("/api/v1/runs/{run_id}/actions/cancel", "post", "200"): _run_links(_ONE),
    ("/api/v1/runs/{run_id}/actions/rerun", "post", "200"): _run_links(_ONE),
}


def add_links(spec: dict[str, Any]) -> None:
    for (path, method, status), links in _LINKS.items():
        spec["paths"][path][method]["responses"][status]["links"] = copy.deepcopy(links)
