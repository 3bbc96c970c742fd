"""What every core operation needs: config, store, pools, and who we are.

`Adapters` is what the bootstrap (`dynvm.runtime.bootstrap`) hands the core:
everything outside it that it talks to, each behind a port the core declares.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dynvm.config import Config, HostConfig
from dynvm.core.clock import SYSTEM, Clock
from dynvm.core.lifecycle import CoreEvent
from dynvm.core.ports import GuestAccess, GuestProbe, Outage, PoolView, XenPool
from dynvm.core.registry import PoolFactory, PoolRegistry
from dynvm.core.store import Store
from dynvm.core.templates import TemplateWatch

if TYPE_CHECKING:
    from dynvm.core.fleet.ports import FleetFactory, FleetPort
    from dynvm.core.maintenance.ports import MaintenancePort
    from dynvm.core.staticpool import StaticPools


# Told each CoreEvent with its fields (`os`, `step`, `seconds`), for metrics.
EventHook = Callable[[CoreEvent, Mapping[str, Any]], None]
# Around a long wait of a request (VMs building, a long poll): the entry point may lend the
# place the request holds (gunicorn's request threads) to others meanwhile.
WaitingHook = Callable[[], AbstractContextManager[None]]
# The hypervisor side of a rolling reboot, for the pool client of one [xenhostN].
MaintenanceFactory = Callable[[XenPool], "MaintenancePort"]


def no_event(_event: CoreEvent, _fields: Mapping[str, Any]) -> None:
    """The event hook when nobody counts events."""


@dataclass(frozen=True)
class Adapters:
    """What the core talks to outside itself, built by the bootstrap from the configuration."""

    store: Store
    pools: PoolFactory  # a pool client for one [xenhostN]
    guest: GuestProbe  # checkvms: can a new guest be reached?
    # The deployment identity a store without one is given: derived from where the store
    # lives, so a store made again on the same configuration gives the same identity.
    identity: str
    maintenance: MaintenanceFactory | None = None  # None: no rolling reboots
    static_pools: StaticPools | None = None  # pools=: None when none can be written
    fleet: FleetFactory | None = None  # the fleet's power and placement calls; None: no fleet
    access: GuestAccess | None = None  # owners' keys over SSH: None when not offered
    waiting: WaitingHook = nullcontext  # around a request's long waits


def new_instance_id() -> str:
    """A name for this process, unique even across restarts on one machine."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Context:
    store: Store
    registry: PoolRegistry
    config: Callable[[], Config]
    guest: GuestProbe
    identity: str  # proposed to a store that has no deployment identity yet
    instance: str = field(default_factory=new_instance_id)
    # Wall time (`clock()`), deadlines and waits: every wait in the core goes through it.
    clock: Clock = SYSTEM
    static_pools: StaticPools | None = None  # pools=: None when none can be written
    on_event: EventHook = no_event  # told each CoreEvent, for metrics
    fleet: FleetFactory | None = None  # the fleet's side of a pool client (Adapters.fleet)
    access: GuestAccess | None = None  # owners' keys on booted guests, over SSH
    waiting: WaitingHook = nullcontext  # around a request's long waits: lends its place
    _deployment: str | None = None
    # Hosts a reload removed, kept so their leased VMs can still be destroyed.
    retired_hosts: dict[int, HostConfig] = field(default_factory=dict)
    # Set when the process is told to stop: builds in flight cancel, roll back, answer 503.
    stopping: threading.Event = field(default_factory=threading.Event)
    # Rung when room frees in this process (a release, a failed build, an undrain, a
    # reload): the queue's dispatcher runs at once instead of on its next tick.
    room_freed: threading.Event = field(default_factory=threading.Event)
    # Templates the configuration names that a host lacks: logged, and shown on /health.
    templates: TemplateWatch = field(default_factory=TemplateWatch)
    _host_gates: dict[str, threading.BoundedSemaphore] = field(default_factory=dict)
    _gates_lock: threading.Lock = field(default_factory=threading.Lock)
    # The builds this process runs: (request id, VM name) -> (os, step, since), so that each
    # step's time is observed once as the VM leaves it (progress.note); not state of record.
    step_times: dict[tuple[str, str], tuple[str, str, float]] = field(default_factory=dict)
    _steps_lock: threading.Lock = field(default_factory=threading.Lock)

    def step_reached(self, key: tuple[str, str], os_key: str, step: str, final: bool
                     ) -> tuple[str, str, float] | None:
        """Note that a build reached `step` now; the (os, step, since) it left, if known."""
        now = self.clock()
        with self._steps_lock:
            left = self.step_times.pop(key, None)
            os_key = os_key or (left[0] if left else "")
            if not final and os_key:
                self.step_times[key] = (os_key, step, now)
        return left

    def deployment(self) -> str:
        """This deployment's identity, kept in the store (raises StoreUnavailable)."""
        if self._deployment is None:
            self._deployment = self.store.documents.deployment_id(self.identity) or ""
        return self._deployment

    def event(self, event: CoreEvent, **fields: Any) -> None:
        try:
            self.on_event(event, fields)
        except Exception:  # metrics never break the work they count
            pass

    def pool(self, host: HostConfig) -> XenPool:
        return self.registry.get(host)

    def fleet_port(self, host: HostConfig) -> FleetPort:
        """The fleet's power and placement calls on one pool."""
        if self.fleet is None:
            raise RuntimeError("the fleet is not wired to a hypervisor")
        return self.fleet(self.registry.get(host))

    def outage(self, host: HostConfig) -> Outage | None:
        """Why and since when `host`'s pool does not answer (None while it does)."""
        return self.registry.get(host).outage()

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
