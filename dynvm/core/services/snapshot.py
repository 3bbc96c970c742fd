"""One consistent read of configuration, inventory and store for a dashboard answer.

Every section of one page (farm, VMs, warm pools, capacity) reads the same
snapshot, so they agree with each other; the store's records in it are kept
per store generation (`PerGeneration`), so a page refresh reads none of them
again until something changed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dynvm.core.capacity import host_key, slots_on
from dynvm.core.errors import StoreDown
from dynvm.core.maintenance.state import is_blocked, placement_blocked
from dynvm.core.ports import Outage, PoolView
from dynvm.core.services.base import Runtime
from dynvm.core.store import Lease, Reservation
from dynvm.core.store_cache import PerGeneration

if TYPE_CHECKING:
    from dynvm.config import Config


@dataclass
class Snapshot:
    """One consistent read of config, inventory and store, shared by every section."""

    cfg: Config
    views: dict[int, PoolView]
    errors: dict[int, str]
    leases: list[Lease]
    now: float
    reservations: list[Reservation] = field(default_factory=list)
    # Pools drained ("<N>") and member hosts in maintenance ("<N>/<uuid>") in the store.
    blocked: frozenset[str] = frozenset()
    _slots: dict[tuple[int, str], dict[str, int]] = field(default_factory=dict, repr=False)
    _by_host: dict[str, list[Reservation]] = field(default_factory=dict, repr=False)

    # Why the store could not be read, if it could not: the store's records are then
    # unknown (not empty), and whoever shows this snapshot must say so.
    store_error: str | None = None
    # Pools that do not answer: since when, why, and what they held when last read.
    outages: dict[int, Outage] = field(default_factory=dict)

    @classmethod
    def take(cls, rt: Runtime, reads: PerGeneration | None = None) -> Snapshot:
        """`reads`: keep the store's records per store generation (see `PerGeneration`)."""
        cfg = rt.config()
        ctx = rt.ctx
        hosts = sorted(cfg.hosts.values(), key=lambda h: h.ref)
        views, errors, outages = {}, {}, {}
        for h in hosts:
            try:
                views[h.ref] = ctx.view(h)
            except Exception as exc:  # unreachable: shown as such, never fatal
                errors[h.ref] = str(exc)
                outage = ctx.outage(h)
                if outage is not None:
                    outages[h.ref] = outage
        store = ctx.store

        def read() -> tuple[list[Lease], list[Reservation], frozenset[str]]:
            # Leases, live reservations and what placement skips, read together.
            return store.leases.find(), store.reservations.live(), placement_blocked(store)

        def lapses(got: tuple[list[Lease], list[Reservation], frozenset[str]]) -> float:
            return min((r.settle_until if r.settle_until is not None else r.expires
                        for r in got[1]), default=math.inf)

        try:
            leases, reservations, blocked = rt.read(
                read if reads is None else lambda: reads.read("snapshot", read, until=lapses))
        except StoreDown as exc:
            return cls(cfg, views, errors, [], ctx.clock(), store_error=exc.message,
                       outages=outages)
        return cls(cfg, views, errors, leases, ctx.clock(), reservations, blocked,
                   outages=outages)

    def require_store(self) -> Snapshot:
        """This snapshot, if its store records were read; else StoreDown (a 503)."""
        if self.store_error is not None:
            raise StoreDown(self.store_error)
        return self

    def slots(self, ref: int, os_key: str) -> dict[str, int]:
        """Free VM slots of `os_key` per member host of pool `ref`, computed once."""
        key = (ref, os_key)
        if key not in self._slots:
            if not self._by_host and self.reservations:
                for r in self.reservations:
                    self._by_host.setdefault(r.host_key, []).append(r)
            hc, view = self.cfg.hosts[ref], self.views[ref]
            # As placement.candidates counts them, with the reservations grouped once;
            # a drained pool or a member in maintenance has no room to offer.
            self._slots[key] = {
                m.uuid: 0 if is_blocked(self.blocked, ref, m.uuid)
                else slots_on(view, m, hc, os_key, self._by_host.get(host_key(ref, m.uuid), []))
                for m in view.hosts}
        return self._slots[key]
