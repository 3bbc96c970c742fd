"""What the fleet needs from the hypervisor beyond a build and a destroy (`XenPool`).

`dynvm.xen.fleet` implements it for one [xenhostN]; the bootstrap hands the
core a factory (`Adapters.fleet`), as it does for maintenance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from dynvm.core.ports import XenPool


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


FleetFactory = Callable[[XenPool], FleetPort]
