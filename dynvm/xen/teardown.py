"""Removing a VM with the disks that only it uses (never CDs, ISOs or shared disks)."""

from __future__ import annotations

import logging
from typing import Any

from dynvm.core.ports import XenError
from dynvm.xen import records as R
from dynvm.xen.pool_access import PoolAccess

log = logging.getLogger(__name__)

_RUNNING_STATES = ("Running", "Paused", "Suspended")


class VmRemover(PoolAccess):
    """Destroys VMs by ref and reads their disks; keeps the inventory in step."""

    def destroy_ref(self, ref: str) -> bool:
        """Halt and destroy the VM, then its own disks; False when it was already gone."""
        try:
            rec = self.call("VM.get_record", ref)
            if rec.get("is_control_domain"):
                raise XenError("OPERATION_NOT_ALLOWED",
                               ["This operation is not allowed on a control domain"])
            if rec.get("power_state") in _RUNNING_STATES:
                try:
                    self.call("VM.hard_shutdown", ref)
                except XenError as exc:
                    if exc.code != "VM_BAD_POWER_STATE":
                        raise
            vdis = self._own_vdis(ref, rec)
            for snap in rec.get("snapshots") or ():  # a VM's snapshots go with it
                vdis += self._destroy_snapshot(snap)
            self.call("VM.destroy", ref)
        except XenError as exc:
            if exc.code == "HANDLE_INVALID" and exc.params[:1] == ["VM"]:
                self.inventory.apply_record("vm", ref, None)
                return False
            raise
        self.inventory.apply_record("vm", ref, None)
        self._destroy_vdis(ref, vdis)
        return True

    def destroy_snapshot(self, snap: str) -> None:
        """Destroy one snapshot of a VM with the disks only it uses (its VM stays)."""
        vdis = self._destroy_snapshot(snap)
        self.inventory.apply_record("vm", snap, None)
        self._destroy_vdis(snap, vdis)

    def _destroy_vdis(self, ref: str, vdis: list[str]) -> None:
        """`ref` is gone: try every disk of it before reporting any failure."""
        failed: list[XenError] = []
        for vdi in vdis:
            try:
                self.call("VDI.destroy", vdi)
            except XenError as exc:
                if exc.code != "HANDLE_INVALID":
                    log.error("xenhost%d: VDI %s of VM %s left behind: %s",
                              self.host_ref, vdi, ref, exc)
                    failed.append(exc)
        if failed:
            raise failed[0]

    def _destroy_snapshot(self, snap: str) -> list[str]:
        """Destroy one snapshot of a VM; the disks it alone uses, to destroy next."""
        try:
            vdis = self._own_vdis(snap, self.call("VM.get_record", snap))
            self.call("VM.destroy", snap)
        except XenError as exc:
            if exc.code == "HANDLE_INVALID":
                return []
            raise
        return vdis

    def _own_vdis(self, ref: str, rec: dict[str, Any]) -> list[str]:
        """The VM's disk VDIs that no other VM uses (never CDs / ISOs)."""
        out = []
        for vbd in rec.get("VBDs") or ():
            try:
                vbd_rec = self.call("VBD.get_record", vbd)
                if vbd_rec.get("type") != "Disk" or R.is_null(vbd_rec.get("VDI")):
                    continue
                vdi = vbd_rec["VDI"]
                vdi_rec = self.call("VDI.get_record", vdi)
            except XenError as exc:
                if exc.code == "HANDLE_INVALID":
                    continue
                raise
            if vdi_rec.get("is_tools_iso"):
                continue
            others = [v for v in vdi_rec.get("VBDs") or () if v != vbd]
            if any(self._vbd_vm(v) not in (ref, None) for v in others):
                continue
            out.append(vdi)
        return out

    def _vbd_vm(self, vbd: str) -> str | None:
        try:
            return self.call("VBD.get_VM", vbd)
        except XenError as exc:
            if exc.code == "HANDLE_INVALID":
                return None
            raise

    def disk_sizes(self, ref: str) -> list[int]:
        """virtual_size (bytes) of each disk of the VM, in VBD order (the seed's `disk`)."""
        sizes = []
        for vbd in self.call("VM.get_VBDs", ref):
            vbd_rec = self.call("VBD.get_record", vbd)
            if vbd_rec.get("type") != "Disk" or R.is_null(vbd_rec.get("VDI")):
                continue
            sizes.append(R.as_int(self.call("VDI.get_virtual_size", vbd_rec["VDI"])))
        return sizes
