"""Disk-only snapshots of a VM (XAPI VM.snapshot / VM.revert), named by their
name_label among the VM's own snapshots."""

from __future__ import annotations

from typing import Any

from dynvm.core.ports import VmSnapshot, XenError
from dynvm.xen.pool_access import PoolAccess
from dynvm.xen.session import SessionPool
from dynvm.xen.shared_inventory import AnyInventory
from dynvm.xen.teardown import VmRemover

SNAPSHOT_NOT_FOUND = "SNAPSHOT_NOT_FOUND"


class VmSnapshots(PoolAccess):
    """Takes snapshots of a VM, lists them, reverts it to one of them, deletes one."""

    def __init__(self, sessions: SessionPool, inventory: AnyInventory, remover: VmRemover) -> None:
        super().__init__(sessions, inventory)
        self._remover = remover

    def take(self, ref: str, name: str) -> VmSnapshot:
        snap = self.call("VM.snapshot", ref, name, [])
        self.inventory.refresh_vm(ref)
        return self._describe(snap, self.call("VM.get_record", snap))

    def listing(self, ref: str) -> list[VmSnapshot]:
        """The VM's snapshots, oldest first."""
        return [self._describe(snap, rec) for snap, rec in self._records(ref)]

    def _records(self, ref: str) -> list[tuple[str, dict[str, Any]]]:
        """(ref, record) of each snapshot of the VM, oldest first (`snapshot_time` is
        XAPI's UTC stamp, so it sorts as text)."""
        mine = [(snap, self.call("VM.get_record", snap))
                for snap in self.call("VM.get_snapshots", ref)]
        return sorted(mine, key=lambda item: str(item[1].get("snapshot_time", "")))

    def delete(self, ref: str, name: str) -> VmSnapshot:
        """Destroy the VM's snapshot `name` (the newest, if several share it) with the
        disks only it uses: its room on the SR is given back."""
        mine = [(s, rec) for s, rec in self._records(ref) if rec.get("name_label") == name]
        if not mine:
            raise XenError(SNAPSHOT_NOT_FOUND, [name], f"the VM has no snapshot named {name!r}")
        snap, rec = mine[-1]
        self._remover.destroy_snapshot(snap)
        self.inventory.refresh_vm(ref)
        return self._describe(snap, rec)

    def revert(self, ref: str, name: str | None) -> VmSnapshot:
        """Revert to the snapshot `name` (None: the newest); a VM that was running
        is started again, since XAPI leaves it in the snapshot's power state (halted,
        for a disk-only snapshot) with the snapshot's guest metrics, and its start
        clears those: the guest reports its address afresh."""
        mine = dict(self._records(ref))
        chosen = [s for s, rec in mine.items() if name is None or rec.get("name_label") == name]
        if not chosen:
            raise XenError(SNAPSHOT_NOT_FOUND, [name or ""],
                           f"the VM has no snapshot named {name!r}" if name
                           else "the VM has no snapshot")
        snap = max(chosen, key=lambda s: str(mine[s].get("snapshot_time", "")))
        was_running = self.call("VM.get_power_state", ref) == "Running"
        self.call("VM.revert", snap)
        if was_running:
            self.call("VM.start", ref, False, False)
        self.inventory.refresh_vm(ref)
        return self._describe(snap, mine[snap])

    @staticmethod
    def _describe(snap: str, rec: dict[str, Any]) -> VmSnapshot:
        return VmSnapshot(name=str(rec.get("name_label", "")), uuid=str(rec.get("uuid", "")),
                          taken=str(rec.get("snapshot_time", "")))
