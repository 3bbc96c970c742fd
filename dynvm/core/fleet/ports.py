"""What the fleet needs from the hypervisor beyond a build and a destroy (`XenPool`).

`dynvm.xen.fleet` implements it for one [xenhostN]; the bootstrap hands the
core a factory (`Adapters.fleet`), as it does for maintenance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from dynvm.core.ports import XenPool


@dataclass(frozen=True)
class Landing:
    """Where a VM from another pool lands: what the receiving pool answered, and the
    storage and network of its member host the VM's disks and VIFs go to."""

    host_uuid: str
    sr: str  # the SR (ref) its disks are copied onto
    network: str  # the network (ref) its VIFs are put on
    token: dict[str, str] = field(repr=False, default_factory=dict)  # the pool's answer


class FleetPort(Protocol):
    """Power, size and place of the fleet's VMs on one pool."""

    def homes(self, vm_uuid: str) -> frozenset[str]:
        """Member hosts (uuids) that reach the storage of every disk of the VM: where it
        may start or live-migrate to (XAPI refuses the others with VM_REQUIRES_SR)."""

    def power_state(self, vm_uuid: str) -> str:
        """The VM's power state, asked now ("" when it does not exist)."""

    def start(self, vm_uuid: str, host_uuid: str) -> None:
        """Start a halted VM on that member host and wait until XAPI says it runs."""

    def shutdown(self, vm_uuid: str) -> None:
        """Shut the VM down cleanly (hard, when the guest does not within a while)."""

    def resize(self, vm_uuid: str, vcpus: int, memory_bytes: int,
               disk_bytes: int | None) -> None:
        """Give a halted VM these vCPUs and memory, and its system disk at least that size."""

    def migrate(self, vm_uuid: str, host_uuid: str) -> bool:
        """Live-migrate within the pool and wait; False if the VM was gone meanwhile."""

    def receive(self, host_uuid: str, storage_name: str,
                network_device: str | None) -> Landing:
        """Ready this pool's member host to receive a VM from another pool."""

    def send(self, vm_uuid: str, landing: Landing) -> None:
        """Move the VM to the pool that made `landing`, its disks copied there (live when it
        runs), and wait. When it fails the VM is where it was (XAPI's storage motion)."""

    def arrived(self, vm_uuid: str) -> None:
        """A VM sent here from another pool: read at once, so the next plan sees it here."""


FleetFactory = Callable[[XenPool], FleetPort]
