"""TTL locks in Couchbase: `lock::<name>`, with a document expiry that cleans up after
holders that vanished."""

from __future__ import annotations

import math
import time
from datetime import timedelta
from typing import Any

from dynvm.core.store import Locks
from dynvm.store.couchbase.kv import DELETE, KEEP, CouchbaseRepository


class CouchbaseLocks(CouchbaseRepository, Locks):
    def acquire(self, name: str, holder: str, ttl: float) -> bool:
        got = [False]

        def fn(doc: dict[str, Any] | None) -> Any:
            now = time.time()
            got[0] = False
            if doc is not None and doc.get("holder") != holder and doc.get("expires", 0) > now:
                return KEEP
            got[0] = True
            return {"dynvm": "lock", "name": name, "holder": holder, "expires": now + ttl}
        # The document outlives the wall-clock TTL by a little: `expires` decides,
        # the server's expiry only cleans up after holders that vanished.
        self._kv.mutate(f"lock::{name}", fn, expiry=timedelta(seconds=math.ceil(ttl) + 1))
        return got[0]

    def release(self, name: str, holder: str) -> None:
        def fn(doc: dict[str, Any] | None) -> Any:
            if doc is None or doc.get("holder") != holder:
                return KEEP
            return DELETE
        self._kv.mutate(f"lock::{name}", fn)

    def holder(self, name: str) -> str | None:
        doc, _ = self._kv.get(f"lock::{name}")
        if doc and doc.get("expires", 0) > time.time():
            return str(doc["holder"])
        return None

