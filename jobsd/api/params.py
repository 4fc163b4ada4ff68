"""Query parameters, strictly: a bad one is a 400 naming it.

Each endpoint declares the parameter families it understands; an unknown
member of a JSON:API family (`page[...]`, `filter[...]`, `meta[...]`) is an
error rather than silently ignored, so a typo such as `page[sise]` is
caught instead of quietly returning the defaults.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from werkzeug.datastructures import MultiDict

from jobsd import errors

# A family member is any name that opens a family's bracket, however it goes on
# (`filter[status][]` as qs and Rails spell a list, an unclosed `page[size`):
# one the endpoint does not take is refused, never read as "no filter".
_FAMILY = re.compile(r"^(page|filter|meta|sort|include|fields)\[|^(sort|include)$")
_DIGITS = re.compile(r"[0-9]{1,18}", re.ASCII)  # fullmatch: `$` also matches before a final \n
# What 18 digits hold: every integer parameter stops there (well inside
# SQLite's int64), so a page past any end is still answered, just empty.
LARGEST = 10**18 - 1


class Query:
    def __init__(self, args: MultiDict[str, str], known: Collection[str]) -> None:
        self._args = args
        for name in args:
            if name not in known and _FAMILY.match(name):
                raise errors.bad_parameter(name, f"{name} is not a parameter of this endpoint")
            if name in known and len(args.getlist(name)) > 1:
                raise errors.bad_parameter(name, f"{name} may be given only once")

    def text(self, name: str) -> str | None:
        return self._args.get(name)

    def sort(self, default: str, choices: Collection[str]) -> str:
        """`sort`, or `default` only when absent: `sort=` (empty) names none of
        `choices`, a 400 like any other value outside them."""
        raw = self._args.get("sort")
        if raw is None:
            return default
        if raw not in choices:
            raise errors.bad_parameter(
                "sort", f"sort must be one of {', '.join(choices)}, not '{raw}'"
            )
        return raw

    def integer(self, name: str, default: int, low: int, high: int = LARGEST) -> int:
        raw = self._args.get(name)
        if raw is None:
            return default
        value = int(raw) if _DIGITS.fullmatch(raw) else None
        if value is None or not low <= value <= high:
            raise errors.bad_parameter(
                name, f"{name} must be an integer between {low} and {high}, not '{raw}'"
            )
        return value

    def boolean(self, name: str) -> bool | None:
        raw = self._args.get(name)
        if raw is None:
            return None
        if raw not in ("true", "false"):
            raise errors.bad_parameter(name, f"{name} must be true or false, not '{raw}'")
        return raw == "true"


def no_parameters(args: MultiDict[str, str]) -> None:
    """For an endpoint that takes no query parameter: any of a family (`include`,
    `sort`, a page, filter or meta member) is a 400 naming it. JSON:API asks it
    of `include` and `sort` where they are not supported; ignored, a client
    would take the answer for what it asked."""
    Query(args, ())
