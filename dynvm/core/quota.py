"""Per-owner quotas: VMs, vCPUs and memory, checked inside the store's reservation step.

The owner's usage is what the store holds (reservations of VMs being built,
leases of VMs that exist), so every worker and instance counts the same
VMs, and `Reservations.reserve` applies the limit atomically with the capacity.
"""

from __future__ import annotations

from dataclasses import dataclass

from dynvm.config import Config, QuotaLimits
from dynvm.core.errors import QuotaExceeded
from dynvm.core.store import Lease, QuotaCheck, Reservation, Store, owner_usage

LIMITS = ("vms", "vcpus", "memory_gib")


@dataclass(frozen=True)
class Usage:
    vms: int = 0
    vcpus: int = 0
    memory_gib: float = 0.0

    def get(self, name: str) -> float:
        return getattr(self, name)


def lease_size(cfg: Config, lease: Lease) -> tuple[int, float]:
    """(vCPUs, GiB) of a leased VM: as recorded, else its OS's configured size."""
    vcpus, mem = lease.extra.get("vcpus"), lease.extra.get("memory_gib")
    if vcpus is None or mem is None:
        spec = cfg.os_spec(lease.os)
        vcpus = vcpus if vcpus is not None else (spec.vcpus if spec else 0)
        mem = mem if mem is not None else (spec.memory_gib if spec else 0)
    return int(vcpus), float(mem)


def usage_of(cfg: Config, reservations: list[Reservation], leases: list[Lease]) -> Usage:
    sizes = [(r.vcpus, r.memory_gib) for r in reservations]
    sizes += [lease_size(cfg, lease) for lease in leases]
    return Usage(vms=len(sizes), vcpus=sum(v for v, _ in sizes),
                 memory_gib=sum(m for _, m in sizes))


def room(limits: QuotaLimits, used: Usage, vcpus: int, memory_gib: float) -> int | None:
    """How many more VMs of this size fit in the quota; None if unlimited."""
    fits: list[int] = []
    if limits.vms is not None:
        fits.append(limits.vms - used.vms)
    if limits.vcpus is not None:
        fits.append(int((limits.vcpus - used.vcpus) // max(vcpus, 1)))
    if limits.memory_gib is not None:
        fits.append(int((limits.memory_gib - used.memory_gib) // max(memory_gib, 1e-9)))
    return max(0, min(fits)) if fits else None


def check_for(cfg: Config, owner: str, vcpus: int, memory_gib: float) -> QuotaCheck | None:
    """The callback `Reservations.reserve` runs atomically; None when the owner has no limit."""
    limits = cfg.quota_for(owner)
    if all(getattr(limits, k) is None for k in LIMITS):
        return None

    def fits(reservations: list[Reservation], leases: list[Lease]) -> int:
        n = room(limits, usage_of(cfg, reservations, leases), vcpus, memory_gib)
        return 1 << 30 if n is None else n
    return QuotaCheck(owner=owner, room=fits)


def usage(store: Store, cfg: Config, owner: str) -> Usage:
    res, leases = owner_usage(owner, store.reservations.live(), store.leases.find())
    return usage_of(cfg, res, leases)


def exceeded(cfg: Config, owner: str, used: Usage, count: int, vcpus: int,
             memory_gib: float, queued: Usage | None = None) -> QuotaExceeded | None:
    """The error naming the first limit `count` more VMs would break, if any, counting
    what the owner holds (`used`) and what it has waiting in the queue (`queued`)."""
    limits = cfg.quota_for(owner)
    asked = {"vms": count, "vcpus": count * vcpus, "memory_gib": count * memory_gib}
    waiting = queued or Usage()
    for name in LIMITS:
        limit = getattr(limits, name)
        u, q = used.get(name), waiting.get(name)
        if limit is not None and u + q + asked[name] > limit:
            also = f", waiting in the queue {q:g}" if q else ""
            return QuotaExceeded(
                f"quota of {owner} exceeded: {name} limit {limit}, in use {u:g}{also}, "
                f"asked {asked[name]:g}", name, limit, int(u + q), int(asked[name]))
    return None
