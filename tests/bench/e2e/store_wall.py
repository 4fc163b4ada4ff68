"""The store's writer as the daemon's own metrics saw it while a burst fired.

`bench_store.py` gives the writer's CPU per write with nothing else
running; this gives its wall time per write inside the daemon, from the
`jobsd_store_transaction_seconds` and `jobsd_store_batch_size` histograms
read from `/metrics` before and after the firing phase. Where wall time is
several times the CPU time, the writer thread is waiting for the GIL
behind the event loop's thread, and every claim and finish waits with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx2
from prometheus_client.parser import text_string_to_metric_families

_WANTED = {
    "jobsd_store_transaction_seconds_sum": "seconds",
    "jobsd_store_transaction_seconds_count": "transactions",
    "jobsd_store_batch_size_sum": "writes",
}


@dataclass(frozen=True)
class StoreSample:
    seconds: float = 0.0
    transactions: float = 0.0
    writes: float = 0.0

    def __sub__(self, other: StoreSample) -> StoreSample:
        return StoreSample(
            self.seconds - other.seconds,
            self.transactions - other.transactions,
            self.writes - other.writes,
        )

    def describe(self) -> str:
        if self.transactions <= 0 or self.writes <= 0:
            return "store: no write transaction seen in /metrics"
        return (
            f"store: {self.writes:.0f} writes in {self.transactions:.0f} "
            f"transactions ({self.writes / self.transactions:.1f} per transaction), "
            f"BEGIN..COMMIT {self.seconds * 1000 / self.transactions:.2f} ms each, "
            f"{self.seconds * 1e6 / self.writes:.0f} us of the writer's wall time per write"
        )


def parse(text: str) -> StoreSample:
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in _WANTED:
                found[_WANTED[sample.name]] = sample.value
    return StoreSample(**found)


async def store_sample(api: httpx2.AsyncClient) -> StoreSample | None:
    """None when /metrics cannot be read (an older checkout, metrics off)."""
    try:
        response = await api.get("/metrics")
    except httpx2.HTTPError:
        return None
    return parse(response.text) if response.status_code == 200 else None
