"""History documents in SQLite: the `history` table, and the mark in `meta`."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from typing import Any

from dynvm.core.store import History
from dynvm.store.sqlite.db import SqliteRepository, dumps


class SqliteHistory(SqliteRepository, History):
    SCHEMA = """
    CREATE TABLE IF NOT EXISTS history (
        uuid TEXT PRIMARY KEY,
        doc TEXT NOT NULL,
        created_time REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS history_created ON history(created_time);
    """

    def put(self, vm_uuid: str, doc: dict[str, Any]) -> None:
        created = float(doc.get("created_time") or time.time())
        with self._db.tx() as c:
            c.execute("INSERT OR REPLACE INTO history(uuid, doc, created_time) VALUES (?,?,?)",
                      (vm_uuid, dumps(doc), created))
            self._new_mark(c)

    def update(self, vm_uuid: str, patch: dict[str, Any]) -> None:
        with self._db.tx() as c:
            row = c.execute("SELECT doc, created_time FROM history WHERE uuid=?",
                            (vm_uuid,)).fetchone()
            doc = json.loads(row[0]) if row else {}
            doc.update(patch)
            created = float(doc.get("created_time") or (row[1] if row else time.time()))
            c.execute("INSERT OR REPLACE INTO history(uuid, doc, created_time) VALUES (?,?,?)",
                      (vm_uuid, dumps(doc), created))
            self._new_mark(c)

    def get(self, vm_uuid: str) -> dict[str, Any] | None:
        rows = self._db.query("SELECT doc FROM history WHERE uuid=?", (vm_uuid,))
        return json.loads(rows[0][0]) if rows else None

    def recent(self, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self._db.query(
            "SELECT doc FROM history ORDER BY created_time DESC, uuid LIMIT ?", (int(limit),))
        # One decode of them all: its documents share one string per key (a decode per
        # document makes each its own), which halves the memory every worker keeps them in
        # (`dynvm.core.services.history`) and the time to decode them.
        docs: list[dict[str, Any]] = json.loads("[" + ",".join(r[0] for r in rows) + "]")
        return docs

    @staticmethod
    def _new_mark(c: sqlite3.Connection) -> None:
        # A fresh random token, not a counter: a database reset cannot bring an old one back.
        c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('history_mark', ?)",
                  (uuid.uuid4().hex,))

    def mark(self) -> str:
        rows = self._db.query("SELECT value FROM meta WHERE key='history_mark'")
        return str(rows[0][0]) if rows else ""
