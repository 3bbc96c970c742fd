"""Requests in flight in Couchbase; finished ones expire on their own.

Keys: `req::<id>` `{"dynvm": "request", "request": {...}}`; `requests::index`
the ids of all requests.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from dynvm.core import lifecycle
from dynvm.core.store import RequestRecord, Requests
from dynvm.store.couchbase.kv import KEEP, CouchbaseRepository

REQUEST_KEEP = timedelta(days=7)  # finished request documents expire after this


class CouchbaseRequests(CouchbaseRepository, Requests):
    def put(self, req: RequestRecord) -> None:
        self._kv.index_add("requests::index", req.id)
        self._kv.io("upsert", self._kv.key(f"req::{req.id}"),
                    {"dynvm": "request", "request": req.to_dict()})

    def finish(self, request_id: str, state: str, detail: dict[str, Any] | None = None, *,
               expect: str | None = None) -> None:
        now = time.time()

        def fn(doc: dict[str, Any] | None) -> Any:
            if doc is None:
                return KEEP
            req = RequestRecord.from_dict(doc["request"])
            lifecycle.check_request_move(req.state, state, expect)
            req.state = state
            if lifecycle.is_request_end(state):  # a queued request dispatched has not
                req.finished = now
            if detail:
                req.detail.update(detail)
            return {"dynvm": "request", "request": req.to_dict()}
        # Finished requests expire on their own; the index prunes them later.
        self._kv.mutate(f"req::{request_id}", fn, expiry=REQUEST_KEEP)

    def get(self, request_id: str) -> RequestRecord | None:
        doc, _ = self._kv.get(f"req::{request_id}")
        return RequestRecord.from_dict(doc["request"]) if doc else None

    def note_vm(self, request_id: str, name: str, entry: dict[str, Any]) -> None:
        def fn(doc: dict[str, Any] | None) -> Any:
            if doc is None:
                return KEEP
            req = RequestRecord.from_dict(doc["request"])
            req.detail.setdefault("vms", {}).setdefault(name, {}).update(entry)
            return {"dynvm": "request", "request": req.to_dict()}
        self._kv.mutate(f"req::{request_id}", fn)

    def find(self, state: str | None = None) -> list[RequestRecord]:
        out = [RequestRecord.from_dict(d["request"])
               for d in self._kv.load_all("requests::index", "req::")]
        out = [r for r in out if state is None or r.state == state]
        return sorted(out, key=lambda r: (r.started, r.id))

