"""Couchbase backend (SDK 4.x), key-value only, CAS on every read-modify-write.

A module per subject (`history`, `leases`, ...), each a repository over the
one `CouchbaseKv` of the store, and each documenting its keys. The rules all
of them keep:

- History documents sit at the bare VM uuid, in the seed's shape, so the
  existing N1QL reports keep working. dynvm's own documents nest their data
  under a key (`{"dynvm": "lease", "lease": {...}}`) instead of spreading
  fields at the top level, so a report such as `SELECT ... WHERE
  state="available"` only ever matches history documents.
- Lists are index documents (`leases::index`, ...), so nothing needs N1QL.
  Index entries are added before the document they point at and removed
  after it, so a crash leaves at worst an entry without a document (skipped,
  and pruned after a grace period), never a document nobody can find.
- No transaction spans two documents: what must be atomic across subjects
  (an owner's quota while reserving) goes through a CAS claim document.
- Every key may carry a prefix (`prefix=`), used by tests to isolate runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dynvm.config import CouchbaseConfig
from dynvm.core.store import Store
from dynvm.store.couchbase.documents import CouchbaseDocuments
from dynvm.store.couchbase.fleet import CouchbaseFleet
from dynvm.store.couchbase.history import CouchbaseHistory
from dynvm.store.couchbase.kv import (
    CollectionLike,
    CouchbaseKv,
    CouchbaseRepository,
    connection_string,
    real_collection,
)
from dynvm.store.couchbase.leases import CouchbaseLeases
from dynvm.store.couchbase.locks import CouchbaseLocks
from dynvm.store.couchbase.owner_keys import CouchbaseOwnerKeys
from dynvm.store.couchbase.queue import CouchbaseQueue
from dynvm.store.couchbase.requests import CouchbaseRequests
from dynvm.store.couchbase.reservations import CouchbaseReservations
from dynvm.store.couchbase.tokens import CouchbaseTokens

# Subject -> its repository on this backend (the subjects `dynvm.core.store.Store` declares).
REPOSITORIES: dict[str, type[CouchbaseRepository]] = {
    "history": CouchbaseHistory,
    "leases": CouchbaseLeases,
    "reservations": CouchbaseReservations,
    "requests": CouchbaseRequests,
    "queue": CouchbaseQueue,
    "tokens": CouchbaseTokens,
    "locks": CouchbaseLocks,
    "documents": CouchbaseDocuments,
    "fleet": CouchbaseFleet,
    "owner_keys": CouchbaseOwnerKeys,
}


class CouchbaseStore(Store):
    """The store on a Couchbase collection (or the test stand-in).

    Pass a ready `collection`, or a `factory` that builds one; the factory is
    called lazily, again after a failure and again in a forked child, so an
    unreachable cluster is a `StoreUnavailable` on use, never a crash at start.
    """

    def __init__(self, collection: CollectionLike | None = None, *,
                 factory: Callable[[], CollectionLike] | None = None,
                 prefix: str = "", cas_retries: int = 8, io_retries: int = 3,
                 backoff_secs: float = 0.02, breaker_secs: float = 0.0) -> None:
        self._kv = CouchbaseKv(collection, factory=factory, prefix=prefix,
                               cas_retries=cas_retries, io_retries=io_retries,
                               backoff_secs=backoff_secs, breaker_secs=breaker_secs)
        super().__init__({name: cls(self._kv) for name, cls in REPOSITORIES.items()})

    @classmethod
    def connect(cls, cfg: CouchbaseConfig, *, connect_secs: float = 5.0,
                kv_secs: float = 2.5, breaker_secs: float = 2.0,
                prefix: str = "") -> CouchbaseStore:
        """A store on the real cluster of `cfg`; connects on first use."""
        return cls(factory=lambda: real_collection(cfg, connect_secs, kv_secs),
                   breaker_secs=breaker_secs, prefix=prefix)

    def ping(self) -> None:
        self._kv.get("dynvm::ping")

    def ping_write(self) -> None:
        self._kv.io("upsert", self._kv.key("dynvm::ping"), {"at": time.time()})

    def close(self) -> None:
        self._kv.close()


__all__ = ["REPOSITORIES", "CollectionLike", "CouchbaseStore", "connection_string"]
