"""VM.snapshot and VM.revert through the official client: a snapshot is a
halted template of the VM whose disks are snapshots of the VM's, it costs its
SR a copy-on-write disk, and revert gives the VM the snapshot's disks back
(halted), with XAPI's error cases."""

from __future__ import annotations

from typing import Any

from dynvm.sim.vmclone import COW_BYTES

from .test_device_ops import fails, guest
from .test_suspend import sr_used

NULL = "OpaqueRef:NULL"


def disk_vdis(x: Any, vm: str) -> list[str]:
    return [x.VBD.get_VDI(b) for b in x.VM.get_VBDs(vm)
            if x.VBD.get_type(b) == "Disk" and x.VBD.get_VDI(b) != NULL]


def test_snapshot_of_a_running_vm_is_a_halted_template_with_snapshot_disks(x: Any) -> None:
    vm = guest(x, windows=False)
    (vdi,) = disk_vdis(x, vm)
    sr = x.VDI.get_SR(vdi)
    used = sr_used(x, sr)

    snap = x.VM.snapshot(vm, "before-upgrade", [])
    rec = x.VM.get_record(snap)
    assert rec["is_a_snapshot"] and rec["is_a_template"] and rec["snapshot_of"] == vm
    assert (rec["name_label"], rec["power_state"]) == ("before-upgrade", "Halted")
    assert x.VM.get_snapshots(vm) == [snap]
    (svdi,) = disk_vdis(x, snap)
    assert x.VDI.get_is_a_snapshot(svdi) and x.VDI.get_snapshot_of(svdi) == vdi
    assert x.VDI.get_snapshots(vdi) == [svdi]
    size = int(x.VDI.get_virtual_size(vdi))
    assert sr_used(x, sr) == (used[0] + COW_BYTES, used[1] + size)
    assert x.VM.get_power_state(vm) == "Running"


def test_revert_halts_the_vm_and_gives_it_fresh_copies_of_the_snapshot_disks(x: Any) -> None:
    vm = guest(x, windows=False)
    (old,) = disk_vdis(x, vm)
    snap = x.VM.snapshot(vm, "s1", [])
    (svdi,) = disk_vdis(x, snap)
    sr = x.VDI.get_SR(old)
    used = sr_used(x, sr)
    old_bytes = int(x.VDI.get_physical_utilisation(old))

    x.VM.revert(snap)
    assert x.VM.get_power_state(vm) == "Halted"
    (new,) = disk_vdis(x, vm)
    assert new not in (old, svdi) and old not in x.VDI.get_all()
    assert not x.VDI.get_is_a_snapshot(new)
    assert sr_used(x, sr) == (used[0] - old_bytes + COW_BYTES, used[1])
    assert x.VM.get_snapshots(vm) == [snap]  # the snapshot stays
    x.VM.start(vm, False, False)
    assert x.VM.get_power_state(vm) == "Running"


def test_xapi_refusals(x: Any) -> None:
    vm = guest(x, windows=False)
    assert fails(x.VM.revert, "OpaqueRef:nope") == ["HANDLE_INVALID", "VM", "OpaqueRef:nope"]
    snap = x.VM.snapshot(vm, "s1", [])
    assert fails(x.VM.start, snap, False, False)[0] in ("VM_IS_SNAPSHOT", "VM_IS_TEMPLATE")
    assert fails(x.VM.snapshot, snap, "again", [])[:1] == ["VM_IS_SNAPSHOT"]
    x.VM.suspend(vm)
    assert fails(x.VM.snapshot, vm, "s2", []) == ["VM_BAD_POWER_STATE", vm, "halted, running",
                                              "suspended"]
    x.VM.hard_shutdown(vm)
    assert fails(x.VM.revert, vm) == ["REVERT_ONLY_ALLOWED_ON_SNAPSHOT"]
    x.VM.destroy(vm)
    assert fails(x.VM.revert, snap) == ["VM_REVERT_FAILED", snap, vm]


def test_ignored_disks_are_left_out_of_the_snapshot(x: Any) -> None:
    vm = guest(x, windows=False)
    (vdi,) = disk_vdis(x, vm)
    used = sr_used(x, x.VDI.get_SR(vdi))
    snap = x.VM.snapshot(vm, "no-disks", [vdi])
    assert disk_vdis(x, snap) == [] and x.VDI.get_snapshots(vdi) == []
    assert sr_used(x, x.VDI.get_SR(vdi)) == used
