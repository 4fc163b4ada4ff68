"""The orders `GET /runs` can list in, and where a run stands in each.

`sort` names a field, `-` for descending. Every order is total: ties are
broken by `created_at`, then by insertion order (`seq`), in the sort's own
direction, so a keyset cursor (a position in the order) resumes exactly.

An order is a sequence of segments, each walked by one index:
- `created_at`, `job`: one segment.
- `started_at`, `finished_at`, `scheduled_for`, `total_duration_ms`: the
  runs that have the field, then those that do not ("a run without the sort
  field goes last in either direction"); the unset ones keep the tie order.
- `status`: one segment per status, in the lifecycle order the spec lists
  them (PENDING, RUNNING, SUCCEEDED, FAILED, CANCELED), reversed for
  `-status`; a meaningful order rather than the alphabet's.

`total_duration_ms` orders by the value the API renders (whole
milliseconds, floored), so runs with equal rendered durations fall back to
the tie order rather than to an invisible microsecond difference.

Pure: the store turns a `RunSort` into SQL, and the tests (and
`last_run_only`, which orders a few hundred rows in memory) use `position`
and `sort_positions` as the definition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from jobsd.runs import RunStatus


class SortField(StrEnum):
    CREATED_AT = "created_at"
    STARTED_AT = "started_at"
    FINISHED_AT = "finished_at"
    SCHEDULED_FOR = "scheduled_for"
    STATUS = "status"
    JOB = "job"
    TOTAL_DURATION_MS = "total_duration_ms"

    @property
    def nullable(self) -> bool:
        return self in _NULLABLE


_NULLABLE = frozenset(
    {
        SortField.STARTED_AT,
        SortField.FINISHED_AT,
        SortField.SCHEDULED_FOR,
        SortField.TOTAL_DURATION_MS,
    }
)
LIFECYCLE: tuple[RunStatus, ...] = tuple(RunStatus)  # the spec's order


@dataclass(frozen=True, slots=True)
class RunSort:
    field: SortField
    descending: bool

    @property
    def text(self) -> str:
        return ("-" if self.descending else "") + self.field.value

    @property
    def code(self) -> int:
        """A small number naming this sort, carried in its cursors."""
        return list(SortField).index(self.field) * 2 + int(self.descending)

    @property
    def segment_count(self) -> int:
        if self.field is SortField.STATUS:
            return len(LIFECYCLE)
        return 2 if self.field.nullable else 1

    def status_of_segment(self, segment: int) -> RunStatus:
        """For the status sort: which status segment `segment` holds."""
        order = LIFECYCLE[::-1] if self.descending else LIFECYCLE
        return order[segment]


DEFAULT_SORT = RunSort(SortField.CREATED_AT, descending=True)
SORT_CHOICES: tuple[str, ...] = tuple(
    sorted(f"{sign}{f.value}" for f in SortField for sign in ("", "-"))
)


def parse_sort(text: str) -> RunSort:
    descending = text.startswith("-")
    try:
        field = SortField(text[1:] if descending else text)
    except ValueError:
        raise ValueError(f"sort must be one of {', '.join(SORT_CHOICES)}, not '{text}'") from None
    return RunSort(field, descending)


def sort_of_code(code: int) -> RunSort | None:
    fields = list(SortField)
    if not 0 <= code < 2 * len(fields):
        return None
    return RunSort(fields[code // 2], bool(code % 2))


@dataclass(frozen=True, slots=True)
class RunKeys:
    """The stored values of a run that orders are made of (instants in microseconds)."""

    seq: int
    created_at_us: int
    started_at_us: int | None
    finished_at_us: int | None
    scheduled_for_us: int | None
    status: RunStatus
    job_slug: str


@dataclass(frozen=True, slots=True)
class Position:
    """Where a run stands in one order: its segment, then its key within the segment.

    `value` is the sort field's value (None where the segment implies it:
    `created_at`, `status`, the unset segment), then the tie order.
    """

    segment: int
    value: int | str | None
    created_at_us: int
    seq: int

    def key(self) -> tuple[int | str, ...]:
        within = (self.created_at_us, self.seq)
        return within if self.value is None else (self.value, *within)


def total_duration_ms(created_at_us: int, finished_at_us: int | None) -> int | None:
    """As rendered: whole milliseconds from creation to finish, floored, never negative."""
    if finished_at_us is None:
        return None
    return max(0, (finished_at_us - created_at_us) // 1000)


def sort_value(field: SortField, keys: RunKeys) -> int | str | None:
    if field is SortField.CREATED_AT:
        return keys.created_at_us
    if field is SortField.STARTED_AT:
        return keys.started_at_us
    if field is SortField.FINISHED_AT:
        return keys.finished_at_us
    if field is SortField.SCHEDULED_FOR:
        return keys.scheduled_for_us
    if field is SortField.TOTAL_DURATION_MS:
        return total_duration_ms(keys.created_at_us, keys.finished_at_us)
    if field is SortField.JOB:
        return keys.job_slug
    return keys.status.value


def position(sort: RunSort, keys: RunKeys) -> Position:
    field, created, seq = sort.field, keys.created_at_us, keys.seq
    if field is SortField.CREATED_AT:
        return Position(0, None, created, seq)
    if field is SortField.STATUS:
        order = LIFECYCLE[::-1] if sort.descending else LIFECYCLE
        return Position(order.index(keys.status), None, created, seq)
    value = sort_value(field, keys)
    if value is None:
        return Position(1, None, created, seq)
    return Position(0, value, created, seq)


def compare(sort: RunSort, a: Position, b: Position) -> int:
    """<0 when `a` is listed before `b`; 0 only for the same run."""
    if a.segment != b.segment:
        return -1 if a.segment < b.segment else 1
    ka, kb = a.key(), b.key()
    if ka == kb:
        return 0
    before = ka < kb  # type: ignore[operator]  # same segment: same key shape
    return -1 if before != sort.descending else 1


def sort_positions(sort: RunSort, positions: Sequence[Position]) -> list[Position]:
    """In listing order: by segment, then by key in the sort's direction (keys are unique)."""
    out: list[Position] = []
    for segment in sorted({p.segment for p in positions}):
        within = [p for p in positions if p.segment == segment]
        out += sorted(within, key=Position.key, reverse=sort.descending)  # type: ignore[arg-type]
    return out
