"""Wiring dynvm together: configuration, store and Xen pools behind the core facade.

The one place that knows every layer, so the core itself never imports the
Xen layer (or XenAPI) or a store backend.
"""

from __future__ import annotations

import os
from typing import Any

from dynvm.config import ConfigWatcher
from dynvm.core.background import Timings
from dynvm.core.service import Dynvm
from dynvm.store.factory import open_store
from dynvm.store.static_pool import open_static_pools
from dynvm.xen import open_pool


def build_service(config_path: str | None = None, *, timings: Timings | None = None,
                  background: bool = True) -> Dynvm:
    """Open the store and the Xen pools named by an INI file (or $DYNVM_CONFIG)."""
    path = config_path or os.environ.get("DYNVM_CONFIG")
    if not path:
        raise RuntimeError("no configuration: pass a file or set DYNVM_CONFIG")
    watcher = ConfigWatcher(path)
    cfg = watcher.current()
    store = open_store(cfg.store)

    def status() -> dict[str, Any]:
        return {"source": path, "generation": watcher.generation, "error": watcher.last_error}

    ttl = cfg.leader_ttl_secs
    timings = timings or Timings(tick=min(1.0, ttl / 4), leader_ttl=ttl, heartbeat_ttl=2 * ttl,
                                 reconcile_every=ttl)
    return Dynvm(watcher.current, store, open_pool, config_status=status, timings=timings,
                 background=background, static_pools=open_static_pools(cfg.store))
