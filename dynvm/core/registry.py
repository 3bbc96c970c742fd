"""One XenPool per configured [xenhostN], kept in step with the configuration."""

from __future__ import annotations

import threading
from collections.abc import Callable

from dynvm.config import Config, HostConfig
from dynvm.core.ports import XenPool

PoolFactory = Callable[[HostConfig], XenPool]


class PoolRegistry:
    """Opens a pool client for each host section and reopens it when the section changes.

    Clients are per process (sessions and event feeds are not shared across
    a fork); nothing here is state of record.
    """

    def __init__(self, factory: PoolFactory) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._pools: dict[int, tuple[HostConfig, XenPool]] = {}

    def sync(self, cfg: Config) -> None:
        with self._lock:
            stale = [ref for ref, (hc, _) in self._pools.items() if cfg.hosts.get(ref) != hc]
            for ref in stale:
                _, pool = self._pools.pop(ref)
                pool.close()

    def get(self, host: HostConfig) -> XenPool:
        with self._lock:
            entry = self._pools.get(host.ref)
            if entry is not None and entry[0] == host:
                return entry[1]
            if entry is not None:
                entry[1].close()
            pool = self._factory(host)
            self._pools[host.ref] = (host, pool)
            return pool

    def close(self) -> None:
        with self._lock:
            for _, pool in self._pools.values():
                pool.close()
            self._pools.clear()
