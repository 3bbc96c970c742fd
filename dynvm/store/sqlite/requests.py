"""Requests in flight in SQLite: the `requests` table, pruned of old finished ones."""

from __future__ import annotations

import json
import time
from typing import Any

from dynvm.core import lifecycle
from dynvm.core.store import RequestRecord, Requests
from dynvm.store.sqlite.db import SqliteDb, SqliteRepository, dumps

# Finished request records are kept this long, then pruned.
REQUEST_KEEP_SECS = 7 * 24 * 3600.0
REQUEST_PRUNE_EVERY_SECS = 3600.0


class SqliteRequests(SqliteRepository, Requests):
    SCHEMA = """
    CREATE TABLE IF NOT EXISTS requests (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS requests_state ON requests(state);
    """

    def __init__(self, db: SqliteDb) -> None:
        super().__init__(db)
        self._next_prune = 0.0  # finish prunes old requests at most hourly

    def put(self, req: RequestRecord) -> None:
        with self._db.tx() as c:
            c.execute("INSERT OR REPLACE INTO requests(id, state, data) VALUES (?,?,?)",
                      (req.id, req.state, dumps(req.to_dict())))

    def finish(self, request_id: str, state: str, detail: dict[str, Any] | None = None, *,
               expect: str | None = None) -> None:
        now = time.time()
        with self._db.tx() as c:
            row = c.execute("SELECT data FROM requests WHERE id=?", (request_id,)).fetchone()
            if row is not None:
                req = RequestRecord.from_dict(json.loads(row[0]))
                lifecycle.check_request_move(req.state, state, expect)
                req.state = state
                if lifecycle.is_request_end(state):  # a queued request dispatched has not
                    req.finished = now
                if detail:
                    req.detail.update(detail)
                c.execute("UPDATE requests SET state=?, data=? WHERE id=?",
                          (state, dumps(req.to_dict()), request_id))
            # Prune what nobody will ask about any more. Every finished record is
            # read to do it, under the write lock, so not on every call.
            if now >= self._next_prune:
                self._next_prune = now + REQUEST_PRUNE_EVERY_SECS
                for rid, data in c.execute("SELECT id, data FROM requests WHERE state!='running'"
                                           ).fetchall():
                    finished = json.loads(data).get("finished")
                    if finished is not None and finished < now - REQUEST_KEEP_SECS:
                        c.execute("DELETE FROM requests WHERE id=?", (rid,))

    def get(self, request_id: str) -> RequestRecord | None:
        rows = self._db.query("SELECT data FROM requests WHERE id=?", (request_id,))
        return RequestRecord.from_dict(json.loads(rows[0][0])) if rows else None

    def note_vm(self, request_id: str, name: str, entry: dict[str, Any]) -> None:
        with self._db.tx() as c:
            row = c.execute("SELECT data FROM requests WHERE id=?", (request_id,)).fetchone()
            if row is None:
                return
            req = RequestRecord.from_dict(json.loads(row[0]))
            req.detail.setdefault("vms", {}).setdefault(name, {}).update(entry)
            c.execute("UPDATE requests SET data=? WHERE id=?", (dumps(req.to_dict()), request_id))

    def find(self, state: str | None = None) -> list[RequestRecord]:
        if state is None:
            rows = self._db.query("SELECT data FROM requests")
        else:
            rows = self._db.query("SELECT data FROM requests WHERE state=?", (state,))
        out = [RequestRecord.from_dict(json.loads(r[0])) for r in rows]
        return sorted(out, key=lambda r: (r.started, r.id))
