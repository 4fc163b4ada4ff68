"""Reading a decoded JSON document member by member, collecting problems.

The primitives every document parser of the API shares (jobs, environments,
retry policies, in both versions): a check never raises, it adds an
ErrorItem with its JSON pointer to `Errors` and returns a placeholder, so a
refused document lists every problem at once. Pure: no I/O, no clock.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from jobsd.api.fields import SURROGATE
from jobsd.errors import ErrorItem, invalid

MAX_ERRORS: Final = 100


class Missing(Enum):
    MISSING = 0


MISSING: Final = Missing.MISSING


class Errors:
    """The problems found so far; past MAX_ERRORS only counted, so that a
    2 MiB document of bad members cannot turn into a 50 MiB answer."""

    def __init__(self) -> None:
        self._found: list[ErrorItem] = []
        self._unlisted = 0

    def add(self, code: str, pointer: str, detail: str) -> None:
        if len(self._found) >= MAX_ERRORS:
            self._unlisted += 1
            return
        # Escaped so that an error about a bad string can always be encoded.
        pointer = pointer.encode("utf-8", "backslashreplace").decode("utf-8")
        detail = detail.encode("utf-8", "backslashreplace").decode("utf-8")
        self._found.append(invalid(code, pointer, detail))

    @property
    def items(self) -> list[ErrorItem]:
        if not self._unlisted:
            return list(self._found)
        more = ErrorItem(
            422,
            "too_many_errors",
            "Too many errors",
            f"{self._unlisted} more problems were found and not listed; fix these and send again.",
        )
        return [*self._found, more]


def kind(value: object) -> str:
    """The JSON type of a decoded value, for details a person can act on."""
    if value is None or isinstance(value, bool | str | int | float):
        names = {type(None): "null", bool: "a boolean", str: "a string", int: "an integer"}
        return names.get(type(value), "a number")
    return "an array" if isinstance(value, list) else "an object"


def read_object(errs: Errors, value: object, ptr: str, what: str) -> dict[str, object] | None:
    if value is MISSING:
        errs.add("required", ptr, f"{what} is required.")
    elif not isinstance(value, dict):
        errs.add("invalid_type", ptr, f"{what} must be an object, not {kind(value)}.")
    else:
        return value
    return None


def read_string(
    errs: Errors,
    value: object,
    ptr: str,
    *,
    max_len: int | None,
    min_len: int = 0,
    chars_code: str | None = "invalid_characters",
    allow_nul: bool = False,
) -> str | None:
    """A present value as a string within its limits (code points, as JSON Schema counts)."""
    name = ptr.rsplit("/", 1)[-1]
    if value is MISSING:
        errs.add("required", ptr, f"`{name}` is required.")
    elif not isinstance(value, str):
        errs.add("invalid_type", ptr, f"`{name}` must be a string, not {kind(value)}.")
    elif len(value) < min_len:
        errs.add("too_short", ptr, f"`{name}` must not be empty.")
    elif max_len is not None and len(value) > max_len:
        errs.add("too_long", ptr, f"`{name}` is {len(value)} characters; the limit is {max_len}.")
    elif chars_code is not None and (
        (not allow_nul and "\x00" in value) or SURROGATE.search(value)
    ):
        nul = "" if allow_nul else "NUL characters or "
        errs.add(chars_code, ptr, f"`{name}` must not contain {nul}unpaired surrogates.")
    else:
        return value
    return None


def read_boolean(errs: Errors, obj: dict[str, object], key: str, ptr: str) -> bool:
    value = obj.get(key, True)  # both booleans of the spec default to true
    if not isinstance(value, bool):
        errs.add("invalid_type", ptr, f"`{key}` must be true or false, not {kind(value)}.")
        return True
    return value


def read_choice(
    errs: Errors, obj: dict[str, object], key: str, ptr: str, allowed: tuple[str, ...]
) -> str:
    """An enum (or a const, with one value); omitted is the default, `allowed[0]`."""
    value = obj.get(key, allowed[0])
    if not isinstance(value, str):
        errs.add("invalid_type", ptr, f"`{key}` must be a string, not {kind(value)}.")
    elif value not in allowed:
        code = "invalid_method" if key == "method" else "invalid_value"
        choices = f'"{allowed[0]}"' if len(allowed) == 1 else f"one of {', '.join(allowed)}"
        errs.add(code, ptr, f"`{key}` must be {choices} (exact case).")
    else:
        return value
    return allowed[0]
