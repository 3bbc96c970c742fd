"""This deployment's identity: which VMs on a shared farm are its own.

The identity is kept in the store, assigned on first use. The one assigned
is derived from where the store lives (machine and file, or cluster, bucket
and collection): two deployments with separate stores never share one,
while a deployment whose store was lost, and is started again on the same
configuration, takes the same identity again and so adopts its VMs instead
of taking them for another deployment's.
"""

from __future__ import annotations

import hashlib
import os
import socket

from dynvm.config import StoreConfig


def proposed_id(store: StoreConfig) -> str:
    """The identity a store without one is given."""
    if store.backend == "couchbase" and store.couchbase is not None:
        cb = store.couchbase
        where = f"couchbase:{cb.server}/{cb.bucket}/{cb.scope}/{cb.collection}"
    else:
        where = f"sqlite:{socket.gethostname()}:{os.path.abspath(store.sqlite_path)}"
    return hashlib.sha256(where.encode()).hexdigest()[:16]
