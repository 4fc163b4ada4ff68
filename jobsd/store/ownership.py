"""Whether the file at storage.path is jobsd's database before anything changes it.

A SQLite database with tables but no `schema_version` table belongs to
another program (a mistyped path): jobsd refuses it and leaves it exactly as
it was, rather than migrating its own schema into it, switching it to WAL
and making it 0600.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from jobsd.errors import StorageError


def refuse_foreign(conn: sqlite3.Connection) -> None:
    """Refuse a database that holds tables but no `schema_version`: another program's.

    Every migration records its version in its own transaction, so a jobsd
    database without one has no tables at all (a new or empty file).
    Migrating one that has tables would write jobsd's schema into, say, a
    mistyped path's other application.
    """
    if conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone():
        return
    tables = [
        str(r[0])
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name LIMIT 4"
        )
    ]
    if tables:
        path = conn.execute("PRAGMA database_list").fetchone()[2]
        raise StorageError(
            f"{path} is a SQLite database of something else (tables {', '.join(tables[:3])}"
            f"{', ...' if len(tables) > 3 else ''}; no jobsd schema_version): it was left as it "
            "is; fix storage.path"
        )


def check_not_foreign(path: Path) -> None:
    """`refuse_foreign` before anything touches the file (its mode, its journal mode)."""
    try:
        if path.stat().st_size == 0:
            return
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    except (OSError, sqlite3.Error):
        return  # missing, unreadable: what opens it next says so
    try:
        refuse_foreign(conn)
    except sqlite3.DatabaseError:
        pass  # not a database, damaged, busy: the engine's start says which
    finally:
        conn.close()
