"""The farm as the fleet planner reads it: plain records, no XenAPI, no store.

`dynvm.core.fleet.observe` fills them from the pools' inventory, the store's
fleet records and, for the few VMs a move concerns, the hypervisor; the
planner (`plan`) and the status of every declared VM only read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dynvm.core.capacity import Free
from dynvm.core.records import FleetEntry


@dataclass(frozen=True)
class Member:
    """One member host of a configured pool, with the room left on it."""

    pool: int  # N of [xenhostN]
    uuid: str
    name: str
    free: Free  # room left once running VMs and live reservations are counted
    usable: bool = True  # enabled, its pool not drained, not in maintenance
    labels: frozenset[str] = frozenset()  # its pool's host.labels
    serves: frozenset[str] = frozenset()  # OS keys whose template its pool has

    @property
    def where(self) -> str:
        return f"xenhost{self.pool}/{self.name}"


@dataclass(frozen=True)
class Seen:
    """A VM of the farm the fleet cares about: one of its own, or one that has a declared name."""

    name: str  # the declared name (fleet tag) of ours, else the VM's name_label
    uuid: str
    pool: int
    member: str  # member uuid it runs on, "" when not running
    power: str  # Running | Halted | Suspended | Paused
    vcpus: int
    memory_gib: float  # memory_static_max
    os: str = ""
    ours: bool = True  # tagged with this deployment's identity and the fleet's name
    building: bool = False  # its tags say the build never completed
    disk_gib: float | None = None  # its system disk (None: not read)
    homes: frozenset[str] | None = None  # members that reach all its disks (None: not read)
    ip: str = ""

    @property
    def running(self) -> bool:
        return self.power == "Running"


@dataclass
class FarmState:
    """Everything one plan reads, read once."""

    members: list[Member]
    seen: list[Seen]
    down: list[int] = field(default_factory=list)  # pools that did not answer
    entries: dict[str, FleetEntry] = field(default_factory=dict)  # the store's records
    now: float = 0.0

    def member(self, uuid: str) -> Member | None:
        return next((m for m in self.members if m.uuid == uuid), None)

    def where(self, vm: Seen) -> str:
        """"xenhost1/<member>" for a running VM, "xenhost1" for a halted one."""
        m = self.member(vm.member) if vm.member else None
        return m.where if m else f"xenhost{vm.pool}"
