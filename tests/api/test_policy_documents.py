"""`jobsd.api.policy_documents` called directly: what an omitted field means, and the
bounds the specs set on a retry policy's fields (pure, no app or store)."""

from __future__ import annotations

from typing import Any

import pytest

from jobsd.api.policy_documents import parse_policy_document
from jobsd.errors import ValidationFailed
from jobsd.retry import Backoff, RetryPolicy


def doc(**attrs: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "name": "Fixed",
        "max_retries": 2,
        "backoff": "fixed",
        "delay_seconds": 5,
    }
    attributes.update(attrs)
    return {"data": {"id": "fixed", "type": "retry_policy", "attributes": attributes}}


def test_what_is_left_out_is_the_specs_default() -> None:
    """The flags default to false and the lists to empty (the 2026-08-07 spec's
    `RetryPolicy`): a policy that names no condition retries nothing."""
    policy_id, name, rules = parse_policy_document(doc(), path_id=None)
    assert (policy_id, name) == ("fixed", "Fixed")
    assert rules == RetryPolicy(max_retries=2, backoff=Backoff.FIXED, delay_seconds=5)
    assert not rules.retry_on_timeout and not rules.retry_on_connection_error
    assert rules.retry_statuses == () and rules.retry_statuses_except == ()


def test_a_name_is_1_to_200_characters() -> None:
    assert parse_policy_document(doc(name="n" * 200), path_id=None)[1] == "n" * 200
    for name in ("", "n" * 201):
        with pytest.raises(ValidationFailed) as refused:
            parse_policy_document(doc(name=name), path_id=None)
        assert [i.pointer for i in refused.value.items] == ["/data/attributes/name"]
