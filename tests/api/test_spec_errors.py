"""The served OpenAPI document names the error codes each operation can answer.

A client (or a fuzzer) reads the spec to learn what an operation may say;
a status whose description leaves out a code the operation gives tells it
that code cannot come. Checked here for the codes whose status another
description of the same operation replaced, or that were never written in.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.api.conformance import NEW, SEED, spec

LISTS = (("/api/v1/jobs", "get"), ("/api/v1/runs", "get"))

# (status, code): the operations that can answer it (every one: None).
EXPECTED: dict[tuple[str, str], tuple[tuple[str, str], ...] | None] = {
    # Answered to any request, lists included, from a layer in front of the routes.
    ("503", "request_timeout"): None,
    ("503", "store_busy"): None,
    ("503", "store_unavailable"): None,
    ("503", "too_many_connections"): None,
    ("400", "invalid_host"): None,
    # A list waiting too long for its snapshot (jobsd.store.snapshots).
    ("429", "too_many_lists"): LISTS,
    ("503", "busy"): LISTS,
    # A rerun of a run whose environment the config no longer lists.
    ("409", "environment_not_configured"): (("/api/v1/runs/{run_id}/actions/rerun", "post"),),
}


@pytest.mark.parametrize("version", [SEED, NEW])
@pytest.mark.parametrize(("status", "code"), sorted(EXPECTED))
def test_each_operation_names_the_codes_it_can_answer(version: str, status: str, code: str) -> None:
    paths = spec(version)["paths"]
    where = EXPECTED[(status, code)]
    operations = where or [
        (path, method) for path, ops in paths.items() if path != "/healthz" for method in ops
    ]
    missing = [
        f"{method.upper()} {path}"
        for path, method in operations
        if not re.search(rf"\b{code}\b", described(paths[path][method], status))
    ]
    assert not missing, f"{status} {code} is not named for {missing}"


def described(operation: dict[str, Any], status: str) -> str:
    return str(operation["responses"].get(status, {}).get("description", ""))
