"""The bound on values in a request body: counted right, cheap, and what it saves.

`json_values_at_most` against a count of the decoded document as the
oracle, by hypothesis (strings full of commas and brackets included); then
the memory a refused body costs against what decoding it would have.
"""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsd.api.jsonapi import MAX_JSON_VALUES, json_values_at_most
from jobsd.errors import ApiError

tricky_text = st.text(st.sampled_from([*'a,[]{}:"\\', "é", "\n", "\x00"]), max_size=12)
documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | tricky_text,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(tricky_text, inner, max_size=5),
    max_leaves=40,
)


def values(doc: Any) -> tuple[int, int]:
    """(values, empty containers) of a decoded document."""
    if isinstance(doc, list | dict):
        items = list(doc.values()) if isinstance(doc, dict) else doc
        counted = [values(item) for item in items]
        return 1 + sum(v for v, _ in counted), (not items) + sum(e for _, e in counted)
    return 1, 0


@settings(max_examples=300, deadline=None)
@given(documents, st.booleans(), st.booleans())
def test_the_bound_is_the_count_give_or_take_empty_containers(
    doc: Any, ascii_only: bool, spaced: bool
) -> None:
    separators = (", ", ": ") if spaced else (",", ":")
    raw = json.dumps(doc, ensure_ascii=ascii_only, separators=separators).encode()
    count, empties = values(doc)
    # Past the cheap bound the exact one is used: make it be used too.
    padded = b'{"pad":"' + b"," * MAX_JSON_VALUES + b'","doc":' + raw + b"}"
    assert count <= json_values_at_most(raw)
    assert count <= json_values_at_most(padded) - 2 <= count + empties


@pytest.mark.parametrize(
    "raw",
    [
        b"[" + b",".join([b"{}"] * 699_000) + b"]",
        b"[" + b",".join([b'"ab"'] * 400_000) + b"]",
        b'{"data":{"x":[' + b",".join([b'{"k":"v"}'] * 200_000) + b"]}}",
    ],
    ids=["objects", "strings", "members"],
)
def test_a_refused_body_costs_a_fraction_of_decoding_it(raw: bytes) -> None:
    from jobsd.api import jsonapi

    tracemalloc.start()
    try:
        with pytest.raises(ApiError) as info:
            jsonapi._decode(raw)
        refused = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        json.loads(raw)
        decoded = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.status == 413 and info.value.items[0].code == "too_many_values"
    assert refused < len(raw) // 4 and decoded > 10 * len(raw), (refused, decoded)
