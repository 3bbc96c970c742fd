"""What VBDs and VIFs share: being in use, being plugged with their VM, and
their destruction with their metrics record."""

from __future__ import annotations

from typing import Any

from .db import NULL, Database
from .deviceops import refresh_vm_devices
from .wire import XapiError


def in_use(rec: dict[str, Any]) -> bool:
    """Attached or reserved: xapi's test for a device in use."""
    return bool(rec.get("currently_attached") or rec.get("reserved"))


def destroy_device(db: Database, cls: str, ref: str) -> None:
    """Destroy a VBD or VIF and its metrics record."""
    db.discard(f"{cls}_metrics", db.tables[cls][ref].get("metrics", NULL))
    db.destroy(cls, ref)


def set_attached(db: Database, vm_rec: dict[str, Any], attached: bool) -> None:
    """Plug or unplug every VBD and VIF of a VM, as its domain starts or
    stops, and recompute what each device allows in the VM's new state."""
    for cls, field in (("VBD", "VBDs"), ("VIF", "VIFs")):
        for ref in vm_rec.get(field, []):
            if ref in db.tables[cls]:
                db.modify(cls, ref, {"currently_attached": attached})
    refresh_vm_devices(db, vm_rec)


def check_unplugged(db: Database, cls: str, ref: str) -> dict[str, Any]:
    """The device's record, or OPERATION_NOT_ALLOWED while it is in use."""
    rec = db.get(cls, ref)
    if in_use(rec):
        vm = db.find("VM", rec.get("VM", NULL))
        raise XapiError("OPERATION_NOT_ALLOWED", f"{cls} '{rec['uuid']}' still attached to "
                        f"'{vm['uuid'] if vm else rec.get('VM', NULL)}'")
    return rec
