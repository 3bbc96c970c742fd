"""VDI and VBD behaviours: VDI.create and VDI.destroy (with xapi's checks in
xapi's order), VBD.create and VBD.destroy."""

from __future__ import annotations

from typing import Any

from . import sraccount
from .context import CallContext
from .db import NULL, Database
from .deviceops import refresh_allowed
from .devices import check_unplugged, destroy_device, in_use
from .vmruntime import runtime
from .wire import XapiError


def sr_pbds(db: Database, srrec: dict[str, Any]) -> list[dict[str, Any]]:
    """The SR's PBD records."""
    return [db.tables["PBD"][p] for p in srrec.get("PBDs", []) if p in db.tables["PBD"]]


def sr_plugged(db: Database, srrec: dict[str, Any], host: str | None = None) -> bool:
    """Some host (or `host`) has a plugged PBD to the SR."""
    return any(p.get("currently_attached") and host in (None, p.get("host"))
               for p in sr_pbds(db, srrec))


def check_vbds_idle(db: Database, vdi: str, rec: dict[str, Any], op: str) -> None:
    """xapi: no VBD of the disk attached or reserved (VDI_IN_USE), then none
    with an operation under way. A halted VM's VBDs do not make it in use."""
    vbds = [db.tables["VBD"][v] for v in rec.get("VBDs", []) if v in db.tables["VBD"]]
    if any(in_use(b) for b in vbds):
        raise XapiError("VDI_IN_USE", vdi, op)
    if any(b.get("current_operations") for b in vbds):
        raise XapiError("OTHER_OPERATION_IN_PROGRESS", "VDI", vdi)


def _sr_has_feature(db: Database, sr: dict[str, Any], feature: str) -> bool:
    """The SR's SM driver offers `feature` (an SR type without an SM record is not judged)."""
    sms = [m for m in db.tables.get("SM", {}).values() if m.get("type") == sr.get("type")]
    if not sms:
        return True
    return any(feature in (m.get("features") or {}) or feature in (m.get("capabilities") or [])
               for m in sms)


def _ha_enabled(db: Database) -> bool:
    return any(p.get("ha_enabled") for p in db.tables["pool"].values())


def _check_vdi_destroy(db: Database, vdi: str, rec: dict[str, Any]) -> None:
    """xapi's VDI checks for `destroy`, in its order."""
    if any(op != "copy" for op in (rec.get("current_operations") or {}).values()):
        raise XapiError("OTHER_OPERATION_IN_PROGRESS", "VDI", vdi)
    check_vbds_idle(db, vdi, rec, "destroy")
    sr = rec.get("SR", NULL)
    srrec = db.get("SR", sr)
    if not _sr_has_feature(db, srrec, "VDI_DELETE"):
        raise XapiError("SR_OPERATION_NOT_SUPPORTED", sr)
    if srrec.get("type") == "udev":
        raise XapiError("VDI_IS_A_PHYSICAL_DEVICE", vdi)
    if srrec.get("is_tools_sr"):
        raise XapiError("SR_OPERATION_NOT_SUPPORTED", sr)
    if rec.get("type") == "rrd":
        raise XapiError("VDI_HAS_RRDS", vdi)
    if _ha_enabled(db) and rec.get("type") in ("ha_statefile", "redo_log"):
        raise XapiError("HA_IS_ENABLED")
    if not sr_plugged(db, srrec):
        raise XapiError("SR_HAS_NO_PBDS", sr)
    if not rec.get("managed", True):
        raise XapiError("VDI_NOT_MANAGED", vdi)


def vdi_destroy(ctx: CallContext, vdi: str) -> None:
    """Destroys the disk and then its (detached) VBDs, as xapi does: that is
    how `xe vm-uninstall` removes a halted VM's disks before the VM."""
    db = ctx.db
    with db.lock:
        rec = db.get("VDI", vdi)
        _check_vdi_destroy(db, vdi, rec)
        sraccount.release(db, rec.get("SR", NULL), int(rec.get("physical_utilisation", 0)),
                          int(rec.get("virtual_size", 0)))
        vbds = [v for v in rec.get("VBDs", []) if v in db.tables["VBD"]]
        db.destroy("VDI", vdi)
        rt = runtime(ctx.pool)
        with rt.lock:
            rt.vdi_data.pop(vdi, None)
        for vbd in vbds:
            destroy_device(db, "VBD", vbd)


def vbd_destroy(ctx: CallContext, vbd: str) -> None:
    with ctx.db.lock:
        check_unplugged(ctx.db, "VBD", vbd)
        destroy_device(ctx.db, "VBD", vbd)


def _valid_vbd_device(dev: str) -> bool:
    """xapi's userdevice rule: "autodetect", a number, or hd/sd/xvd + a-p (+ a number)."""
    if dev == "autodetect":
        return True
    for prefix in ("xvd", "sd", "hd"):
        if dev.startswith(prefix) and len(dev) > len(prefix) and "a" <= dev[len(prefix)] <= "p":
            rest = dev[len(prefix) + 1:]
            return rest == "" or rest.isdigit()
    return dev.isdigit()


def _free_device(db: Database, vm: str, cls: str, field: str) -> str:
    used = {db.tables[cls][r].get(field) for r in db.tables["VM"][vm].get(f"{cls}s", [])
            if r in db.tables[cls]}
    n = 0
    while str(n) in used:
        n += 1
    return str(n)


VBD_VDI_TYPES = ("system", "user", "ephemeral", "suspend", "crashdump", "metadata")


def vbd_create(ctx: CallContext, rec: dict[str, Any]) -> str:
    """xapi's VBD checks: CDs read-only, only CDs empty, a disk-like VDI, a
    valid and unused device; a new VBD is never attached (plug does that)."""
    db = ctx.db
    with db.lock:
        vm = rec.get("VM", NULL)
        db.get("VM", vm)
        fields = dict(rec)
        vtype, empty = fields.get("type", "Disk"), bool(fields.get("empty"))
        if vtype == "CD" and fields.get("mode", "RO") != "RO":
            raise XapiError("VBD_CDS_MUST_BE_READONLY")
        if vtype != "CD" and empty:
            raise XapiError("VBD_NOT_REMOVABLE_MEDIA", NULL)
        if not empty:
            vdi = fields.get("VDI", NULL)
            vtrec = db.get("VDI", vdi)
            if vtrec.get("type", "system") not in VBD_VDI_TYPES:
                raise XapiError("VDI_INCOMPATIBLE_TYPE", vdi, vtrec.get("type", ""))
        dev = str(fields.get("userdevice", ""))
        if not _valid_vbd_device(dev):
            raise XapiError("INVALID_DEVICE", dev)
        if dev == "autodetect":
            dev = _free_device(db, vm, "VBD", "userdevice")
        used = set()
        for other in db.tables["VM"][vm].get("VBDs", []):
            orec = db.find("VBD", other)
            if orec is not None:
                used |= {orec.get("userdevice"), orec.get("device")}
        if dev in used:
            raise XapiError("DEVICE_ALREADY_EXISTS", dev)
        fields.update({"userdevice": dev, "currently_attached": False})
        ref = db.create("VBD", fields)
        refresh_allowed(db, "VBD", ref)
        return ref


def vdi_create(ctx: CallContext, rec: dict[str, Any]) -> str:
    """xapi: the SR's driver must create VDIs and a host must have it plugged."""
    with ctx.db.lock:
        sr = rec.get("SR", NULL)
        srrec = ctx.db.get("SR", sr)
        if not _sr_has_feature(ctx.db, srrec, "VDI_CREATE"):
            raise XapiError("SR_OPERATION_NOT_SUPPORTED", sr)
        if not sr_plugged(ctx.db, srrec):
            raise XapiError("SR_HAS_NO_PBDS", sr)
        ref = ctx.db.create("VDI", {**rec, "managed": True, "missing": False})
        sraccount.charge(ctx.db, sr, int(rec.get("physical_utilisation", 0) or 0),
                         int(rec.get("virtual_size", 0) or 0))
        return ref
