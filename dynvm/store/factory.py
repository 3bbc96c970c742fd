"""Build the configured store: `[store] backend=sqlite|couchbase`, behind the outbox."""

from __future__ import annotations

from dynvm.config import StoreConfig
from dynvm.core.store import Store
from dynvm.store.outbox import ResilientStore


def open_backend(cfg: StoreConfig) -> Store:
    """The bare backend named in `cfg`, without the outbox."""
    if cfg.backend == "sqlite":
        from dynvm.store.sqlite import SqliteStore

        return SqliteStore(cfg.sqlite_path)
    if cfg.backend == "couchbase":
        if cfg.couchbase is None:
            raise ValueError("[store] backend=couchbase needs a [couchbase] section")
        from dynvm.store.couchbase import CouchbaseStore

        return CouchbaseStore.connect(cfg.couchbase)
    raise ValueError(f"unknown store backend {cfg.backend!r} (expected sqlite or couchbase)")


def open_store(cfg: StoreConfig) -> ResilientStore:
    """The store every layer uses: the backend, with release/expiry writes outboxed.

    Never connects eagerly: an unreachable Couchbase shows up as
    StoreUnavailable on first use, not as a failure to start.
    """
    return ResilientStore(open_backend(cfg), cfg.outbox_path)
