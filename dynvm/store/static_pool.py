"""Where `pools=` documents go: the seed's static-pool bucket, or a table beside SQLite state.

With the four `static.*` keys (as in the seed's file) the documents go to that
Couchbase bucket, keyed by the VM's IP, where the static server pool manager
reads them. Without them, a SQLite deployment keeps them in a table of its
own state file; a Couchbase deployment without them cannot take `pools=`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dynvm.config import StoreConfig
from dynvm.store.sqlite import SqliteStaticPools, state_file

if TYPE_CHECKING:
    from dynvm.store.couchbase.static_pools import CouchbaseStaticPools


def open_static_pools(cfg: StoreConfig) -> SqliteStaticPools | CouchbaseStaticPools | None:
    """The configured target of `pools=` documents; None when there is none."""
    if cfg.static_pool is not None:
        from dynvm.store.couchbase.static_pools import CouchbaseStaticPools  # the SDK when used

        return CouchbaseStaticPools.connect(cfg.static_pool)
    if cfg.backend == "sqlite":
        return SqliteStaticPools(state_file(cfg.sqlite_path))
    return None
