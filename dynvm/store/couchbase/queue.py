"""Queued requests in Couchbase; a claim is a CAS on the entry's document.

Keys: `queue::<request id>` `{"dynvm": "queued", "entry": {...}}`; `queue::index`
the ids of every entry.
"""

from __future__ import annotations

from typing import Any

from dynvm.core.store import Queue, QueueEntry
from dynvm.store.couchbase.kv import DELETE, KEEP, CouchbaseRepository

INDEX = "queue::index"
KIND = "queue-entry"


def _doc(entry: QueueEntry) -> dict[str, Any]:
    return {"dynvm": KIND, "entry": entry.to_dict()}


class CouchbaseQueue(CouchbaseRepository, Queue):
    def add(self, entry: QueueEntry) -> None:
        self._kv.index_add(INDEX, entry.id)  # before the document: never one nobody finds
        self._kv.io("upsert", self._kv.key(f"queue::{entry.id}"), _doc(entry))

    def get(self, request_id: str) -> QueueEntry | None:
        doc, _ = self._kv.get(f"queue::{request_id}")
        return QueueEntry.from_dict(doc["entry"]) if doc else None

    def entries(self) -> list[QueueEntry]:
        out = [QueueEntry.from_dict(d["entry"]) for d in self._kv.load_all(INDEX, "queue::")]
        return sorted(out, key=lambda e: (e.enqueued, e.id))

    def claim(self, request_id: str, holder: str, ttl: float, now: float) -> QueueEntry | None:
        got: list[QueueEntry | None] = [None]

        def fn(doc: dict[str, Any] | None) -> Any:
            got[0] = None  # a CAS retry decides afresh
            if doc is None:
                return KEEP
            entry = QueueEntry.from_dict(doc["entry"])
            if not entry.claimable(holder, now):
                return KEEP
            entry.claimed_by, entry.claimed_until = holder, now + ttl
            got[0] = entry
            return _doc(entry)
        self._kv.mutate(f"queue::{request_id}", fn)
        return got[0]

    def unclaim(self, request_id: str, holder: str) -> None:
        def fn(doc: dict[str, Any] | None) -> Any:
            if doc is None:
                return KEEP
            entry = QueueEntry.from_dict(doc["entry"])
            if entry.claimed_by != holder:
                return KEEP
            entry.claimed_by, entry.claimed_until = None, 0.0
            return _doc(entry)
        self._kv.mutate(f"queue::{request_id}", fn)

    def remove(self, request_id: str) -> bool:
        gone = [False]

        def fn(doc: dict[str, Any] | None) -> Any:
            gone[0] = doc is not None
            return DELETE
        self._kv.mutate(f"queue::{request_id}", fn)
        self._kv.index_remove(INDEX, {request_id})  # after the document
        return gone[0]
