"""What every core operation needs: config, store, pools, and who we are."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dynvm.config import Config, HostConfig
from dynvm.core.ports import PoolView, XenPool
from dynvm.core.registry import PoolRegistry
from dynvm.store.base import Store

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
    clock: Callable[[], float] = time.time
    static_pools: StaticPools | None = None  # pools=: None when none can be written
    _host_gates: dict[str, threading.BoundedSemaphore] = field(default_factory=dict)
    _gates_lock: threading.Lock = field(default_factory=threading.Lock)

    def pool(self, host: HostConfig) -> XenPool:
        return self.registry.get(host)

    def view(self, host: HostConfig) -> PoolView:
        """The pool's inventory; with `inventory.cache=false`, read afresh every time."""
        return self.registry.get(host).view(None if self.config().inventory_cache else 0.0)

    def host_gate(self, key: str) -> threading.BoundedSemaphore:
        """Per member host throttle, so a big request never floods one host."""
        with self._gates_lock:
            gate = self._host_gates.get(key)
            if gate is None:
                gate = threading.BoundedSemaphore(max(self.config().per_host_parallel, 1))
                self._host_gates[key] = gate
            return gate
