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


def _all(step: str, row: str) -> str:
    make = _upsert if step == "add" else _remove
    return "; ".join(make(table, unit, unit_us, row) for table, unit, unit_us in GRAINS)


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
        "CREATE TRIGGER run_counts_update AFTER UPDATE OF status, account_id, environment, "
        "created_at_us ON runs WHEN OLD.status IS NOT NEW.status OR OLD.account_id IS NOT "
        "NEW.account_id OR OLD.environment IS NOT NEW.environment OR OLD.created_at_us IS NOT "
        f"NEW.created_at_us BEGIN {_all('remove', 'OLD')}; {_all('add', 'NEW')}; END",
        f"CREATE TRIGGER run_counts_delete AFTER DELETE ON runs BEGIN {_all('remove', 'OLD')}; END",
    ]
    return tuple(out)
