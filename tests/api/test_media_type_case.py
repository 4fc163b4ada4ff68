"""Media type names are case-insensitive (RFC 9110 8.3.1): in a `Content-Type` and an
`Accept` alike (`jobsd.api.jsonapi`)."""

from __future__ import annotations

import pytest

from jobsd.api.jsonapi import check_accept, check_media_type
from jobsd.errors import ApiError


def test_a_content_type_is_read_whatever_its_case() -> None:
    check_media_type("Application/VND.API+JSON")
    check_media_type("APPLICATION/JSON; charset=utf-8")


def test_an_accept_naming_the_media_type_in_capitals_is_judged_as_lower_case() -> None:
    with pytest.raises(ApiError) as info:
        check_accept("Application/Vnd.Api+Json; ext=x")
    assert info.value.status == 406
