"""What every subject of the service layer shares: the runtime under the use cases.

One `Runtime` per service: the context (store, pools, configuration, clock),
the configuration kept in step with the pool clients, the background loops
started on first use, and the rule for reading the store (a store that
cannot answer is `StoreDown`, never an empty answer). Each subject service
holds it; none of them reaches another's internals.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from dynvm.config import Config
from dynvm.core.background import Background, Timings
from dynvm.core.clock import SYSTEM, Clock
from dynvm.core.context import Adapters, Context, EventHook, MaintenanceFactory, no_event
from dynvm.core.errors import StoreDown
from dynvm.core.registry import PoolRegistry
from dynvm.core.store import StoreError
from dynvm.core.store_probe import StoreProbe

T = TypeVar("T")


def store_down(exc: StoreError, what: str = "the state store cannot be read") -> StoreDown:
    """The StoreDown (503) that says why the store could not be used."""
    reason = " ".join(str(exc).split())[:300] or type(exc).__name__
    return StoreDown(f"{what} ({reason})")


class Runtime:
    """The context every use case runs in, and the process-wide parts behind it."""

    def __init__(self, config: Callable[[], Config], adapters: Adapters, *,
                 config_status: Callable[[], dict[str, Any]] | None = None,
                 timings: Timings | None = None, background: bool = True,
                 on_event: EventHook = no_event, clock: Clock = SYSTEM) -> None:
        self._config = config
        self.config_status = config_status or (lambda: {"error": None})
        self.registry = PoolRegistry(adapters.pools)
        self.ctx = Context(store=adapters.store, registry=self.registry, config=self.config,
                           guest=adapters.guest, identity=adapters.identity,
                           static_pools=adapters.static_pools, on_event=on_event, clock=clock,
                           fleet=adapters.fleet,
                           access=adapters.access, waiting=adapters.waiting)
        self.background = Background(self.ctx, timings)
        self.run_background = background
        self.store_probe = StoreProbe(adapters.store, clock=clock)
        # The hypervisor side of a rolling reboot, for one pool client (None: not offered).
        self.maintenance: MaintenanceFactory | None = adapters.maintenance
        self._synced: Config | None = None
        self._lock = threading.Lock()

    def config(self) -> Config:
        """The configuration in force; a new one first closes the pool clients it changed
        and keeps the hosts it removed (their leased VMs can still be destroyed)."""
        cfg = self._config()
        if cfg is not self._synced:
            with self._lock:
                if cfg is not self._synced:
                    if self._synced is not None:
                        for ref, hc in self._synced.hosts.items():
                            if ref not in cfg.hosts:
                                self.ctx.retired_hosts[ref] = hc
                    for ref in cfg.hosts:
                        self.ctx.retired_hosts.pop(ref, None)
                    self.registry.sync(cfg)
                    if self._synced is not None:
                        self.ctx.room_freed.set()  # a host added or undrained: room, maybe
                    self._synced = cfg
        return cfg

    def touch(self) -> Config:
        """The configuration, with this process's background loops running (started on
        the first request a worker serves, never before a fork)."""
        if self.run_background:
            self.background.ensure_started()
        return self.config()

    @staticmethod
    def read(read: Callable[[], T]) -> T:
        """`read()`; a store that cannot answer is StoreDown (503), never an empty answer."""
        try:
            return read()
        except StoreError as exc:
            raise store_down(exc) from exc


class Subject:
    """A subject of the service layer: its use cases, over the shared runtime."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.ctx = rt.ctx
