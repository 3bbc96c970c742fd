"""The store adapters: SQLite, Couchbase, and the outbox that rides out a store outage.

The port they implement and the records they keep live in `dynvm.core.store`.
"""

from dynvm.store.factory import open_backend, open_store
from dynvm.store.outbox import ResilientStore

__all__ = ["ResilientStore", "open_backend", "open_store"]
