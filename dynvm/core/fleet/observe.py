"""Reading the farm for the fleet: the pools' inventory, the store's fleet records, and,
only for the VMs a decision needs it for, their disks and storage."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from dynvm.config import Config, Fleet, HostConfig
from dynvm.core.capacity import GIB, free_on, host_key, unseen
from dynvm.core.context import Context
from dynvm.core.fleet.farm import FarmState, Member, Seen
from dynvm.core.fleet.ports import FleetPort
from dynvm.core.maintenance.state import is_blocked, placement_blocked
from dynvm.core.ports import (
    TAG_DEPLOYMENT,
    TAG_FLEET,
    TAG_OS,
    TAG_STATE,
    HostUnreachable,
    PoolView,
    VmView,
    XenError,
)
from dynvm.core.store import LEASE_PROVISIONING, Reservation

log = logging.getLogger("dynvm.fleet")

PortOf = Callable[[HostConfig], FleetPort]


def fleet_name(vm: VmView, own: str) -> str | None:
    """The declared name of a fleet VM of this deployment (its tags prove it), else None."""
    oc = vm.other_config
    name = oc.get(TAG_FLEET)
    return name if name and own and oc.get(TAG_DEPLOYMENT) == own else None


def observe(ctx: Context, fleet: Fleet, port_of: PortOf, *, details: bool = True,
            halted: bool = True) -> FarmState:
    """The farm as one plan reads it. With `details`, the disks and the storage of the
    fleet's VMs are asked of the hypervisor (plan and apply); else, with `halted`,
    only where halted VMs may start (the background leader starts them); with neither,
    the inventory alone is read (the dashboard: no XenAPI call)."""
    cfg = ctx.config()
    own = ctx.deployment()
    store = ctx.store
    live = store.reservations.live()
    blocked = placement_blocked(store)
    farm = FarmState(members=[], seen=[], entries={e.name: e for e in store.fleet.find()},
                     now=ctx.clock())
    for hc in sorted(cfg.hosts.values(), key=lambda h: h.ref):
        try:
            view = ctx.view(hc)
        except (HostUnreachable, XenError) as exc:
            log.warning("fleet: xenhost%d unreachable: %s", hc.ref, exc)
            farm.down.append(hc.ref)
            continue
        farm.members += _members(cfg, hc, view, live, blocked)
        for vm in view.vms.values():
            seen = _seen(vm, hc.ref, own, fleet)
            if seen is None:
                continue
            if seen.ours and (details or (halted and not seen.running)):
                seen = _detailed(ctx, hc, port_of, seen, disks=details)
            farm.seen.append(seen)
    return farm


def _members(cfg: Config, hc: HostConfig, view: PoolView, live: list[Reservation],
             blocked: frozenset[str]) -> list[Member]:
    serves = frozenset(k for k, spec in hc.os.items() if spec.template in view.templates)
    out = []
    for h in view.hosts:
        load = view.load_on(h.uuid)
        mine = [r for r in live if r.host_key == host_key(hc.ref, h.uuid)]
        free = free_on(h, load.vcpus, hc.storage_name,
                       unseen(mine, load.shown, view.running_anywhere()))
        usable = h.enabled and not hc.drain and not is_blocked(blocked, hc.ref, h.uuid)
        out.append(Member(hc.ref, h.uuid, h.name_label, free, usable, hc.labels, serves))
    return out


def _seen(vm: VmView, ref: int, own: str, fleet: Fleet) -> Seen | None:
    """A VM of the fleet, or one that carries a declared name; None for the others."""
    name = fleet_name(vm, own)
    if name is None and vm.name_label not in fleet.vms:
        return None
    oc = vm.other_config
    return Seen(name=name or vm.name_label, uuid=vm.uuid, pool=ref, member=vm.resident_on
                if vm.power_state == "Running" else "", power=vm.power_state,
                vcpus=vm.vcpus_max, memory_gib=vm.memory_static_max / GIB,
                os=oc.get(TAG_OS, "") if name else "", ours=name is not None,
                building=name is not None and oc.get(TAG_STATE) == LEASE_PROVISIONING,
                ip=vm.ips[0] if vm.ips else "")


def _detailed(ctx: Context, hc: HostConfig, port_of: PortOf, seen: Seen, *,
              disks: bool) -> Seen:
    """`seen` with where it may run and, with `disks`, its system disk's size."""
    try:
        homes = port_of(hc).homes(seen.uuid)
        sizes = ctx.pool(hc).disk_sizes(seen.uuid) if disks else []
    except XenError as exc:  # destroyed meanwhile, or the pool stopped answering
        log.info("fleet: %s on xenhost%d not read: %s", seen.name, hc.ref, exc)
        return seen
    return dataclasses.replace(seen, homes=homes, disk_gib=max(sizes) / GIB if sizes else None)
