"""The seed's capacity formula, per member host and OS, less what is being created.

Pure functions over a `PoolView` and the store's live reservations, so the
same numbers come out of `/getavailablecount`, placement and the atomic
reservation check inside `store.reservations.reserve`.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, replace

from dynvm.config import HostConfig, OsSpec
from dynvm.core.ports import TAG_OS, HostView, PoolView, VmView
from dynvm.core.store import Reservation

GIB = 1 << 30
DISK_HEADROOM = 0.10  # keep 10 % of the SR free


def host_key(host_ref: int, host_uuid: str) -> str:
    """Store key of one member host: reservations are counted per member."""
    return f"{host_ref}/{host_uuid}"


def vm_os(vm: VmView, host: HostConfig) -> str | None:
    """Which configured OS a VM is: dynvm's tag, else the template it was cloned from."""
    tagged = vm.other_config.get(TAG_OS)
    if tagged:
        return tagged
    base = vm.other_config.get("base_template_name")
    if base:
        for key, spec in host.os.items():
            if spec.template == base:
                return key
    return None


@dataclass(frozen=True)
class Free:
    """What is left on one member host once running VMs and reservations are counted."""

    cpus: int
    memory_gib: int
    disk_gib: float
    has_sr: bool

    def slots(self, spec: OsSpec) -> int:
        if not self.has_sr:
            return 0
        by_cpu = max(self.cpus, 0) // spec.vcpus
        by_mem = max(self.memory_gib, 0) // spec.memory_gib
        by_disk = int(max(self.disk_gib, 0) // spec.disk_gib)
        if by_disk > 0:
            by_disk -= 1  # room for the base copy, as the seed reckons
        return max(0, min(by_cpu, by_mem, by_disk))


def free_on(host: HostView, used_cpus: int, storage_name: str,
            pending: Iterable[Reservation]) -> Free:
    """Free resources of a member host whose running VMs use `used_cpus`, less the
    reservations not yet visible in the view."""
    pending = list(pending)
    free_cpus = max(host.cpu_count - used_cpus, 0) - sum(r.vcpus for r in pending)
    free_mem = host.memory_free // GIB - sum(r.memory_gib for r in pending)
    sr = host.srs.get(storage_name)
    if sr is None:
        return Free(free_cpus, int(free_mem), 0.0, has_sr=False)
    size, used = sr
    free_disk = (size - used) * (1 - DISK_HEADROOM) / GIB - sum(r.disk_gib for r in pending)
    return Free(free_cpus, int(free_mem), free_disk, has_sr=True)


def unseen(reservations: Iterable[Reservation], shown: Container[str],
           running_elsewhere: frozenset[str] = frozenset()) -> list[Reservation]:
    """Reservations whose VM the view does not yet show running.

    `shown` holds the uuids of the VMs the view shows running on the host and
    the reservation ids they were tagged with (`PoolView.load_on`). Once the
    view shows the VM running, its CPUs and memory are already in the host's
    figures; counting the reservation too would count it twice. A VM is
    matched by its uuid or, before the store knows the uuid, by the
    reservation id it was tagged with before it started.

    A settling reservation (its VM is built) whose VM the pool shows running
    on another member (live-migrated since) is counted there, not here. A
    reservation not settled yet (a build, or room held for a migration still
    to come) stays counted here until its VM runs here.
    """
    return [r for r in reservations if r.id not in shown and r.vm_uuid not in shown
            and not (r.settle_until is not None and r.vm_uuid in running_elsewhere)]


def slots_on(view: PoolView, host: HostView, cfg: HostConfig, os_key: str,
             reservations: Sequence[Reservation], sizes: tuple[int, int] | None = None) -> int:
    """How many more VMs of `os_key` fit on one member host now.

    `sizes` = (vcpus, memory GiB) when the request overrides the OS's sizes.
    """
    spec = cfg.os.get(os_key)
    if spec is None or not host.enabled or spec.template not in view.templates:
        return 0
    if sizes is not None:
        spec = replace(spec, vcpus=max(sizes[0], 1), memory_gib=max(sizes[1], 1))
    load = view.load_on(host.uuid)
    pending = unseen(reservations, load.shown, view.running_anywhere()) if reservations else []
    count = free_on(host, load.vcpus, cfg.storage_name, pending).slots(spec)
    cap = cfg.vms_max.get(os_key)
    if cap is not None:
        of_os = sum(1 for v in view.running_on(host.uuid) if vm_os(v, cfg) == os_key)
        of_os += sum(1 for r in pending if r.os == os_key)
        count = min(count, max(cap - of_os, 0))
    return count
