"""TTL locks in SQLite: the `locks` table (name, holder, expires)."""

from __future__ import annotations

import time

from dynvm.core.store import Locks
from dynvm.store.sqlite.db import SqliteRepository, drop_ttl_lock, take_ttl_lock


class SqliteLocks(SqliteRepository, Locks):
    SCHEMA = """
    CREATE TABLE IF NOT EXISTS locks (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires REAL NOT NULL
    );
    """

    def acquire(self, name: str, holder: str, ttl: float) -> bool:
        with self._db.tx() as c:
            return take_ttl_lock(c, "locks", name, holder, ttl)

    def release(self, name: str, holder: str) -> None:
        with self._db.tx() as c:
            drop_ttl_lock(c, "locks", name, holder)

    def holder(self, name: str) -> str | None:
        rows = self._db.query("SELECT holder, expires FROM locks WHERE name=?", (name,))
        if rows and rows[0][1] > time.time():
            return str(rows[0][0])
        return None
