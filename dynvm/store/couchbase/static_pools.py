"""`pools=` documents in the seed's static-pool bucket (the `static.*` keys), keyed by IP.

Not a subject of the store: another cluster or bucket, read by the seed's
static server pool manager (see `dynvm.store.static_pool`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from couchbase.exceptions import CasMismatchException, DocumentNotFoundException
from couchbase.options import RemoveOptions

from dynvm.config import CouchbaseConfig, StaticPoolConfig
from dynvm.store.couchbase.kv import CollectionLike, real_collection

RECONNECT_SECS = 30.0  # after a failed connect to the static pools' cluster


class CouchbaseStaticPools:
    """Static-pool documents in the bucket of the `static.*` keys, keyed by IP."""

    def __init__(self, collection: CollectionLike | None = None, *,
                 factory: Callable[[], CollectionLike] | None = None,
                 retry_secs: float = RECONNECT_SECS) -> None:
        if (collection is None) == (factory is None):
            raise ValueError("pass exactly one of collection or factory")
        self._coll = collection
        self._factory = factory
        self._lock = threading.Lock()
        self.retry_secs = retry_secs
        self._down_until = 0.0
        self._down_reason = ""

    @classmethod
    def connect(cls, cfg: StaticPoolConfig) -> CouchbaseStaticPools:
        cb = CouchbaseConfig(server=cfg.server, bucket=cfg.bucket, username=cfg.username,
                             password=cfg.password)
        return cls(factory=lambda: real_collection(cb, 5.0, 2.5))

    def _collection(self) -> CollectionLike:
        """Connect on first use; after a failed connect, fail fast for `retry_secs`.

        Without that, every VM of a request would wait out its own connect
        timeout while the static pools' cluster is unreachable.
        """
        with self._lock:
            if self._coll is None:
                assert self._factory is not None
                if time.monotonic() < self._down_until:
                    raise ConnectionError(f"static pools unreachable: {self._down_reason}")
                try:
                    self._coll = self._factory()
                except Exception as exc:
                    self._down_until = time.monotonic() + self.retry_secs
                    self._down_reason = str(exc) or type(exc).__name__
                    raise
            return self._coll

    def add(self, ip: str, doc: dict[str, Any]) -> None:
        self._collection().upsert(ip, dict(doc))

    def get(self, ip: str) -> dict[str, Any] | None:
        try:
            return self._collection().get(ip).content_as[dict]
        except DocumentNotFoundException:
            return None

    def remove(self, ip: str, vm_uuid: str) -> bool:
        coll = self._collection()
        try:
            res = coll.get(ip)
            if res.content_as[dict].get("vm_uuid") != vm_uuid:
                return False  # the address went to another VM since
            coll.remove(ip, RemoveOptions(cas=res.cas))
            return True
        except (DocumentNotFoundException, CasMismatchException):
            return False

    def close(self) -> None:
        if self._factory is not None:
            self._coll = None
