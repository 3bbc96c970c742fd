"""VBD and VIF operations on a VM's devices: hot-plug and unplug, CD eject
and insert, the device numbers a VM has free, and the allowed_operations
those rules give each device.

As in xapi, each device's operations are judged together: a table from
operation to the first error that applies to it (or none), built by rules in
xapi's order, so that `allowed_operations` and the error a call gets always
agree. Hot-plug into a running HVM guest needs its PV drivers (or the
guest's own claim of hot-plug support); a PV guest can always take it.
"""

from __future__ import annotations

from typing import Any

from .context import CallContext
from .db import NULL, Database
from .vmchecks import has_pv_drivers, state_of
from .wire import XapiError

VBD_OPS = ("attach", "eject", "unplug", "unplug_force", "insert", "plug", "pause", "unpause")
VIF_OPS = ("attach", "plug", "unplug")
_PARALLEL_VBD_OPS = ("pause", "unpause")
# VM operations under way during which a device may not be plugged or unplugged.
_VM_OPS_BLOCKING_PLUG = ("clean_shutdown", "hard_shutdown", "suspend", "pause")

Error = tuple[str, ...]


class _Table:
    """Operation -> first error; a later rule never overrides an earlier one."""

    def __init__(self, ops: tuple[str, ...]) -> None:
        self.errors: dict[str, Error | None] = dict.fromkeys(ops)

    def block(self, ops: tuple[str, ...], code: str, *params: str) -> None:
        for op in ops:
            if self.errors[op] is None:
                self.errors[op] = (code, *params)

    def allowed(self) -> list[str]:
        return [op for op, err in self.errors.items() if err is None]


def is_hvm(rec: dict[str, Any]) -> bool:
    """The VM boots HVM: its domain_type, or its HVM boot policy when that is unspecified."""
    dtype = rec.get("domain_type") or "unspecified"
    if dtype == "unspecified":
        return bool(rec.get("HVM_boot_policy"))
    return dtype in ("hvm", "pv_in_pvh", "pvh")


def _hotplug_rule(table: _Table, vm: str, gm: dict[str, Any] | None, kind: str,
                  ops: tuple[str, ...]) -> None:
    """A running HVM guest takes hot-plug only with its drivers' support."""
    claim = (gm or {}).get(f"can_use_hotplug_{kind}", "unspecified")
    if gm is not None and claim == "yes":
        return
    if gm is not None and claim == "no":
        table.block(ops, "OPERATION_NOT_ALLOWED",
                    f"VM states it does not support {kind.upper()} hotplug.")
        return
    if gm is not None and gm.get("PV_drivers_detected"):
        return
    if not has_pv_drivers(gm):
        table.block(ops, "VM_MISSING_PV_DRIVERS", vm)


def _power_rules(table: _Table, ref: str, dev: dict[str, Any], vm: str, vmrec: dict[str, Any],
                 unplug_ops: tuple[str, ...], extra_offline: tuple[str, ...] = ()) -> None:
    """Plug and unplug need a running VM and a device in the other state."""
    plugged = bool(dev.get("currently_attached") or dev.get("reserved"))
    if vmrec["power_state"] == "Running":
        if plugged:
            table.block(("plug",), "DEVICE_ALREADY_ATTACHED", ref)
        else:
            table.block(unplug_ops, "DEVICE_ALREADY_DETACHED", ref)
    else:
        table.block(("plug", *unplug_ops, *extra_offline), "VM_BAD_POWER_STATE", vm, "running",
                    state_of(vmrec))
    for task_op in (vmrec.get("current_operations") or {}).values():
        if task_op in _VM_OPS_BLOCKING_PLUG:
            table.block(("plug", "unplug"), "OPERATION_NOT_ALLOWED",
                        f"Current operation on VM:{vm} is {task_op}")


def _guest_metrics(db: Database, vmrec: dict[str, Any]) -> dict[str, Any] | None:
    return db.find("VM_guest_metrics", vmrec.get("guest_metrics", NULL))


def _vbd_current_ops(table: _Table, ref: str, rec: dict[str, Any]) -> None:
    current = list((rec.get("current_operations") or {}).values())
    if not current:
        return
    first = current[0]
    table.block(tuple(op for op in VBD_OPS if op not in _PARALLEL_VBD_OPS),
                "OTHER_OPERATION_IN_PROGRESS", "VBD", ref, first)
    if any(op not in _PARALLEL_VBD_OPS for op in current):
        table.block(("pause",), "OTHER_OPERATION_IN_PROGRESS", "VBD", ref, first)
    if any(op not in ("attach", *_PARALLEL_VBD_OPS) for op in current):
        table.block(("unpause",), "OTHER_OPERATION_IN_PROGRESS", "VBD", ref, first)


def _vbd_disk_rules(table: _Table, db: Database, ref: str, rec: dict[str, Any],
                    sharing: bool) -> None:
    """The disk behind a full VBD: managed, idle, and not written by another VM."""
    vdi = rec.get("VDI", NULL)
    vrec = db.find("VDI", vdi)
    if vrec is None:
        return
    if not vrec.get("managed", True):
        table.block(VBD_OPS, "VDI_NOT_MANAGED", ref)
    busy = [op for op in (vrec.get("current_operations") or {}).values()
            if op not in ("mirror", "copy")]
    if busy:
        table.block(("attach", "plug", "insert"), "OTHER_OPERATION_IN_PROGRESS", "VDI", vdi, busy[0])
    if rec.get("currently_attached") or not sharing:
        return
    others = []
    for other in vrec.get("VBDs", []):
        orec = db.find("VBD", other)
        if other == ref or orec is None:
            continue
        ovm = db.find("VM", orec.get("VM", NULL)) or {}
        if ovm.get("power_state") == "Suspended" or ovm.get("is_control_domain"):
            continue
        if orec.get("currently_attached") or orec.get("reserved") or orec.get("current_operations"):
            others.append(orec)
    need_write = rec.get("mode") == "RW"
    vmrec = db.find("VM", rec.get("VM", NULL)) or {}
    if (not vrec.get("sharable") and not vmrec.get("is_control_domain")
            and (any(o.get("mode") == "RW" for o in others) or (need_write and others))):
        table.block(("attach", "insert", "plug"), "VDI_IN_USE", vdi)
    if need_write and vrec.get("read_only"):
        table.block(("attach", "insert", "plug"), "VDI_READONLY", vdi)


def vbd_table(db: Database, ref: str, sharing: bool = True) -> _Table:
    """xapi's VBD rules, in xapi's order (sharing checks only when asked)."""
    rec = db.get("VBD", ref)
    vm = rec.get("VM", NULL)
    vmrec = db.get("VM", vm)
    table = _Table(VBD_OPS)
    _vbd_current_ops(table, ref, rec)
    if not rec.get("unpluggable", True):
        table.block(("unplug", "unplug_force"), "VBD_NOT_UNPLUGGABLE", ref)
    if rec.get("type") != "CD":
        table.block(("insert", "eject"), "VBD_NOT_REMOVABLE_MEDIA", ref)
    if rec.get("empty"):
        table.block(("eject",), "VBD_IS_EMPTY", ref)
    else:
        table.block(("insert",), "VBD_NOT_EMPTY", ref)
    offline = () if vmrec["power_state"] == "Paused" else _PARALLEL_VBD_OPS
    _power_rules(table, ref, rec, vm, vmrec, ("unplug", "unplug_force"), offline)
    if vmrec["power_state"] == "Running" and is_hvm(vmrec):
        plug_ops = ("plug", "unplug", "unplug_force")
        _hotplug_rule(table, vm, _guest_metrics(db, vmrec), "vbd", plug_ops)
        if rec.get("type") == "CD":
            table.block(plug_ops, "OPERATION_NOT_ALLOWED",
                        "HVM CDROMs cannot be hotplugged/unplugged, only inserted or ejected")
    if rec.get("type") == "CD" and vmrec["power_state"] == "Suspended":
        table.block(("insert", "eject"), "VM_BAD_POWER_STATE", vm, "halted, running", "suspended")
    if not rec.get("empty"):
        _vbd_disk_rules(table, db, ref, rec, sharing)
    return table


def vif_table(db: Database, ref: str) -> _Table:
    """xapi's VIF rules, in xapi's order."""
    rec = db.get("VIF", ref)
    vm = rec.get("VM", NULL)
    vmrec = db.get("VM", vm)
    table = _Table(VIF_OPS)
    current = list((rec.get("current_operations") or {}).values())
    if current:
        table.block(VIF_OPS, "OTHER_OPERATION_IN_PROGRESS", "VIF", ref, current[0])
    _power_rules(table, ref, rec, vm, vmrec, ("unplug",))
    metrics = db.find("VM_metrics", vmrec.get("metrics", NULL)) or {}
    if vmrec["power_state"] == "Running" and metrics.get("hvm"):
        _hotplug_rule(table, vm, _guest_metrics(db, vmrec), "vif", ("plug", "unplug"))
    return table


def refresh_allowed(db: Database, cls: str, ref: str) -> None:
    """Recompute a VBD's or VIF's allowed_operations (xapi skips the costly
    sharing checks here; a call still makes them)."""
    if db.find(cls, ref) is None:
        return
    table = vbd_table(db, ref, sharing=False) if cls == "VBD" else vif_table(db, ref)
    db.modify(cls, ref, {"allowed_operations": table.allowed()})


def refresh_vm_devices(db: Database, vmrec: dict[str, Any]) -> None:
    """Every device of a VM after its power state changed."""
    for cls, field in (("VBD", "VBDs"), ("VIF", "VIFs")):
        for ref in list(vmrec.get(field, [])):
            refresh_allowed(db, cls, ref)


def _apply(ctx: CallContext, cls: str, ref: str, op: str,
           changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check `op` against the device's rules, then make `changes`; answers the
    device's record as it was checked."""
    db = ctx.db
    with db.lock:
        table = vbd_table(db, ref) if cls == "VBD" else vif_table(db, ref)
        err = table.errors[op]
        if err is not None:
            raise XapiError(*err)
        rec = dict(db.tables[cls][ref])
        if changes:
            db.modify(cls, ref, changes)
            refresh_allowed(db, cls, ref)
        return rec


def _disk_letter(n: int) -> str:
    return chr(ord("a") + n) if n < 26 else chr(ord("a") + n // 26 - 1) + chr(ord("a") + n % 26)


# ------------------------------------------------------------------ VBD
def vbd_plug(ctx: CallContext, vbd: str) -> None:
    db = ctx.db
    with db.lock:
        rec = _apply(ctx, "VBD", vbd, "plug")
        if is_hvm(db.tables["VM"][rec["VM"]]) and rec.get("type") != "CD" and rec.get("mode") == "RO":
            raise XapiError("DISK_VBD_MUST_BE_READWRITE_FOR_HVM", vbd)
        changes: dict[str, Any] = {"currently_attached": True}
        user = str(rec.get("userdevice", ""))
        if not rec.get("device") and user.isdigit():
            changes["device"] = "xvd" + _disk_letter(int(user))
        _apply(ctx, "VBD", vbd, "plug", changes)


def vbd_unplug(ctx: CallContext, vbd: str) -> None:
    _apply(ctx, "VBD", vbd, "unplug", {"currently_attached": False})


def vbd_unplug_force(ctx: CallContext, vbd: str) -> None:
    _apply(ctx, "VBD", vbd, "unplug_force", {"currently_attached": False})


def vbd_eject(ctx: CallContext, vbd: str) -> None:
    """The CD leaves the drive: the VBD is empty and points at no disk."""
    _apply(ctx, "VBD", vbd, "eject", {"empty": True, "VDI": NULL})


def vbd_insert(ctx: CallContext, vbd: str, vdi: str) -> None:
    """A disk goes into an empty CD drive (xapi: the drive's rules, then the disk's)."""
    db = ctx.db
    with db.lock:
        _apply(ctx, "VBD", vbd, "insert")
        if not db.get("VDI", vdi).get("managed", True):
            raise XapiError("VDI_NOT_MANAGED", vdi)
        _apply(ctx, "VBD", vbd, "insert", {"empty": False, "VDI": vdi})


# ------------------------------------------------------------------ VIF
def vif_plug(ctx: CallContext, vif: str) -> None:
    _apply(ctx, "VIF", vif, "plug", {"currently_attached": True})


def vif_unplug(ctx: CallContext, vif: str) -> None:
    _apply(ctx, "VIF", vif, "unplug", {"currently_attached": False})


# -------------------------------------------------------- free devices
VIF_DEVICES = tuple(str(n) for n in range(7))
_VBD_PREFIXES = ("xvd", "hd", "sd")


def _disk_number(name: str) -> int | None:
    """The whole disk a userdevice or device name denotes (`2`, `xvdc`, `hdc`),
    None for a partition or a name that is no disk."""
    if name.isdigit():
        return int(name)
    for prefix in _VBD_PREFIXES:
        letters = name[len(prefix):] if name.startswith(prefix) else ""
        if letters.isalpha() and letters.islower() and 1 <= len(letters) <= 2:
            n = ord(letters[-1]) - ord("a")
            return n if len(letters) == 1 else (ord(letters[0]) - ord("a") + 1) * 26 + n
    return None


def vm_allowed_vbd_devices(ctx: CallContext, vm: str) -> list[str]:
    """Disk numbers a new VBD may take: 0-254 (255 for a control domain)
    less those the VM's VBDs use, by device or userdevice."""
    db = ctx.db
    with db.lock:
        rec = db.get("VM", vm)
        used: set[int] = set()
        for ref in rec.get("VBDs", []):
            brec = db.find("VBD", ref)
            for name in (brec or {}).get("device", ""), (brec or {}).get("userdevice", ""):
                n = _disk_number(str(name))
                if n is not None:
                    used.add(n)
        top = 255 if rec.get("is_control_domain") else 254
    return [str(n) for n in range(top + 1) if n not in used]


def vm_allowed_vif_devices(ctx: CallContext, vm: str) -> list[str]:
    """VIF device numbers 0-6 the VM does not use yet."""
    db = ctx.db
    with db.lock:
        rec = db.get("VM", vm)
        used = {(db.find("VIF", ref) or {}).get("device") for ref in rec.get("VIFs", [])}
    return [d for d in VIF_DEVICES if d not in used]
