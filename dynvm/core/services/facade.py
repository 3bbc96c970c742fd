"""`Dynvm`: the one object every entry point holds, its use cases grouped by subject.

The HTTP API, the CLI and the gunicorn hooks call `svc.<subject>.<use case>`;
the background loops run under the same runtime. `ctx` stays reachable for
the tests, which look at the store and the pools directly; the HTTP layer
never does (`tests/core/test_layers.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from dynvm.config import Config
from dynvm.core.background import Timings
from dynvm.core.clock import SYSTEM, Clock
from dynvm.core.context import Adapters, EventHook, no_event
from dynvm.core.services.access import Access
from dynvm.core.services.base import Runtime
from dynvm.core.services.dashboard import Dashboard
from dynvm.core.services.farm import Farm
from dynvm.core.services.fleet import FleetService
from dynvm.core.services.health import Health
from dynvm.core.services.history import History
from dynvm.core.services.keys import Keys
from dynvm.core.services.legacy import LegacyServers
from dynvm.core.services.maintenance import Maintenance
from dynvm.core.services.quotas import Quotas
from dynvm.core.services.requests import Requests
from dynvm.core.services.tokens import TokenAdmin
from dynvm.core.services.vms import Vms

log = logging.getLogger("dynvm.service")


class Dynvm:
    """Everything dynvm does, independent of HTTP: one attribute per subject."""

    def __init__(self, config: Callable[[], Config], adapters: Adapters, *,
                 config_status: Callable[[], dict[str, Any]] | None = None,
                 timings: Timings | None = None, background: bool = True,
                 on_event: EventHook = no_event, clock: Clock = SYSTEM) -> None:
        rt = Runtime(config, adapters, config_status=config_status, timings=timings,
                     background=background, on_event=on_event, clock=clock)
        self._rt = rt
        self.ctx = rt.ctx
        self.background = rt.background
        self.legacy = LegacyServers(rt)
        self.access = Access(rt)
        self.tokens = TokenAdmin(adapters.store)
        self.requests = Requests(rt)
        self.vms = Vms(rt)
        self.keys = Keys(rt)
        self.history = History(rt)
        self.quotas = Quotas(rt)
        self.farm = Farm(rt, self.legacy)
        self.dashboard = Dashboard(rt, self.history)
        self.health = Health(rt)
        self.maintenance = Maintenance(rt)
        self.fleet = FleetService(rt)

    def config(self) -> Config:
        """The configuration in force (the pool clients kept in step with it)."""
        return self._rt.config()

    # -- the process ------------------------------------------------------------------
    def warm_up(self) -> None:
        """Open the store and every pool's sessions and inventory, and count each OS's
        room (the views' per-host indexes, built once per change); a fresh worker's first
        requests would otherwise pay for it, while the old ones of a reload still serve.
        A host that fails is left for later."""
        cfg = self._rt.touch()
        self.ctx.store.ping()
        for hc in cfg.hosts.values():
            try:
                self.ctx.view(hc)
            except Exception as exc:
                log.warning("warm-up: xenhost%s not loaded: %s", hc.ref, exc)
        for os in sorted(cfg.served_os):
            try:
                self.legacy.available(os, frozenset(), False)
            except Exception as exc:  # the first request says what is wrong
                log.warning("warm-up: no count of %s yet: %s", os, exc)

    def stop_requests(self) -> None:
        """The process is stopping: builds in flight cancel, roll back and answer 503."""
        self.ctx.stopping.set()

    def close(self) -> None:
        rt = self._rt
        if rt.run_background:
            rt.background.stop()
        rt.registry.close()
        if self.ctx.static_pools is not None:
            self.ctx.static_pools.close()
        self.ctx.store.close()
