"""VM.snapshot and VM.revert: a disk-only snapshot is a halted template of the
VM (is_a_snapshot, snapshot_of) whose disks are copy-on-write snapshots of the
VM's own; reverting halts the VM and gives it fresh copies of the snapshot's
disks, as xapi does. Both run under the database lock, so a refused call
leaves nothing behind."""

from __future__ import annotations

import copy
import uuid as uuidlib
from typing import Any

from . import datamodel, sraccount
from .context import CallContext
from .db import NULL, Database, now_stamp
from .vmchecks import check_operation
from .vmclone import COW_BYTES, clone_vm
from .vmpower import halt
from .vmruntime import runtime
from .wire import XapiError


def _disks(db: Database, vm: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """userdevice -> (VBD, VDI record) of the VM's disks (CDs and empty drives left out)."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for vbd in db.get("VM", vm).get("VBDs", []):
        brec = db.find("VBD", vbd)
        vrec = db.find("VDI", (brec or {}).get("VDI", NULL))
        if brec is None or vrec is None or brec.get("type") != "Disk":
            continue
        out[str(brec.get("userdevice"))] = (vbd, vrec)
    return out


def vm_snapshot(ctx: CallContext, vm: str, new_name: str,
                ignore_vdis: list[str] | None = None) -> str:
    """`ignore_vdis`: disks of the VM left out of the snapshot."""
    db = ctx.db
    with db.lock:
        rec = db.get("VM", vm)
        check_operation(vm, rec, "snapshot", ("halted", "running"), db=db)
        snap = clone_vm(ctx, vm, new_name, False, NULL)
        stamp = now_stamp()
        db.modify("VM", snap, {"is_a_snapshot": True, "snapshot_of": vm, "is_a_template": True,
                               "snapshot_time": stamp, "power_state": "Halted"})
        theirs = _disks(db, vm)
        for device, (_, vrec) in _disks(db, snap).items():
            source = theirs.get(device)
            if source is None:
                continue
            if db.by_uuid("VDI", source[1]["uuid"]) in (ignore_vdis or ()):
                _drop_disk(ctx, db.by_uuid("VDI", vrec["uuid"]))
            else:
                db.modify("VDI", db.by_uuid("VDI", vrec["uuid"]),
                          {"is_a_snapshot": True, "snapshot_time": stamp,
                           "snapshot_of": db.by_uuid("VDI", source[1]["uuid"])})
        return snap


def _drop_disk(ctx: CallContext, vdi: str) -> None:
    """Destroy a disk with its VBDs and give its SR the space back."""
    db = ctx.db
    rec = db.get("VDI", vdi)
    sraccount.release(db, rec.get("SR", NULL), int(rec.get("physical_utilisation", 0)),
                      int(rec.get("virtual_size", 0)))
    for vbd in list(rec.get("VBDs", [])):
        db.discard("VBD", vbd)
    db.destroy("VDI", vdi)
    rt = runtime(ctx.pool)
    with rt.lock:
        rt.vdi_data.pop(vdi, None)


def _fresh_copy(db: Database, vdi: str) -> str:
    """A new copy-on-write disk from a snapshot's disk, charged to its SR."""
    new = copy.deepcopy(db.get("VDI", vdi))
    for set_field in datamodel.CLASSES["VDI"].derived:
        new[set_field] = []
    new.update({"uuid": str(uuidlib.uuid4()), "location": str(uuidlib.uuid4()),
                "physical_utilisation": COW_BYTES, "is_a_snapshot": False,
                "snapshot_of": NULL, "snapshot_time": datamodel.EPOCH, "current_operations": {}})
    sraccount.charge(db, new["SR"], COW_BYTES, int(new.get("virtual_size", 0)))
    return db.create("VDI", new)


def vm_revert(ctx: CallContext, snapshot: str) -> None:
    db = ctx.db
    with db.lock:
        srec = db.get("VM", snapshot)
        check_operation(snapshot, srec, "revert", ("halted", "suspended"))
        vm = srec.get("snapshot_of", NULL)
        if db.find("VM", vm) is None:
            raise XapiError("VM_REVERT_FAILED", snapshot, vm)
        if db.get("VM", vm)["power_state"] != "Halted":
            halt(ctx.pool, vm)
        saved = _disks(db, snapshot)
        for device, (vbd, old) in _disks(db, vm).items():
            source = saved.get(device)
            if source is None:
                continue
            old_ref = db.by_uuid("VDI", old["uuid"])
            db.modify("VBD", vbd, {"VDI": _fresh_copy(db, db.by_uuid("VDI", source[1]["uuid"]))})
            _drop_disk(ctx, old_ref)
        db.modify("VM", vm, {"power_state": srec["power_state"]})
