"""xapi's checks before a VM operation, in xapi's order (see
xapi-reference.md, "Error semantics"), and the current_operations bookkeeping
that makes concurrent operations visible to them."""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from .context import CallContext
from .db import NULL, Database
from .wire import XapiError


def state_of(rec: dict[str, Any]) -> str:
    """The power state in the lower case xapi's error parameters use."""
    return str(rec["power_state"]).lower()


# Operations xapi lets run side by side: the long copies, the snapshots.
_CONCURRENT_GROUPS = ({"clone", "copy", "export"}, {"snapshot", "checkpoint"}, {"get_boot_record"})
_TEMPLATE_OPS = {"changing_dynamic_range", "changing_static_range", "changing_memory_limits",
                 "changing_shadow_memory", "changing_VCPUs", "clone", "copy", "export",
                 "metadata_export", "provision"}
_SNAPSHOT_OPS = {"revert", "clone", "copy", "export", "destroy", "hard_shutdown", "metadata_export"}
_CONTROL_DOMAIN_OPS = {"data_source_op", "changing_memory_live", "awaiting_memory_live",
                       "metadata_export", "changing_dynamic_range", "changing_memory_limits",
                       "changing_static_range", "start", "start_on", "changing_VCPUs", "destroy"}
_MOBILITY_OPS = {"suspend", "checkpoint", "pool_migrate", "migrate_send"}


def truthy(value: Any) -> bool:
    """A flag from a string map (platform, other_config), read as xapi does."""
    return str(value).lower() in ("1", "true")


def _allowed_concurrently(op: str, current: list[str]) -> bool:
    """xapi's rule for an operation requested while others are under way."""
    if any(op in group and all(c in group for c in current) for group in _CONCURRENT_GROUPS):
        return True
    if op == "hard_shutdown":
        return "hard_shutdown" not in current
    if op == "hard_reboot":
        return not set(current) & {"hard_shutdown", "hard_reboot"}
    return False


def check_operation(vm: str, rec: dict[str, Any], op: str, allowed: tuple[str, ...],
                  strict: bool = True, db: Database | None = None) -> None:
    """xapi's VM operation check, in its order: blocked, power state, other
    operations under way, template, snapshot, mobility, control domain,
    (given the database) the guest's support and the disks' on-boot mode,
    PCI/vGPU/USB devices, appliance."""
    blocked = rec.get("blocked_operations") or {}
    if op in blocked:
        raise XapiError("OPERATION_BLOCKED", vm, blocked[op])
    if state_of(rec) not in allowed:
        raise XapiError("VM_BAD_POWER_STATE", vm, ", ".join(allowed), state_of(rec))
    ops = rec.get("current_operations") or {}
    if ops and not _allowed_concurrently(op, list(ops.values())):
        task, other = next(iter(ops.items()))
        raise XapiError("OTHER_OPERATION_IN_PROGRESS", "VM", vm, other, task)
    snapshot = bool(rec.get("is_a_snapshot"))
    if rec.get("is_a_template") and not snapshot:
        default_tpl = bool(rec.get("is_default_template")) or truthy(
            (rec.get("other_config") or {}).get("default_template", "false"))
        if op not in _TEMPLATE_OPS and not (op in ("destroy", "migrate_send") and not default_tpl):
            raise XapiError("VM_IS_TEMPLATE", vm, op)
    if snapshot and op not in _SNAPSHOT_OPS:
        raise XapiError("VM_IS_SNAPSHOT", vm, op)
    if op == "revert" and not snapshot:
        raise XapiError("REVERT_ONLY_ALLOWED_ON_SNAPSHOT")
    if op in _MOBILITY_OPS and strict:
        platform = rec.get("platform") or {}
        if truthy(platform.get("nomigrate", "false")) or truthy(
                platform.get("nested-virt", "false")):
            raise XapiError("VM_IS_IMMOBILE", vm)
    if rec.get("is_control_domain"):
        if op in ("changing_VCPUs", "destroy") and int(rec.get("domid", -1)) == 0:
            raise XapiError("OPERATION_NOT_ALLOWED", "This operation is not allowed on dom0")
        if op not in _CONTROL_DOMAIN_OPS:
            raise XapiError("OPERATION_NOT_ALLOWED",
                            "This operation is not allowed on a control domain")
    if db is not None:
        _check_guest_support(db, vm, rec, op, strict)
        if op in _RESET_DISK_OPS and _has_reset_disk(db, rec):
            raise XapiError("VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION")
    if op in _MOBILITY_OPS:
        if rec.get("attached_PCIs"):
            raise XapiError("VM_HAS_PCI_ATTACHED", vm)
        if rec.get("VGPUs"):
            raise XapiError("VM_HAS_VGPU", vm)
        if rec.get("VUSBs"):
            raise XapiError("VM_HAS_VUSBS", vm)
    if op == "make_into_template" and rec.get("appliance", NULL) not in ("", NULL):
        raise XapiError("VM_IS_PART_OF_AN_APPLIANCE", vm, rec["appliance"])


# Guest features an HVM guest without PV drivers must report for an operation
# (any one of them will do); `strict` ones are judged only before the call.
_GUEST_FEATURES = {
    "clean_shutdown": (("feature-shutdown", "feature-poweroff"), True),
    "clean_reboot": (("feature-shutdown", "feature-reboot"), True),
    "changing_VCPUs_live": (("feature-vcpu-hotplug",), False),
    "suspend": (("feature-suspend",), True),
    "checkpoint": (("feature-suspend",), True),
    "pool_migrate": (("feature-suspend",), True),
    "migrate_send": (("feature-suspend",), True),
}
_RESET_DISK_OPS = {"checkpoint", "snapshot", "suspend", "snapshot_with_quiesce"}


def _check_guest_support(db: Database, vm: str, rec: dict[str, Any], op: str,
                         strict: bool) -> None:
    """xapi: a running guest not known to have booted PV, without PV drivers,
    must report the feature the operation needs (VM_LACKS_FEATURE)."""
    need = _GUEST_FEATURES.get(op)
    if need is None or rec.get("power_state") != "Running" or (need[1] and not strict):
        return
    metrics = db.find("VM_metrics", rec.get("metrics", NULL))
    if metrics is not None and not metrics.get("hvm"):
        return
    gm = db.find("VM_guest_metrics", rec.get("guest_metrics", NULL))
    if has_pv_drivers(gm):
        return
    other = (gm or {}).get("other") or {}
    if not any(other.get(feature) == "1" for feature in need[0]):
        raise XapiError("VM_LACKS_FEATURE", vm)


def has_pv_drivers(gm: dict[str, Any] | None) -> bool:
    """xapi's test: the guest reported a PV driver version (major and minor)."""
    version = (gm or {}).get("PV_drivers_version") or {}
    return "major" in version and "minor" in version


def _has_reset_disk(db: Database, rec: dict[str, Any]) -> bool:
    """A disk of the VM is reset at each boot (sm_config on_boot=reset)."""
    for vbd in rec.get("VBDs", []):
        vdi = db.find("VDI", (db.find("VBD", vbd) or {}).get("VDI", NULL))
        if vdi is not None and (vdi.get("sm_config") or {}).get("on_boot") == "reset":
            return True
    return False


def halted_or_dom0(rec: dict[str, Any]) -> tuple[str, ...]:
    """Power states for VCPU and static memory changes: a control domain may run."""
    return ("halted", "running") if rec.get("is_control_domain") else ("halted",)


def set_operation(db: Database, cls: str, ref: str, key: str, op: str | None) -> None:
    """Add (`op`) or remove (None) one entry of a record's current_operations."""
    rec = db.find(cls, ref)
    if rec is None:
        return
    cur = dict(rec.get("current_operations") or {})
    if op is None:
        cur.pop(key, None)
    else:
        cur[key] = op
    db.modify(cls, ref, {"current_operations": cur})


def operation_key(ctx: CallContext) -> str:
    """An operation's key in current_operations: its task, as on xapi, or a
    reference of its own for a synchronous call."""
    return ctx.task or f"OpaqueRef:{uuidlib.uuid4()}"
