"""The XenAPI side of the fleet: where a VM may run, start, shut down, resize, migrate.

Reads of storage go through the event-fed inventory (SRs and their PBDs) and a
few calls for the VM's own disks; every write is a plain XAPI call or an async
task waited for like every other task dynvm runs, and the inventory is told
at once so the next plan sees it.
"""

from __future__ import annotations

import logging
from typing import Any

from dynvm.core.fleet.ports import Landing
from dynvm.core.ports import XenError
from dynvm.xen import records as R
from dynvm.xen.crosspool import VmMover
from dynvm.xen.maintenance import XenMaintenance
from dynvm.xen.pool import XenPoolClient

log = logging.getLogger(__name__)

START_TIMEOUT = 900.0
CLEAN_SHUTDOWN_TIMEOUT = 120.0  # then the VM is shut down hard


class XenFleet:
    """`FleetPort` for one [xenhostN], through dynvm's pooled sessions."""

    def __init__(self, pool: XenPoolClient) -> None:
        self.pool = pool
        self.mover = VmMover(pool.sessions, pool.inventory)

    def _ref(self, vm_uuid: str) -> str:
        return str(self.pool.call("VM.get_by_uuid", vm_uuid))

    def _host_ref(self, host_uuid: str) -> str:
        return str(self.mover._host_ref(host_uuid))

    def homes(self, vm_uuid: str) -> frozenset[str]:
        ref = self._ref(vm_uuid)
        tables = self.pool.inventory.tables("host", "pbd")
        uuids = R.host_uuids(tables["host"])
        reach = set(uuids.values())
        for vbd in self.pool.call("VM.get_VBDs", ref):
            rec = self.pool.call("VBD.get_record", vbd)
            if rec.get("empty") or R.is_null(rec.get("VDI")):
                continue
            sr = self.pool.call("VDI.get_SR", rec["VDI"])
            reach &= {uuids.get(p.get("host", R.NULL), "") for p in tables["pbd"].values()
                      if p.get("SR") == sr and p.get("currently_attached", True)}
        return frozenset(reach)

    def power_state(self, vm_uuid: str) -> str:
        try:
            return str(self.pool.call("VM.get_power_state", self._ref(vm_uuid)))
        except XenError as exc:
            if exc.code in ("UUID_INVALID", "HANDLE_INVALID"):
                return ""
            raise

    def start(self, vm_uuid: str, host_uuid: str) -> None:
        ref = self._ref(vm_uuid)
        self.pool.run_task("Async.VM.start_on", ref, self._host_ref(host_uuid), False, False,
                           timeout=START_TIMEOUT)
        self.pool.inventory.refresh_vm(ref)

    def shutdown(self, vm_uuid: str) -> None:
        ref = self._ref(vm_uuid)
        try:
            self.pool.run_task("Async.VM.clean_shutdown", ref, timeout=CLEAN_SHUTDOWN_TIMEOUT)
        except XenError as exc:
            if exc.code != "VM_BAD_POWER_STATE":  # that one: it is halted already
                log.warning("xenhost%d: clean shutdown of %s failed (%s): shutting it down "
                            "hard", self.pool.host_ref, vm_uuid, exc)
                self.pool.call("VM.hard_shutdown", ref)
        self.pool.inventory.refresh_vm(ref)

    def resize(self, vm_uuid: str, vcpus: int, memory_bytes: int,
               disk_bytes: int | None) -> None:
        ref = self._ref(vm_uuid)
        rec = self.pool.call("VM.get_record", ref)
        call = self.pool.call
        # VCPUs_at_startup may never exceed VCPUs_max: the order follows the direction.
        if vcpus > R.as_int(rec.get("VCPUs_max"), 1):
            call("VM.set_VCPUs_max", ref, str(vcpus))
            call("VM.set_VCPUs_at_startup", ref, str(vcpus))
        else:
            call("VM.set_VCPUs_at_startup", ref, str(vcpus))
            call("VM.set_VCPUs_max", ref, str(vcpus))
        low = min(R.as_int(rec.get("memory_static_min")), memory_bytes)
        size = str(memory_bytes)
        call("VM.set_memory_limits", ref, str(low), size, size, size)
        if disk_bytes is not None:
            self._grow(rec, disk_bytes)
        self.pool.inventory.refresh_vm(ref)

    def _grow(self, rec: dict[str, Any], size: int) -> None:
        """The system disk (bootable first, else the lowest device) at least `size` bytes."""
        disks = []
        for vbd in rec.get("VBDs") or ():
            b = self.pool.call("VBD.get_record", vbd)
            if b.get("type") == "Disk" and not R.is_null(b.get("VDI")) and not b.get("empty"):
                disks.append((not b.get("bootable"), R.as_int(b.get("userdevice"), 99), b["VDI"]))
        if disks:
            vdi = min(disks)[2]
            if R.as_int(self.pool.call("VDI.get_virtual_size", vdi)) < size:
                self.pool.call("VDI.resize", vdi, str(size))

    def migrate(self, vm_uuid: str, host_uuid: str) -> bool:
        moved = XenMaintenance(self.pool).migrate(vm_uuid, host_uuid)
        ref = self.pool.inventory.ref_by_uuid("vm", vm_uuid)
        if ref is not None:
            self.pool.inventory.refresh_vm(ref)
        return moved

    def receive(self, host_uuid: str, storage_name: str,
                network_device: str | None) -> Landing:
        return self.mover.receive(host_uuid, storage_name, network_device)

    def send(self, vm_uuid: str, landing: Landing) -> None:
        self.mover.send(vm_uuid, landing, self.pool.run_task)

    def arrived(self, vm_uuid: str) -> None:
        self.mover.arrived(vm_uuid)
