"""Operator documents in SQLite: the `docs` table; the deployment identity in `meta`."""

from __future__ import annotations

import json
from typing import Any

from dynvm.core.store import DocEdit, Documents
from dynvm.store.sqlite.db import SqliteRepository, dumps


class SqliteDocuments(SqliteRepository, Documents):
    SCHEMA = """
    CREATE TABLE IF NOT EXISTS docs (
        key TEXT PRIMARY KEY,
        doc TEXT NOT NULL
    );
    """

    def get(self, key: str) -> dict[str, Any] | None:
        rows = self._db.query("SELECT doc FROM docs WHERE key=?", (key,))
        return json.loads(rows[0][0]) if rows else None

    def update(self, key: str, edit: DocEdit) -> dict[str, Any] | None:
        with self._db.tx() as c:
            row = c.execute("SELECT doc FROM docs WHERE key=?", (key,)).fetchone()
            new = edit(json.loads(row[0]) if row else None)
            if new is None:
                c.execute("DELETE FROM docs WHERE key=?", (key,))
            else:
                c.execute("INSERT OR REPLACE INTO docs(key, doc) VALUES (?,?)", (key, dumps(new)))
            return new

    def deployment_id(self, new: str | None) -> str | None:
        if new is None:
            rows = self._db.query("SELECT value FROM meta WHERE key='deployment'")
            return str(rows[0][0]) if rows else None
        with self._db.tx() as c:
            c.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('deployment', ?)", (new,))
            return str(c.execute("SELECT value FROM meta WHERE key='deployment'").fetchone()[0])
