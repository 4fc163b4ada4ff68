"""What `GET /runs` and `GET /run_stats` may be asked to keep: one value, a list, a range.

`filter[status]` and `filter[trigger]` take one value or a comma-separated
list (any-of), spelt exactly as the spec enumerates them; spaces around
the commas are ignored, an empty item or an unknown value is refused with
the choices. The trigger choices are the spec's, `RETRY` included, whether
or not this store holds any retry yet. Interval texts are `jobsd.intervals`.

`RunFilter` is the parsed whole: the store turns it into SQL, and the tests
hold that SQL to `RunFilter.keeps`, the same rule over plain values.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from jobsd.intervals import Interval
from jobsd.runs import RunStatus

STATUS_CHOICES: tuple[str, ...] = tuple(s.value for s in RunStatus)
TRIGGER_CHOICES: tuple[str, ...] = ("SCHEDULE", "MANUAL", "RERUN", "RETRY")
_MAX_ITEMS = 50  # more than any choice list has, with room for repeats


def parse_choices(raw: str, choices: Sequence[str]) -> frozenset[str]:
    """One value or a comma list of `choices`; ValueError naming what is wrong."""
    items = [item.strip() for item in raw.split(",")]
    if len(items) > _MAX_ITEMS:
        raise ValueError(f"lists {len(items)} values; at most {_MAX_ITEMS}")
    unknown = [item for item in items if item not in choices]
    if unknown:
        shown = ", ".join(f"'{item}'" for item in unknown[:5])
        raise ValueError(
            f"takes one of {', '.join(choices)} or a comma-separated list of them, not {shown}"
        )
    return frozenset(items)


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Filters that compose with AND; None (or an open interval) keeps everything."""

    job: str | None = None
    statuses: frozenset[str] | None = None
    triggers: frozenset[str] | None = None
    environments: frozenset[str] | None = None
    created_at: Interval = field(default_factory=Interval)
    started_at: Interval = field(default_factory=Interval)
    finished_at: Interval = field(default_factory=Interval)
    scheduled_for: Interval = field(default_factory=Interval)

    def keeps(
        self,
        *,
        job: str,
        status: str,
        trigger: str,
        environment: str,
        created_at_us: int,
        started_at_us: int | None,
        finished_at_us: int | None,
        scheduled_for_us: int | None,
    ) -> bool:
        return (
            (self.job is None or job == self.job)
            and (self.statuses is None or status in self.statuses)
            and (self.triggers is None or trigger in self.triggers)
            and (self.environments is None or environment in self.environments)
            and (self.created_at.is_open or created_at_us in self.created_at)
            and (self.started_at.is_open or started_at_us in self.started_at)
            and (self.finished_at.is_open or finished_at_us in self.finished_at)
            and (self.scheduled_for.is_open or scheduled_for_us in self.scheduled_for)
        )
