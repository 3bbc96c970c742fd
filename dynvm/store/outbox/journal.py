"""The outbox file: writes waiting for the backend, durable and in the order they were made.

Every subject the outbox wraps queues into this one journal, so the backend
sees all queued writes in their order, whatever their subject. A queued row
names its operation (`put_history`, `transition`, ...) and its arguments as
JSON; each wrapper registers how to apply its operations (`handle`). The
names are stored: an outbox written by an older dynvm must still replay, so
a name is never reused for something else.

Every queued operation is idempotent (merges, absolute values, deletes), so
replaying one twice after a crash is harmless. Only one replayer runs at a
time per outbox file (a lock row with a TTL), however many workers share it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from dynvm.core.store import Conflict, StoreUnavailable
from dynvm.store.sqlite.db import SqliteDb, drop_ttl_lock, take_ttl_lock

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL,
    key TEXT NOT NULL,
    args TEXT NOT NULL,
    queued REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS failed (
    seq INTEGER PRIMARY KEY,
    op TEXT NOT NULL,
    key TEXT NOT NULL,
    args TEXT NOT NULL,
    queued REAL NOT NULL,
    error TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS replay_lock (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires REAL NOT NULL
);
"""

REPLAY_LOCK_TTL = 60.0

# A queued write: (operation, key of the record it changes, arguments).
Queued = tuple[str, str, dict[str, Any]]
# How a queued operation is applied to the backend: its arguments -> the backend's answer.
Apply = Callable[[dict[str, Any]], Any]


class Outbox:
    """The local SQLite queue in front of one backend."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = SqliteDb(path, _SCHEMA)
        self._replaying = threading.Lock()
        self._ops: dict[str, Apply] = {}
        self._quiet = threading.local()  # this thread's last token of an empty outbox

    def handle(self, ops: dict[str, Apply]) -> None:
        """Register how to apply queued operations (each wrapper, at construction)."""
        self._ops.update(ops)

    def pending(self) -> int:
        """How many writes wait in the outbox."""
        return int(self._db.query("SELECT COUNT(*) FROM outbox")[0][0])

    def quiet_generation(self) -> Hashable | None:
        """The outbox file's generation while it holds no write, None while some wait.

        Counting the queue is a read; the file's generation is not, so the
        queue is counted again only once the file changed.
        """
        token = self._db.generation()
        if getattr(self._quiet, "token", None) == token:
            return token
        if self.pending():
            return None
        self._quiet.token = token
        return token

    def failed(self) -> list[dict[str, Any]]:
        """Queued writes the backend rejected for a reason other than an outage."""
        rows = self._db.query("SELECT seq, op, key, args, queued, error FROM failed ORDER BY seq")
        return [{"seq": s, "op": o, "key": k, "args": json.loads(a), "queued": q, "error": e}
                for s, o, k, a, q, e in rows]

    def pending_ops(self, key: str | None = None) -> list[Queued]:
        """The queued writes (of one record, or all), oldest first."""
        if key is None:
            rows = self._db.query("SELECT op, key, args FROM outbox ORDER BY seq")
        else:
            rows = self._db.query("SELECT op, key, args FROM outbox WHERE key=? ORDER BY seq",
                                  (key,))
        return [(op, k, json.loads(args)) for op, k, args in rows]

    def enqueue(self, op: str, key: str, args: dict[str, Any]) -> None:
        with self._db.tx() as c:
            c.execute("INSERT INTO outbox(op, key, args, queued) VALUES (?,?,?,?)",
                      (op, key, json.dumps(args, sort_keys=True), time.time()))
        log.warning("store unavailable: %s %s queued in outbox %s", op, key, self.path)

    def write(self, op: str, key: str, args: dict[str, Any]) -> tuple[bool, Any]:
        """Apply a write now, or queue it; returns (queued, the backend's answer).

        Once anything is queued, later writes queue behind it, so the backend
        sees them in the order they were made.
        """
        if self.pending():
            self.enqueue(op, key, args)
            self.try_replay()
            return True, None
        try:
            return False, self._apply(op, args)
        except StoreUnavailable:
            self.enqueue(op, key, args)
            return True, None

    def _apply(self, op: str, args: dict[str, Any]) -> Any:
        apply = self._ops.get(op)
        if apply is None:
            raise ValueError(f"unknown outbox operation {op!r}")
        return apply(args)

    def take_replay_lock(self, holder: str) -> bool:
        with self._db.tx() as c:
            return take_ttl_lock(c, "replay_lock", "replay", holder, REPLAY_LOCK_TTL)

    def drop_replay_lock(self, holder: str) -> None:
        with self._db.tx() as c:
            drop_ttl_lock(c, "replay_lock", "replay", holder)

    def replay(self) -> int:
        """Flush the outbox to the backend in order; returns how many writes were applied.

        Stops at the first outage (the rest stays queued for the next call).
        Returns 0 at once if another thread or process is already replaying.
        """
        if not self._replaying.acquire(blocking=False):
            return 0
        holder = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        try:
            if not self.pending() or not self.take_replay_lock(holder):
                return 0
            done = 0
            try:
                while True:
                    rows = self._db.query(
                        "SELECT seq, op, key, args, queued FROM outbox ORDER BY seq LIMIT 1")
                    if not rows:
                        break
                    seq, op, key, args, queued = rows[0]
                    try:
                        self._apply(op, json.loads(args))
                    except (StoreUnavailable, Conflict):
                        break
                    except Exception as exc:  # a write the backend will never take
                        log.error("outbox %s: %s %s rejected, set aside: %s",
                                  self.path, op, key, exc)
                        with self._db.tx() as c:
                            c.execute("INSERT OR REPLACE INTO failed VALUES (?,?,?,?,?,?)",
                                      (seq, op, key, args, queued, repr(exc)))
                            c.execute("DELETE FROM outbox WHERE seq=?", (seq,))
                        continue
                    with self._db.tx() as c:
                        c.execute("DELETE FROM outbox WHERE seq=?", (seq,))
                    done += 1
                    if done % 50 == 0:
                        self.take_replay_lock(holder)  # renew
            finally:
                self.drop_replay_lock(holder)
            if done:
                log.info("outbox %s: replayed %d writes", self.path, done)
            return done
        finally:
            self._replaying.release()

    def try_replay(self) -> None:
        try:
            self.replay()
        except StoreUnavailable:
            pass

    def queued_view(self, key: str | None = None) -> list[Queued] | None:
        """For reads: replay what can be replayed, then the writes still queued.

        None means nothing is queued at all (read the backend as is). The
        snapshot is taken before the backend is read, so a write replayed by
        someone else in between is at worst applied twice to the answer, which
        is harmless because every queued write is idempotent.
        """
        if not self.pending():
            return None
        self.try_replay()
        if not self.pending():
            return None
        return self.pending_ops(key)

    def close(self) -> None:
        self._db.close()
