"""VDI.resize, with xapi's checks in xapi's order.

[read] xen-api `ocaml/xapi/xapi_vdi.ml` `check_operation_error`: another
operation on the VDI, then an SR with no attached PBD (`SR_NO_PBDS`), then any
VBD of the VDI attached or reserved (`VDI_IN_USE [vdi, "resize"]`), then an SR
whose driver cannot resize (`SR_OPERATION_NOT_SUPPORTED`). The storage manager
then refuses to shrink a disk and, on thick-provisioned (LVM) SRs, to grow one
beyond the free space. [inferred] the SM error codes: `VDISize` (79) and
`SRNoSpace` (44), as SR_BACKEND_FAILURE_<n>.
"""

from __future__ import annotations

from . import sraccount
from .context import CallContext
from .db import NULL
from .storageops import check_vbds_idle, sr_plugged
from .wire import XapiError

THICK_SR_TYPES = frozenset({"lvm", "lvmoiscsi", "lvmohba", "lvmofcoe"})


def vdi_resize(ctx: CallContext, vdi: str, size: int | str) -> None:
    db = ctx.db
    new_size = int(size)
    with db.lock:
        rec = db.get("VDI", vdi)
        if rec.get("current_operations"):
            raise XapiError("OTHER_OPERATION_IN_PROGRESS", "VDI", vdi)
        sr = rec.get("SR", NULL)
        srrec = db.get("SR", sr)
        if not sr_plugged(db, srrec):
            raise XapiError("SR_NO_PBDS", sr)
        check_vbds_idle(db, vdi, rec, "resize")
        if "vdi_resize" not in (srrec.get("allowed_operations") or []):
            raise XapiError("SR_OPERATION_NOT_SUPPORTED", sr)
        old_size = int(rec.get("virtual_size", 0))
        if new_size < old_size:
            raise XapiError("SR_BACKEND_FAILURE_79", "",
                            "VDI Invalid size [opterr=shrinking not allowed]", "")
        grow = new_size - old_size
        thick = srrec.get("type") in THICK_SR_TYPES
        if thick:
            sraccount.assert_room(db, sr, grow)
        sraccount.charge(db, sr, grow if thick else 0, grow)
        vdi_changes: dict[str, int] = {"virtual_size": new_size}
        if thick:
            vdi_changes["physical_utilisation"] = int(rec.get("physical_utilisation", 0)) + grow
        db.modify("VDI", vdi, vdi_changes)
