"""Room and anti-affinity while a fleet plan is made: what each member host has left, and
which groups already have a VM on it, as the plan's steps take and give back."""

from __future__ import annotations

from dataclasses import dataclass

from dynvm.config import FleetVm
from dynvm.core.fleet.farm import FarmState, Member


@dataclass(frozen=True)
class Need:
    vcpus: int
    memory_gib: float
    disk_gib: float = 0.0  # disk taken on the member's SR (a new VM, a grown disk)
    clone: bool = False  # a new VM: its SR also needs room for the base copy, as capacity counts


def need_of(vm: FleetVm, *, clone: bool) -> Need:
    return Need(vm.vcpus, vm.memory_gib, vm.disk_gib if clone else 0.0, clone)


class Room:
    """Free vCPUs, memory and disk per member, and the groups each member holds."""

    def __init__(self, farm: FarmState, group_of: dict[str, str | None]) -> None:
        self.members = {m.uuid: m for m in farm.members}
        self._cpus = {m.uuid: float(m.free.cpus) for m in farm.members}
        self._mem = {m.uuid: float(m.free.memory_gib) for m in farm.members}
        self._disk = {m.uuid: m.free.disk_gib if m.free.has_sr else -1.0 for m in farm.members}
        self._groups: dict[str, dict[str, str]] = {u: {} for u in self.members}  # group -> VM
        self._fleet = dict.fromkeys(self.members, 0)  # fleet VMs per member
        for vm in farm.seen:
            if vm.ours and vm.running and vm.member in self.members:
                self._fleet[vm.member] += 1
                group = group_of.get(vm.name)
                if group:
                    self._groups[vm.member].setdefault(group, vm.name)

    def fits(self, uuid: str, need: Need) -> bool:
        disk_ok = not need.disk_gib or (
            self._disk[uuid] >= need.disk_gib * (2 if need.clone else 1))
        return self._cpus[uuid] >= need.vcpus and self._mem[uuid] >= need.memory_gib and disk_ok

    def grow(self, uuid: str, need: Need) -> None:
        """A VM already counted on the member takes `need` more."""
        self._cpus[uuid] -= need.vcpus
        self._mem[uuid] -= need.memory_gib
        self._disk[uuid] -= need.disk_gib

    def take(self, uuid: str, need: Need, group: str | None = None, name: str = "") -> None:
        """A VM comes to the member."""
        self.grow(uuid, need)
        self._fleet[uuid] += 1
        if group:
            self._groups[uuid].setdefault(group, name)

    def give(self, uuid: str, need: Need, group: str | None = None) -> None:
        if uuid not in self.members:
            return
        self._cpus[uuid] += need.vcpus
        self._mem[uuid] += need.memory_gib
        self._disk[uuid] += need.disk_gib
        self._fleet[uuid] -= 1
        if group:
            self._groups[uuid].pop(group, None)

    def holder(self, uuid: str, group: str | None, name: str) -> str | None:
        """The other VM of `group` on the member, if any."""
        other = self._groups[uuid].get(group or "")
        return other if group and other and other != name else None

    def choose(self, candidates: list[Member], need: Need, group: str | None,
               name: str) -> tuple[Member | None, str]:
        """The member to put a VM on, or None and why none will do.

        Apart from its group, with room; among those the one with the fewest fleet
        VMs, then the most free memory, so the fleet spreads over the farm.
        """
        if not candidates:
            return None, "no usable member host"
        apart = [m for m in candidates if self.holder(m.uuid, group, name) is None]
        if not apart:
            held = ", ".join(f"{self.holder(m.uuid, group, name)} on {m.name}"
                             for m in candidates)
            return None, (f"group {group}: every member it may run on already runs a VM of "
                          f"the group ({held})")
        roomy = [m for m in apart if self.fits(m.uuid, need)]
        if not roomy:
            best = max(apart, key=lambda m: (self._mem[m.uuid], m.name))
            disk = f", {need.disk_gib:g} GiB disk" if need.disk_gib else ""
            return None, (f"no room: it needs {need.vcpus} vCPUs, {need.memory_gib:g} GiB"
                          f"{disk}; the roomiest member {best.where} has "
                          f"{max(self._cpus[best.uuid], 0):g} vCPUs, "
                          f"{max(self._mem[best.uuid], 0):g} GiB free")
        return min(roomy, key=lambda m: (self._fleet[m.uuid], -self._mem[m.uuid], m.name)), ""
