"""VM.suspend and VM.resume / VM.resume_on, with xapi's checks in xapi's order.

A suspended VM has no domain: its memory is written to a suspend image, a
VDI of type `suspend` on the suspend SR, which takes space on that SR until
the VM resumes (the image is then destroyed) or is hard-shut-down. The SR is
the VM's `suspend_SR`, else the pool's `suspend_image_SR`, else the host's
`suspend_image_sr`, the first one its host reaches (VM_NO_SUSPEND_SR when
none does). The image is sized as xapi sizes it: static max x 1.2 x 1.05
plus 100 MiB. The guest keeps its DHCP lease while suspended but does not
answer on its address.
"""

from __future__ import annotations

from . import sraccount
from .context import CallContext
from .db import NULL, Database, now_stamp
from .devices import set_attached
from .guestboot import carry_on, close_guest_port
from .placement import adjust_free, needed_memory
from .storageops import sr_plugged
from .vmchecks import check_operation
from .vmpower import drop_suspend_image, power_on
from .vmruntime import runtime
from .wire import XapiError

MIB = 1 << 20


def suspend_image_bytes(static_max: int) -> int:
    """The size xapi gives a suspend image."""
    return int(static_max * 1.2 * 1.05) + 100 * MIB


def choose_suspend_sr(db: Database, vm: str, rec: dict[str, object]) -> str:
    """The first of the VM's, the pool's and the host's suspend SRs its host reaches."""
    host = str(rec.get("resident_on", NULL))
    pool = next(iter(db.tables["pool"].values()), {})
    hrec = db.find("host", host) or {}
    for sr in (rec.get("suspend_SR"), pool.get("suspend_image_SR"), hrec.get("suspend_image_sr")):
        srrec = db.find("SR", str(sr))
        if srrec is not None and any(
                (db.find("PBD", p) or {}).get("host") == host for p in srrec.get("PBDs", [])):
            return str(sr)
    raise XapiError("VM_NO_SUSPEND_SR", vm)


def vm_suspend(ctx: CallContext, vm: str) -> None:
    db = ctx.db
    rt = runtime(ctx.pool)
    with db.lock:
        rec = db.get("VM", vm)
        check_operation(vm, rec, "suspend", ("running",), db=db)
        sr = choose_suspend_sr(db, vm, rec)
        if not sr_plugged(db, db.get("SR", sr)):
            raise XapiError("SR_HAS_NO_PBDS", sr)
        size = suspend_image_bytes(int(rec.get("memory_static_max") or 0))
        sraccount.assert_room(db, sr, size)
        image = db.create("VDI", {
            "name_label": "Suspend image", "name_description": "Suspend image", "SR": sr,
            "virtual_size": size, "physical_utilisation": size, "type": "suspend",
            "sharable": False, "read_only": False, "managed": True, "missing": False,
            "sm_config": {"vmhint": rec["uuid"]},
        })
        sraccount.charge(db, sr, size, size)
        with rt.lock:
            held = rt.consumed.pop(vm, None)
        host, amount = held if held else (rec.get("resident_on", NULL), needed_memory(rec))
        if host in db.tables["host"]:
            adjust_free(db, host, amount)
        rt.bump_boot(vm)  # guest steps still pending belong to the domain that is gone
        db.modify("VM", vm, {"power_state": "Suspended", "suspend_VDI": image,
                             "resident_on": NULL, "scheduled_to_be_resident_on": NULL,
                             "domid": -1})
        metrics = rec.get("metrics", NULL)
        if db.find("VM_metrics", metrics) is not None:
            db.modify("VM_metrics", metrics, {"memory_actual": 0, "VCPUs_number": 0,
                                              "last_updated": now_stamp()})
        set_attached(db, rec, False)
        close_guest_port(ctx.pool, vm)


def _resume(ctx: CallContext, vm: str, host: str | None, paused: bool, op: str) -> None:
    boot, windows = power_on(ctx, vm, host, paused, op, ("suspended",))
    with ctx.db.lock:
        drop_suspend_image(ctx.db, vm)
    if not paused:
        carry_on(ctx.pool, vm, boot, windows)


def vm_resume(ctx: CallContext, vm: str, start_paused: bool = False,
              force: bool = False) -> None:  # noqa: V107 - XAPI's parameter (CPU checks)
    _resume(ctx, vm, None, start_paused, "resume")


def vm_resume_on(ctx: CallContext, vm: str, host: str, start_paused: bool = False,
                 force: bool = False) -> None:  # noqa: V107 - XAPI's parameter (CPU checks)
    _resume(ctx, vm, host, start_paused, "resume_on")
