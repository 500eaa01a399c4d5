"""Versioned SQLite schemas: ``PRAGMA user_version`` counts the migrations applied."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence


def migrate(conn: sqlite3.Connection, migrations: Sequence[str]) -> None:
    """Bring the schema to the latest version, one transaction per step (script ``n``
    upgrades version ``n`` to ``n + 1``). ``conn`` must be in autocommit mode."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    for number, script in enumerate(migrations[version:], start=version + 1):
        try:
            conn.executescript(f"BEGIN IMMEDIATE; {script.strip()} "
                               f"PRAGMA user_version = {number}; COMMIT;")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
