"""Build the configured store: `[store] backend=sqlite|couchbase`, behind the outbox.

Also the identity a deployment proposes to its store: only the backends know
where a store lives.
"""

from __future__ import annotations

import hashlib
import os
import socket

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


def proposed_identity(cfg: StoreConfig) -> str:
    """The deployment identity a store without one is given (`Store.deployment_id`).

    Derived from where the store lives (machine and file, or cluster, bucket
    and collection): two deployments with separate stores never share one,
    while a deployment whose store was lost, and is started again on the same
    configuration, takes the same identity again and so adopts its VMs instead
    of taking them for another deployment's.
    """
    if cfg.backend == "couchbase" and cfg.couchbase is not None:
        cb = cfg.couchbase
        where = f"couchbase:{cb.server}/{cb.bucket}/{cb.scope}/{cb.collection}"
    else:
        where = f"sqlite:{socket.gethostname()}:{os.path.abspath(cfg.sqlite_path)}"
    return hashlib.sha256(where.encode()).hexdigest()[:16]
