"""History documents in Couchbase, in the seed's shape so its N1QL reports keep working.

Keys: `<vm uuid>` the document itself, exactly as given; `history::index` the
most recent uuids with their creation times (for `recent`); `history::mark` a
random token replaced after every history write (`mark`).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from dynvm.core.store import History
from dynvm.store.couchbase.kv import KEEP, CouchbaseRepository

HISTORY_INDEX_MAX = 5000  # recent() answers from the newest this many documents


class CouchbaseHistory(CouchbaseRepository, History):
    def _index_add(self, vm_uuid: str, created: float) -> None:
        def fn(doc: dict[str, Any] | None) -> Any:
            doc = doc or {"dynvm": "history-index", "items": []}
            if any(u == vm_uuid for u, _ in doc["items"]):
                return KEEP
            items = doc["items"] + [[vm_uuid, created]]
            items.sort(key=lambda i: i[1], reverse=True)
            doc["items"] = items[:HISTORY_INDEX_MAX]
            return doc
        self._kv.mutate("history::index", fn)

    def put(self, vm_uuid: str, doc: dict[str, Any]) -> None:
        self._index_add(vm_uuid, float(doc.get("created_time") or time.time()))
        self._kv.io("upsert", self._kv.key(vm_uuid), dict(doc))
        self._new_mark()

    def update(self, vm_uuid: str, patch: dict[str, Any]) -> None:
        existing, _ = self._kv.get(vm_uuid)
        if existing is None:
            created = (patch.get("created_time") or time.time())
            self._index_add(vm_uuid, float(created))

        def fn(doc: dict[str, Any] | None) -> Any:
            merged = dict(doc or {})
            merged.update(patch)
            return merged
        self._kv.mutate(vm_uuid, fn)
        self._new_mark()

    def get(self, vm_uuid: str) -> dict[str, Any] | None:
        return self._kv.get(vm_uuid)[0]

    def recent(self, limit: int = 1000) -> list[dict[str, Any]]:
        doc, _ = self._kv.get("history::index")
        items = doc["items"] if doc else []
        out: list[tuple[float, str, dict[str, Any]]] = []
        for vm_uuid, created in items[: max(0, int(limit))]:
            h, _ = self._kv.get(vm_uuid)
            if h is not None:
                out.append((float(h.get("created_time") or created), vm_uuid, h))
        out.sort(key=lambda t: (-t[0], t[1]))
        return [h for _, _, h in out]

    def _new_mark(self) -> None:
        # A plain upsert of a random token: any write changes it, so writers never contend on it.
        self._kv.io("upsert", self._kv.key("history::mark"),
                    {"dynvm": "mark", "mark": uuid.uuid4().hex})

    def mark(self) -> str:
        doc, _ = self._kv.get("history::mark")
        return str(doc["mark"]) if doc else ""
