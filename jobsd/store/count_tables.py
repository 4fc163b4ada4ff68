"""Run counts kept as runs change: the tables `GET /run_stats` reads instead of the runs.

Two tables, the same shape at two grains: runs per (account, minute
created, environment) and per (account, hour created, environment), one
column per status. Triggers on `runs` keep both in the transaction of every
insert, status change and delete (retention's included), so no code path
can forget to count and a count never disagrees with the runs committed
beside it. A row whose counts all reach zero is deleted. Statistics over a
month then read ~2,200 hourly rows (three environments) plus at most two
hours of minutes at the ends, rather than a million runs.

Statements are listed one by one (for migration 4): trigger bodies hold
semicolons.
"""

from __future__ import annotations

STATUS_COLUMNS = ("pending", "running", "succeeded", "failed", "canceled")
# (table, its time column, microseconds per unit)
GRAINS = (("run_counts", "minute", 60_000_000), ("run_counts_hourly", "hour", 3_600_000_000))


def _upsert(table: str, unit: str, unit_us: int, row: str) -> str:
    values = ", ".join(f"{row}.status = '{c.upper()}'" for c in STATUS_COLUMNS)
    return (
        f"INSERT INTO {table} (account_id, {unit}, environment, {', '.join(STATUS_COLUMNS)}) "
        f"VALUES ({row}.account_id, {row}.created_at_us / {unit_us}, {row}.environment, "
        f"{values}) ON CONFLICT (account_id, {unit}, environment) DO UPDATE SET "
        + ", ".join(f"{c} = {c} + excluded.{c}" for c in STATUS_COLUMNS)
    )


def _remove(table: str, unit: str, unit_us: int, row: str) -> str:
    key = (
        f"account_id = {row}.account_id AND {unit} = {row}.created_at_us / {unit_us} "
        f"AND environment = {row}.environment"
    )
    change = ", ".join(f"{c} = {c} - ({row}.status = '{c.upper()}')" for c in STATUS_COLUMNS)
    empty = " AND ".join(f"{c} = 0" for c in STATUS_COLUMNS)
    return f"UPDATE {table} SET {change} WHERE {key}; DELETE FROM {table} WHERE {key} AND {empty}"


def _move(table: str, unit: str, unit_us: int) -> str:
    """A run that changed status only: one count moves between columns of its row."""
    change = ", ".join(
        f"{c} = {c} - (OLD.status = '{c.upper()}') + (NEW.status = '{c.upper()}')"
        for c in STATUS_COLUMNS
    )
    return (
        f"UPDATE {table} SET {change} WHERE account_id = NEW.account_id AND "
        f"{unit} = NEW.created_at_us / {unit_us} AND environment = NEW.environment"
    )


def _all(step: str, row: str) -> str:
    make = _upsert if step == "add" else _remove
    return "; ".join(make(table, unit, unit_us, row) for table, unit, unit_us in GRAINS)


# The status is all that ever changes in practice (the run's count row stays
# the same): one UPDATE per grain. Anything else (never done today) moves the
# count between rows the general way.
_SAME_ROW = (
    "OLD.account_id IS NEW.account_id AND OLD.environment IS NEW.environment "
    "AND OLD.created_at_us IS NEW.created_at_us"
)


def statements() -> tuple[str, ...]:
    out: list[str] = []
    for table, unit, unit_us in GRAINS:
        out.append(
            f"CREATE TABLE {table} (account_id TEXT NOT NULL, {unit} INTEGER NOT NULL, "
            "environment TEXT NOT NULL, "
            + ", ".join(f"{c} INTEGER NOT NULL DEFAULT 0 CHECK ({c} >= 0)" for c in STATUS_COLUMNS)
            + f", PRIMARY KEY (account_id, {unit}, environment)) WITHOUT ROWID"
        )
        out.append(
            f"INSERT INTO {table} (account_id, {unit}, environment, {', '.join(STATUS_COLUMNS)}) "
            f"SELECT account_id, created_at_us / {unit_us}, environment, "
            + ", ".join(f"sum(status = '{c.upper()}')" for c in STATUS_COLUMNS)
            + " FROM runs GROUP BY 1, 2, 3"
        )
    out += [
        f"CREATE TRIGGER run_counts_insert AFTER INSERT ON runs BEGIN {_all('add', 'NEW')}; END",
        "CREATE TRIGGER run_counts_status AFTER UPDATE OF status ON runs "
        f"WHEN OLD.status IS NOT NEW.status AND {_SAME_ROW} BEGIN "
        + "; ".join(_move(table, unit, unit_us) for table, unit, unit_us in GRAINS)
        + "; END",
        "CREATE TRIGGER run_counts_move AFTER UPDATE OF status, account_id, environment, "
        f"created_at_us ON runs WHEN NOT ({_SAME_ROW}) "
        f"BEGIN {_all('remove', 'OLD')}; {_all('add', 'NEW')}; END",
        f"CREATE TRIGGER run_counts_delete AFTER DELETE ON runs BEGIN {_all('remove', 'OLD')}; END",
    ]
    return tuple(out)
