"""Fleet records in SQLite: the `fleet` table, the record as JSON beside its name and state."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from dynvm.core.store import FleetEntries, FleetEntry
from dynvm.core.store.fleet import Check
from dynvm.store.sqlite.db import SqliteRepository, dumps


class SqliteFleet(SqliteRepository, FleetEntries):
    SCHEMA = """
    CREATE TABLE IF NOT EXISTS fleet (
        name TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        data TEXT NOT NULL
    );
    """

    @staticmethod
    def _read(c: sqlite3.Connection, name: str) -> FleetEntry | None:
        row = c.execute("SELECT data FROM fleet WHERE name=?", (name,)).fetchone()
        return FleetEntry.from_dict(json.loads(row[0])) if row else None

    @staticmethod
    def _write(c: sqlite3.Connection, entry: FleetEntry) -> None:
        c.execute("INSERT OR REPLACE INTO fleet(name, state, data) VALUES (?,?,?)",
                  (entry.name, entry.state, dumps(entry.to_dict())))

    def get(self, name: str) -> FleetEntry | None:
        rows = self._db.query("SELECT data FROM fleet WHERE name=?", (name,))
        return FleetEntry.from_dict(json.loads(rows[0][0])) if rows else None

    def find(self) -> list[FleetEntry]:
        return [FleetEntry.from_dict(json.loads(r[0]))
                for r in self._db.query("SELECT data FROM fleet ORDER BY name")]

    def _insert(self, entry: FleetEntry) -> bool:
        with self._db.tx() as c:
            if self._read(c, entry.name) is not None:
                return False
            self._write(c, entry)
            return True

    def _swap(self, name: str, check: Check, changes: dict[str, Any]) -> FleetEntry | None:
        with self._db.tx() as c:
            entry = self._read(c, name)
            if entry is None or not check(entry):
                return None
            entry = FleetEntry.from_dict({**entry.to_dict(), **changes})
            self._write(c, entry)
            return entry

    def _remove(self, name: str, check: Check) -> bool:
        with self._db.tx() as c:
            entry = self._read(c, name)
            if entry is None or not check(entry):
                return False
            c.execute("DELETE FROM fleet WHERE name=?", (name,))
            return True
