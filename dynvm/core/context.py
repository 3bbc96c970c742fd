"""What every core operation needs: config, store, pools, and who we are."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dynvm.config import Config, HostConfig
from dynvm.core.clock import SYSTEM, Clock
from dynvm.core.deployment import proposed_id
from dynvm.core.ports import PoolView, XenPool
from dynvm.core.registry import PoolRegistry
from dynvm.core.store import Store
from dynvm.core.templates import TemplateWatch

if TYPE_CHECKING:
    from dynvm.core.staticpool import StaticPools


def new_instance_id() -> str:
    """A name for this process, unique even across restarts on one machine."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Context:
    store: Store
    registry: PoolRegistry
    config: Callable[[], Config]
    instance: str = field(default_factory=new_instance_id)
    # Wall time (`clock()`), deadlines and waits: every wait in the core goes through it.
    clock: Clock = SYSTEM
    static_pools: StaticPools | None = None  # pools=: None when none can be written
    # Told the name of a noteworthy event ("adopted", "vanished", ...) for metrics.
    on_event: Callable[[str], None] = field(default=lambda _kind: None)
    _deployment: str | None = None
    # Hosts a reload removed, kept so their leased VMs can still be destroyed.
    retired_hosts: dict[int, HostConfig] = field(default_factory=dict)
    # Set when the process is told to stop: builds in flight cancel, roll back, answer 503.
    stopping: threading.Event = field(default_factory=threading.Event)
    # Templates the configuration names that a host lacks: logged, and shown on /health.
    templates: TemplateWatch = field(default_factory=TemplateWatch)
    _host_gates: dict[str, threading.BoundedSemaphore] = field(default_factory=dict)
    _gates_lock: threading.Lock = field(default_factory=threading.Lock)

    def deployment(self) -> str:
        """This deployment's identity, kept in the store (raises StoreUnavailable)."""
        if self._deployment is None:
            self._deployment = self.store.documents.deployment_id(proposed_id(self.config().store)) or ""
        return self._deployment

    def event(self, kind: str) -> None:
        try:
            self.on_event(kind)
        except Exception:  # metrics never break the work they count
            pass

    def pool(self, host: HostConfig) -> XenPool:
        return self.registry.get(host)

    def view(self, host: HostConfig) -> PoolView:
        """The pool's inventory; with `inventory.cache=false`, read afresh every time.

        Every view says which configured templates the host lacks (`templates`).
        """
        cfg = self.config()
        view = self.registry.get(host).view(None if cfg.inventory_cache else 0.0)
        self.templates.see(cfg, host, view)
        return view

    def host_gate(self, key: str) -> threading.BoundedSemaphore:
        """Per member host throttle, so a big request never floods one host."""
        with self._gates_lock:
            gate = self._host_gates.get(key)
            if gate is None:
                gate = threading.BoundedSemaphore(max(self.config().per_host_parallel, 1))
                self._host_gates[key] = gate
            return gate
