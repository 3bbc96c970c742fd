"""What a rolling reboot needs of the fleet: its anti-affinity groups, and, once the pool
is rebooted, which pinned fleet VMs go back to the host their file names."""

from __future__ import annotations

from dataclasses import dataclass

from dynvm.config import ConfigError, Fleet, load_fleet
from dynvm.core.context import Context
from dynvm.core.maintenance.ports import HostState, PoolState, VmState
from dynvm.core.ports import TAG_DEPLOYMENT, TAG_FLEET


def _declared(vm: VmState, fleet: Fleet, own: str) -> str | None:
    """The declared name of a VM of this deployment's fleet, else None."""
    name = vm.other_config.get(TAG_FLEET)
    if name and vm.other_config.get(TAG_DEPLOYMENT) == own and name in fleet.vms:
        return name
    return None


def fleet_groups(ctx: Context, vms: list[VmState]) -> tuple[dict[str, str], str | None]:
    """VM uuid -> its fleet group, and a problem when the fleet cannot be read (its groups
    are then unknown, and a plan that ignored them could put a group on one host)."""
    try:
        fleet = load_fleet(ctx.config())
    except ConfigError as exc:
        return {}, f"the fleet directory does not validate, so its groups are unknown: {exc}"
    if fleet is None:
        return {}, None
    own = ctx.deployment()
    out = {}
    for vm in vms:
        name = _declared(vm, fleet, own)
        group = fleet.vms[name].group if name else None
        if group:
            out[vm.uuid] = group
    return out, None


@dataclass(frozen=True)
class Homecoming:
    vm: str  # uuid
    name: str
    dst: str  # host uuid
    dst_name: str
    home: bool = True  # False: a stop on the way (two VMs of a group swapping hosts)


def homecomings(ctx: Context, ref: int, pool: PoolState) -> tuple[list[Homecoming], list[str]]:
    """Pinned fleet VMs of `[xenhost<ref>]` running away from their declared host, moved
    back in an order that never puts two VMs of a group on one host (two that must swap
    hosts go by a third); and why the others stay where they are."""
    try:
        fleet = load_fleet(ctx.config())
    except ConfigError as exc:
        return [], [f"fleet VMs not moved back: the fleet directory does not validate ({exc})"]
    if fleet is None:
        return [], []
    own = ctx.deployment()
    names = {vm.uuid: n for vm in pool.vms if (n := _declared(vm, fleet, own))}
    trip = _Trip(pool, {u: fleet.vms[n].group or "" for u, n in names.items()})
    notes: list[str] = []
    away: list[tuple[VmState, HostState]] = []
    for vm in sorted(pool.vms, key=lambda v: v.name):
        declared = fleet.vms[names[vm.uuid]] if vm.uuid in names else None
        if declared is None or declared.host_ref != ref or declared.member is None:
            continue
        home = trip.hosts.get(declared.member)
        if home is None or home.uuid == vm.host:
            continue
        if not home.live or not home.enabled or vm.blocker:
            why = f"cannot take it live ({vm.blocker})" if vm.blocker else "is not up"
            notes.append(f"{vm.name} stays where it is: {home.name} {why}")
        else:
            away.append((vm, home))
    stepped: set[str] = set()  # VMs that stepped aside once already
    while away:
        ready = [(vm, home) for vm, home in away if trip.fits(vm, home.uuid)]
        if ready:
            trip.move(*ready[0], home=True)
            away.remove(ready[0])
            continue
        # Each waits for another to leave: one steps aside to a host that is nobody's home.
        homes = {home.uuid for _, home in away}
        vm, home = away[0]
        aside = [h for h in trip.hosts.values() if h.uuid not in homes
                 and h.uuid != trip.where[vm.uuid] and h.live and h.enabled
                 and trip.fits(vm, h.uuid)]
        if not aside or vm.uuid in stepped:
            notes += [f"{v.name} stays where it is: no room on {h.name}, or a VM of its group "
                      f"runs there" for v, h in away]
            break
        stepped.add(vm.uuid)
        trip.move(vm, aside[0], home=False)
    return trip.moves, notes


class _Trip:
    """Where the pool's VMs are and what room is left, as the moves back are planned."""

    def __init__(self, pool: PoolState, group: dict[str, str]) -> None:
        self.hosts = {h.name: h for h in pool.hosts}
        self.free = {h.uuid: h.memory_free for h in pool.hosts}
        self.where = {vm.uuid: vm.host for vm in pool.vms}
        self.group = group
        self.moves: list[Homecoming] = []

    def fits(self, vm: VmState, host: str) -> bool:
        mates = [u for u, at in self.where.items() if at == host and u != vm.uuid
                 and self.group.get(vm.uuid) and self.group.get(u) == self.group[vm.uuid]]
        return not mates and self.free[host] >= vm.memory

    def move(self, vm: VmState, to: HostState, *, home: bool) -> None:
        self.free[self.where[vm.uuid]] += vm.memory
        self.free[to.uuid] -= vm.memory
        self.where[vm.uuid] = to.uuid
        self.moves.append(Homecoming(vm.uuid, vm.name, to.uuid, to.name, home))
