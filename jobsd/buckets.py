"""`GET /run_stats` buckets: sizes, alignment to the epoch, and the bound on how many.

A bucket of size `s` starts at a multiple of `s` since the Unix epoch (UTC),
so `1h` buckets start on the hour and `1d` at midnight UTC, whatever the
interval asked for. Python's floor division makes that true before 1970 too.

A response lists only non-empty buckets, but it must still have a bound:
the span a request covers (its interval, narrowed to the instants runs
exist at) may hold at most `MAX_BUCKETS` buckets of the size asked for, or
the request is refused with the sizes that would do. 10,000 buckets is a
week of `1m`, a month of `5m`, 100 days of `15m` and over a year of `1h`,
and keeps the response under a megabyte. Pure: no I/O.
"""

from __future__ import annotations

BUCKETS_US: dict[str, int] = {
    "1m": 60_000_000,
    "5m": 300_000_000,
    "15m": 900_000_000,
    "1h": 3_600_000_000,
    "6h": 21_600_000_000,
    "1d": 86_400_000_000,
}
MAX_BUCKETS = 10_000


def bucket_start_us(us: int, size_us: int) -> int:
    return us - us % size_us


def buckets_spanned(first_us: int, last_us: int, size_us: int) -> int:
    """How many aligned buckets the instants `first_us..last_us` (inclusive) touch."""
    if last_us < first_us:
        return 0
    return (bucket_start_us(last_us, size_us) - bucket_start_us(first_us, size_us)) // size_us + 1


def sizes_that_fit(first_us: int, last_us: int) -> list[str]:
    return [
        name
        for name, size in BUCKETS_US.items()
        if buckets_spanned(first_us, last_us, size) <= MAX_BUCKETS
    ]
