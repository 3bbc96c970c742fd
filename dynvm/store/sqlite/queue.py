"""Queued requests in SQLite: the `queue` table; a claim is a compare-and-set inside the
write transaction."""

from __future__ import annotations

import json

from dynvm.core.store import Queue, QueueEntry
from dynvm.store.sqlite.db import SqliteRepository, dumps


class SqliteQueue(SqliteRepository, Queue):
    SCHEMA = """
    CREATE TABLE IF NOT EXISTS queue (
        id TEXT PRIMARY KEY,
        data TEXT NOT NULL
    );
    """

    def add(self, entry: QueueEntry) -> None:
        with self._db.tx() as c:
            c.execute("INSERT OR REPLACE INTO queue(id, data) VALUES (?,?)",
                      (entry.id, dumps(entry.to_dict())))

    def get(self, request_id: str) -> QueueEntry | None:
        rows = self._db.query("SELECT data FROM queue WHERE id=?", (request_id,))
        return QueueEntry.from_dict(json.loads(rows[0][0])) if rows else None

    def entries(self) -> list[QueueEntry]:
        out = [QueueEntry.from_dict(json.loads(r[0]))
               for r in self._db.query("SELECT data FROM queue")]
        return sorted(out, key=lambda e: (e.enqueued, e.id))

    def claim(self, request_id: str, holder: str, ttl: float, now: float) -> QueueEntry | None:
        with self._db.tx() as c:  # the write lock is held from here to the commit
            row = c.execute("SELECT data FROM queue WHERE id=?", (request_id,)).fetchone()
            if row is None:
                return None
            entry = QueueEntry.from_dict(json.loads(row[0]))
            if not entry.claimable(holder, now):
                return None
            entry.claimed_by, entry.claimed_until = holder, now + ttl
            c.execute("UPDATE queue SET data=? WHERE id=?", (dumps(entry.to_dict()), request_id))
            return entry

    def unclaim(self, request_id: str, holder: str) -> None:
        with self._db.tx() as c:
            row = c.execute("SELECT data FROM queue WHERE id=?", (request_id,)).fetchone()
            if row is None:
                return
            entry = QueueEntry.from_dict(json.loads(row[0]))
            if entry.claimed_by != holder:
                return
            entry.claimed_by, entry.claimed_until = None, 0.0
            c.execute("UPDATE queue SET data=? WHERE id=?", (dumps(entry.to_dict()), request_id))

    def remove(self, request_id: str) -> bool:
        with self._db.tx() as c:
            return c.execute("DELETE FROM queue WHERE id=?", (request_id,)).rowcount > 0
