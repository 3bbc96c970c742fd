"""Operator documents in Couchbase, and the deployment identity.

Keys: `doc::<key>` `{"dynvm": "doc", "doc": {...}}` (host drains, maintenance
runs); `deployment` `{"dynvm": "deployment", "id": ...}`.
"""

from __future__ import annotations

from typing import Any

from dynvm.core.store import DocEdit, Documents
from dynvm.store.couchbase.kv import DELETE, KEEP, CouchbaseRepository


class CouchbaseDocuments(CouchbaseRepository, Documents):
    def get(self, key: str) -> dict[str, Any] | None:
        doc, _ = self._kv.get(f"doc::{key}")
        return dict(doc["doc"]) if doc else None

    def update(self, key: str, edit: DocEdit) -> dict[str, Any] | None:
        result: list[dict[str, Any] | None] = [None]

        def fn(doc: dict[str, Any] | None) -> Any:
            new = edit(dict(doc["doc"]) if doc else None)
            result[0] = new
            if new is None:
                return DELETE
            return {"dynvm": "doc", "doc": new}
        self._kv.mutate(f"doc::{key}", fn)
        return result[0]

    def deployment_id(self, new: str | None) -> str | None:
        if new is None:
            doc, _ = self._kv.get("deployment")
            return str(doc["id"]) if doc and doc.get("id") else None
        got = [new]

        def fn(doc: dict[str, Any] | None) -> Any:
            if doc is not None and doc.get("id"):
                got[0] = str(doc["id"])
                return KEEP
            got[0] = new
            return {"dynvm": "deployment", "id": new}
        self._kv.mutate("deployment", fn)
        return got[0]

