"""Wiring dynvm together: configuration, store and Xen pools behind the core facade.

The one place that knows every layer, so the core itself never imports the
Xen layer (or XenAPI) or a store backend.
"""

from __future__ import annotations

import os
from typing import Any

from dynvm.config import ConfigWatcher
from dynvm.core.background import Timings
from dynvm.core.clock import SYSTEM, Clock
from dynvm.core.reload_guard import lease_guard
from dynvm.core.service import Dynvm
from dynvm.store.factory import open_store
from dynvm.store.static_pool import open_static_pools
from dynvm.xen import open_pool

CONFIG_SETTLE_SECS = 2.0  # a changed INI file is read once unchanged for this long


def build_service(config_path: str | None = None, *, timings: Timings | None = None,
                  background: bool = True, clock: Clock = SYSTEM) -> Dynvm:
    """Open the store and the Xen pools named by an INI file (or $DYNVM_CONFIG).

    `clock` is the core's time (tests hand in one they move themselves).
    """
    path = config_path or os.environ.get("DYNVM_CONFIG")
    if not path:
        raise RuntimeError("no configuration: pass a file or set DYNVM_CONFIG")
    watcher = ConfigWatcher(path, settle_secs=CONFIG_SETTLE_SECS)
    cfg = watcher.current()
    store = open_store(cfg.store)
    watcher.guard = lease_guard(store)

    def status() -> dict[str, Any]:
        return {"source": path, "generation": watcher.generation, "error": watcher.last_error}

    ttl = cfg.leader_ttl_secs
    timings = timings or Timings(tick=min(1.0, ttl / 4), leader_ttl=ttl, heartbeat_ttl=2 * ttl,
                                 reconcile_every=ttl)
    service = Dynvm(watcher.current, store, open_pool, config_status=status, timings=timings,
                    background=background, static_pools=open_static_pools(cfg.store),
                    clock=clock)

    def maintenance_port(host: Any) -> Any:
        from dynvm.xen.maintenance import XenMaintenance  # only when maintenance is asked for
        from dynvm.xen.pool import XenPoolClient

        pool = service.registry.get(host)
        if not isinstance(pool, XenPoolClient):
            raise TypeError(f"maintenance needs a XenAPI pool, not {type(pool).__name__}")
        return XenMaintenance(pool)

    service.maintenance_port = maintenance_port
    return service
