"""VM.clone, VM.copy and VM.provision: a template becomes a VM with its own
disks and VIFs. The clone time passes outside the database lock; the copy is
made under it, after the source is checked again, and a refused copy or
provision leaves nothing behind."""

from __future__ import annotations

import copy
import uuid as uuidlib
import xml.etree.ElementTree as ET
from typing import Any

from . import datamodel, sraccount
from .context import CallContext
from .db import NULL, Database, now_stamp
from .guests import guest_os
from .netops import new_mac
from .vmchecks import check_operation, operation_key, set_operation
from .wire import XapiError

MIB = 1 << 20
COW_BYTES = 4 * MIB  # what a copy-on-write clone of a disk costs its SR up front


def _disk_plan(db: Database, rec: dict[str, Any], full_copy: bool, target_sr: str
               ) -> list[tuple[dict[str, Any], dict[str, Any] | None, str]]:
    """(VBD, VDI or None, destination SR) per disk, checked before anything is
    created so that a refused copy leaves no half-made VM behind."""
    plan: list[tuple[dict[str, Any], dict[str, Any] | None, str]] = []
    for vbd in rec.get("VBDs", []):
        brec = db.find("VBD", vbd)
        if brec is None:
            continue
        vrec = db.find("VDI", brec.get("VDI", NULL))
        if vrec is None or brec.get("empty"):
            plan.append((brec, None, NULL))
            continue
        sr = target_sr if full_copy and target_sr not in ("", NULL) else vrec["SR"]
        if full_copy and db.get("SR", sr).get("content_type") == "iso":
            raise XapiError("OPERATION_NOT_ALLOWED", "Cannot copy a VM's disks to an ISO SR")
        plan.append((brec, vrec, sr))
    return plan


def clone_vm(ctx: CallContext, src: str, new_name: str, full_copy: bool, target_sr: str) -> str:
    db = ctx.db
    rec = db.get("VM", src)
    disks = _disk_plan(db, rec, full_copy, target_sr)
    new = copy.deepcopy(rec)
    for set_field in datamodel.CLASSES["VM"].derived:
        new[set_field] = []
    oc = dict(new.get("other_config") or {})
    oc["mac_seed"] = str(uuidlib.uuid4())
    oc.pop("default_template", None)
    oc.pop("xensource_internal", None)
    if rec.get("is_a_template") and "base_template_name" not in oc:
        oc["base_template_name"] = rec["name_label"]
    new.update({
        "uuid": str(uuidlib.uuid4()),
        "name_label": new_name,
        "is_default_template": False,
        "is_a_snapshot": False,
        "snapshot_of": NULL,
        "snapshot_time": datamodel.EPOCH,
        "resident_on": NULL,
        "scheduled_to_be_resident_on": NULL,
        "parent": NULL,
        "domid": -1,
        "start_delay": 0,
        "shutdown_delay": 0,
        "order": 0,
        "appliance": NULL,
        "suspend_SR": NULL,
        "suspend_VDI": NULL,
        "guest_metrics": NULL,
        "current_operations": {},
        "other_config": oc,
    })
    new["metrics"] = db.create("VM_metrics", {"uuid": str(uuidlib.uuid4()),
                                              "last_updated": now_stamp(),
                                              "install_time": now_stamp()})
    vm = db.create("VM", new)
    for brec, vrec, sr in disks:
        nb = copy.deepcopy(brec)
        new_vdi = NULL
        if vrec is not None:
            nv = copy.deepcopy(vrec)
            used = int(vrec.get("physical_utilisation", 0)) if full_copy else COW_BYTES
            for set_field in datamodel.CLASSES["VDI"].derived:
                nv[set_field] = []
            nv.update({"uuid": str(uuidlib.uuid4()), "SR": sr, "physical_utilisation": used,
                       "location": str(uuidlib.uuid4()), "is_a_snapshot": False,
                       "snapshot_of": NULL, "current_operations": {}})
            new_vdi = db.create("VDI", nv)
            sraccount.charge(db, sr, used, int(vrec.get("virtual_size", 0)))
        nb.update({"uuid": str(uuidlib.uuid4()), "VM": vm, "VDI": new_vdi,
                   "currently_attached": False, "current_operations": {}, "metrics": NULL})
        db.create("VBD", nb)
    for vif in list(rec.get("VIFs", [])):
        irec = db.find("VIF", vif)
        if irec is None:
            continue
        ni = copy.deepcopy(irec)
        ni.update({"uuid": str(uuidlib.uuid4()), "VM": vm, "MAC": new_mac(),
                   "currently_attached": False, "current_operations": {}, "metrics": NULL})
        db.create("VIF", ni)
    return vm


def _clone_common(ctx: CallContext, vm: str, new_name: str, op: str, full: bool, sr: str) -> str:
    """The source carries the operation in current_operations while it runs,
    as on xapi: clones and copies of one template may overlap, a destroy may not."""
    db = ctx.db
    with db.lock:
        rec = db.get("VM", vm)
        check_operation(vm, rec, op, ("halted",))
        if sr and sr != NULL:
            db.get("SR", sr)
        windows = guest_os(rec).windows
        op_key = operation_key(ctx)
        set_operation(db, "VM", vm, op_key, op)
    try:
        timing = ctx.farm.timing
        total = timing.for_os(timing.clone_secs, windows)
        ctx.sleep(total / 2)
        ctx.progress(0.5)
        ctx.sleep(total / 2)
        with db.lock:
            set_operation(db, "VM", vm, op_key, None)
            check_operation(vm, db.get("VM", vm), op, ("halted",))
            return clone_vm(ctx, vm, new_name, full, sr)
    finally:
        with db.lock:
            set_operation(db, "VM", vm, op_key, None)


def vm_clone(ctx: CallContext, vm: str, new_name: str) -> str:
    return _clone_common(ctx, vm, new_name, "clone", False, NULL)


def vm_copy(ctx: CallContext, vm: str, new_name: str, sr: str) -> str:
    return _clone_common(ctx, vm, new_name, "copy", True, sr)


def _parse_disks(spec: str) -> list[dict[str, str]]:
    try:
        root = ET.fromstring(spec)
    except ET.ParseError as exc:
        raise XapiError("INVALID_VALUE", "disks", spec) from exc
    return [dict(d.attrib) for d in root.iter("disk")]


def vm_provision(ctx: CallContext, vm: str) -> None:
    db = ctx.db
    with db.lock:
        rec = db.get("VM", vm)
        check_operation(vm, rec, "provision", ("halted",))
        if not rec.get("is_a_template"):
            raise XapiError("PROVISION_ONLY_ALLOWED_ON_TEMPLATE")
        db.modify("VM", vm, {"is_a_template": False})
        oc = rec.get("other_config") or {}
        disks = _parse_disks(oc["disks"]) if oc.get("disks") else []
        created: list[tuple[str, str]] = []
        sr_changes: list[tuple[str, int]] = []
        try:
            for d in disks:
                sr_uuid = d.get("sr", "")
                try:
                    sr = db.by_uuid("SR", sr_uuid) if sr_uuid else None
                except XapiError:
                    sr = None
                if sr is None:
                    raise XapiError("UUID_INVALID", "sr", sr_uuid)
                size = int(d.get("size", "0") or 0)
                sraccount.assert_room(db, sr, size)
                vtype = d.get("type", "system") or "system"
                vdi = db.create("VDI", {
                    "name_label": d.get("device", "0"),
                    "name_description": "Created by template provisioner",
                    "SR": sr, "virtual_size": size, "physical_utilisation": size,
                    "type": vtype, "sm_config": {"vmhint": rec["uuid"]},
                    "location": str(uuidlib.uuid4()), "managed": True,
                    "allowed_operations": ["clone", "copy", "resize", "snapshot", "destroy"],
                })
                created.append(("VDI", vdi))
                sraccount.charge(db, sr, size, size)
                sr_changes.append((sr, size))
                vbd = db.create("VBD", {
                    "VM": vm, "VDI": vdi, "userdevice": d.get("device", "0"),
                    "bootable": d.get("bootable", "false") == "true", "mode": "RW",
                    "type": "Disk", "unpluggable": vtype != "system",
                    "other_config": {"owner": ""}, "empty": False,
                })
                created.append(("VBD", vbd))
        except Exception:  # any failure, not only XAPI's: nothing it made may stay
            for cls, ref in reversed(created):
                db.destroy(cls, ref)
            for sr, size in sr_changes:
                sraccount.release(db, sr, size, size)
            raise
        oc = dict(db.get("VM", vm).get("other_config") or {})
        oc.pop("disks", None)
        oc.pop("postinstall", None)
        db.modify("VM", vm, {"other_config": oc})
