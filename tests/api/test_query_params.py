"""`jobsd.api.params.Query` on its own: which names an endpoint refuses, before any read."""

from __future__ import annotations

import pytest
from werkzeug.datastructures import MultiDict

from jobsd.api.params import Query
from jobsd.errors import ApiError


def refused(pairs: list[tuple[str, str]], known: tuple[str, ...]) -> str | None:
    """The parameter a 400 names, or None when the query is taken."""
    try:
        Query(MultiDict(pairs), known)
    except ApiError as e:
        assert e.status == 400 and len(e.items) == 1
        return e.items[0].parameter
    return None


def test_a_known_parameter_given_twice_is_refused_not_taken_once() -> None:
    pairs = [("page[size]", "1"), ("page[size]", "2")]
    assert refused(pairs, ("page[size]",)) == "page[size]"
    assert refused(pairs[:1], ("page[size]",)) is None


@pytest.mark.parametrize("name", ["fields[job]", "fields[run]", "fields["])
def test_a_sparse_fieldset_where_none_is_taken_is_refused(name: str) -> None:
    # JSON:API: a client sending fields[...] expects fewer members; ignored, it
    # would take the whole resource for what it asked.
    assert refused([(name, "name")], ()) == name
    assert refused([("fieldsets", "x")], ()) is None  # not of the family: no bracket
