"""Each bound of a request body (`jobsd.api.jsonapi`) holds at its edge: the last
size, count and depth taken, the next one refused, and a member name twice refused."""

from __future__ import annotations

import pytest

from jobsd.api.jsonapi import MAX_BODY_BYTES, MAX_JSON_VALUES, MEDIA_TYPE, optional_document
from jobsd.errors import ApiError


def refusal(raw: bytes) -> tuple[int, str]:
    with pytest.raises(ApiError) as info:
        optional_document(raw, MEDIA_TYPE)
    return info.value.status, info.value.items[0].code


def test_a_body_of_2_mib_is_read_and_one_byte_more_is_413() -> None:
    assert optional_document(b"{}" + b" " * (MAX_BODY_BYTES - 2), MEDIA_TYPE) == {}
    assert refusal(b"{}" + b" " * (MAX_BODY_BYTES - 1))[0] == 413


def test_the_last_value_allowed_is_read_and_one_more_is_413() -> None:
    # A list of n zeros is n + 1 values.
    assert (
        len(optional_document(b"[" + b",".join([b"0"] * (MAX_JSON_VALUES - 1)) + b"]", MEDIA_TYPE))
        == MAX_JSON_VALUES - 1
    )
    assert refusal(b"[" + b",".join([b"0"] * MAX_JSON_VALUES) + b"]") == (413, "too_many_values")


def test_64_levels_are_read_and_65_are_400() -> None:
    assert optional_document(b"[" * 64 + b"]" * 64, MEDIA_TYPE) is not None
    assert refusal(b"[" * 65 + b"]" * 65) == (400, "malformed_json")


def test_a_member_name_twice_in_one_object_is_400() -> None:
    assert optional_document(b'{"a":{"url":1},"b":{"url":2}}', MEDIA_TYPE) is not None
    assert refusal(b'{"a":{"url":1,"url":2}}') == (400, "malformed_json")


def test_commas_inside_thousands_of_strings_are_not_counted_as_values() -> None:
    # 6,000 strings holding a comma each: 12,001 by the cheap count, 6,001 values.
    raw = b"[" + b",".join([b'","'] * 6000) + b"]"
    assert len(optional_document(raw, MEDIA_TYPE)) == 6000
