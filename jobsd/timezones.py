"""Time zone names: which strings name an IANA zone.

Pure. The names come from the `tzdata` package's database (through
`zoneinfo`), so the answer does not depend on the host's zone files.
"""

from __future__ import annotations

import zoneinfo
from functools import lru_cache


@lru_cache(maxsize=1)
def _names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def timezone_problem(name: str) -> str | None:
    """Why `name` is not an IANA time zone; None when it is one."""
    if name in _names():
        return None
    return (
        f"{name!r} is not an IANA time zone name; use one such as America/New_York, "
        "Europe/London or UTC (names are case-sensitive)"
    )
