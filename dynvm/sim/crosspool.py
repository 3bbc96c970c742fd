"""Cross-pool migration with storage motion: `host.migrate_receive` on the
destination pool, `VM.assert_can_migrate` and `VM.migrate_send` on the source.

As on xapi: the destination answers a token map (`SM`, `host`, `xenops`,
`session_id`, `master`) made with a new session of its own; the source reaches
the destination through the token's `master` address and session (a
destination that does not answer is CANNOT_CONTACT_HOST), checks the move in
xapi's terms (`crosschecks`; at most three storage migrations at once per host), copies
the disks onto the mapped SRs (the copies exist on the destination while they
are made), then moves the VM: it appears in the destination pool with its uuid,
other_config, sizes and guest, its disks on the new VDIs and its VIFs on the
mapped networks, and disappears from the source with its old disks.

The steps the source takes on the destination are counted there under xapi's
names (`SR.scan` after each disk, `VM.import` for the metadata,
`VM.pool_migrate_complete` at the end), so a test can fail or hold one of them
(`Farm.fail_next`, `Farm.hold`). A move that fails or is cancelled before the
VM moves leaves it where it was, running, and removes the copies; the VM is
never in both pools, nor in neither.

Not modelled: intra-pool storage motion (a destination host of the same pool
is refused with NOT_IMPLEMENTED unless every disk stays on its SR, which is a
plain live migration), `copy` mode, suspended VMs, snapshots' disks.
"""

from __future__ import annotations

import contextlib
import uuid as uuidlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import sraccount
from .context import CallContext
from .crosschecks import Move, Remote, check, reach
from .db import NULL, Database
from .placement import host_free, needed_memory
from .vmchecks import check_operation, operation_key, set_operation, truthy
from .vmpower import destroy_vm, migrate
from .vmruntime import runtime
from .wire import XapiError

if TYPE_CHECKING:
    from .farm import SimPool

STORAGE_MIGRATES_MAX = 3  # xapi's with_migrate: TOO_MANY_STORAGE_MIGRATES beyond
COPY_STEPS = 10
# What a VM keeps when it lands: everything but the references of its source pool.
_NOT_CARRIED = ("VBDs", "VIFs", "consoles", "crash_dumps", "VTPMs", "VUSBs", "VGPUs",
                "attached_PCIs", "snapshots", "children", "parent", "snapshot_of", "metrics",
                "guest_metrics", "resident_on", "scheduled_to_be_resident_on", "affinity",
                "suspend_VDI", "suspend_SR", "current_operations", "allowed_operations",
                "appliance", "protection_policy", "snapshot_schedule", "blobs")


# ------------------------------------------------------------ destination side
def host_migrate_receive(ctx: CallContext, host: str, network: str,
                         options: dict[str, str]) -> dict[str, str]:
    """xapi: the host's PIF on `network` must have an address; a new session of the
    caller's user in this pool goes into the token."""
    db = ctx.db
    with db.lock:
        db.get("host", host)
        db.get("network", network)
        pif = next((p for p in db.tables["PIF"].values()
                    if p.get("network") == network and p.get("host") == host), None)
        if pif is None:
            raise XapiError("HOST_CANNOT_ATTACH_NETWORK", host, network)
        ip = str(pif.get("IP") or "")
        pif_ref = next(r for r, p in db.tables["PIF"].items() if p is pif)
    if not ip:
        raise XapiError("INTERFACE_HAS_NO_IP", pif_ref)
    user = ctx.session.user if ctx.session is not None else ctx.farm.user
    session = ctx.pool.sessions.login(ctx.pool.master, user, "", originator="migrate_receive",
                                      preauth=True)
    master = ctx.pool.master.address
    return {"SM": f"http://{ip}/services/SM?session_id={session}", "host": host,
            "xenops": f"http://{ip}/services/xenops?session_id={session}",
            "session_id": session, "master": f"http://{master}/"}


@contextlib.contextmanager
def _both(a: Database, b: Database, order: tuple[int, int]) -> Iterator[None]:
    """Both pools' locks, always taken in the farm's pool order (no deadlock between
    two moves in opposite directions)."""
    first, second = (a, b) if order[0] <= order[1] else (b, a)
    with first.lock, second.lock:
        yield


# ------------------------------------------------------------ source side
def _no_vgpus(vgpu_map: dict[str, str]) -> None:
    if vgpu_map:  # the simulator's VMs have none (VM_HAS_VGPU before any move)
        raise XapiError("NOT_IMPLEMENTED", "vGPU mapping is not modelled by the simulator")


def vm_assert_can_migrate(ctx: CallContext, vm: str, dest: dict[str, str], live: bool,
                          vdi_map: dict[str, str], vif_map: dict[str, str],
                          options: dict[str, str], vgpu_map: dict[str, str]) -> None:
    _no_vgpus(vgpu_map)
    if ctx.db.find("host", dest.get("host", NULL)) is not None:
        _intra_pool(ctx, vm, dest["host"], vdi_map, vif_map, options, dry_run=True)
        return
    remote = reach(ctx, dest)
    remote.step("VM.import")  # xapi's dry run of the metadata import
    with _both(ctx.db, remote.db, _order(ctx.pool, remote.pool)):
        check(ctx, remote, vm, dest, live, vdi_map, vif_map, options)


def vm_migrate_send(ctx: CallContext, vm: str, dest: dict[str, str], live: bool,
                    vdi_map: dict[str, str], vif_map: dict[str, str], options: dict[str, str],
                    vgpu_map: dict[str, str]) -> str:
    """The VM's reference in the destination pool."""
    _no_vgpus(vgpu_map)
    if ctx.db.find("host", dest.get("host", NULL)) is not None:
        return _intra_pool(ctx, vm, dest["host"], vdi_map, vif_map, options)
    remote = reach(ctx, dest)
    rt = runtime(ctx.pool)
    order = _order(ctx.pool, remote.pool)
    with _both(ctx.db, remote.db, order):
        move = check(ctx, remote, vm, dest, live, vdi_map, vif_map, options)
        src = move.rec.get("resident_on", NULL)
        with rt.lock:
            running = rt.storage_migrations.get(src, 0)
            if running >= STORAGE_MIGRATES_MAX:
                raise XapiError("TOO_MANY_STORAGE_MIGRATES", str(STORAGE_MIGRATES_MAX))
            rt.storage_migrations[src] = running + 1
        key = operation_key(ctx)
        set_operation(ctx.db, "VM", vm, key, "migrate_send")
        if move.memory:
            _adjust(remote.db, move.host, -move.memory)
    moved = False
    try:
        _copy_disks(ctx, remote, move)
        remote.step("VM.import")
        ctx.check_cancel()
        remote.step("VM.pool_migrate_complete")
        with _both(ctx.db, remote.db, order):
            new = _land(ctx, remote, move)
            moved = True
        return new
    finally:
        with rt.lock:
            rt.storage_migrations[src] -= 1
        if not moved:
            with _both(ctx.db, remote.db, order):
                _undo(ctx, remote, move, key)


def _order(a: SimPool, b: SimPool) -> tuple[int, int]:
    pools = a.farm.pools
    return pools.index(a), pools.index(b)


def _adjust(db: Database, host: str, delta: int) -> None:
    metrics, free = host_free(db, host)
    if metrics is not None:
        db.modify("host_metrics", metrics, {"memory_free": free + delta})


def _copy_disks(ctx: CallContext, remote: Remote, move: Move) -> None:
    """Each disk copied onto its SR (a new VDI there, counted while it is made)."""
    timing = ctx.farm.timing
    total = move.memory + sum(int(ctx.db.tables["VDI"].get(v, {}).get("physical_utilisation", 0))
                              for _, v, _ in move.disks)
    secs = timing.migrate_secs(total) if total else 0.0
    done = 0
    for _vbd, vdi, sr in move.disks:
        with remote.db.lock:
            vrec = ctx.db.get("VDI", vdi)
            physical = int(vrec.get("physical_utilisation", 0))
            sraccount.assert_room(remote.db, sr, physical)
            copy = remote.db.create("VDI", {
                "name_label": vrec.get("name_label", ""),
                "name_description": vrec.get("name_description", ""),
                "SR": sr, "virtual_size": int(vrec.get("virtual_size", 0)),
                "physical_utilisation": physical, "type": vrec.get("type", "system"),
                "sharable": False, "read_only": False, "managed": True,
                "other_config": dict(vrec.get("other_config") or {}),
                "sm_config": {}, "location": str(uuidlib.uuid4()),
            })
            sraccount.charge(remote.db, sr, physical, int(vrec.get("virtual_size", 0)))
            move.copies[vdi] = copy
        for _ in range(COPY_STEPS):
            ctx.sleep(secs * physical / max(total, 1) / COPY_STEPS)
        done += physical
        ctx.progress(0.9 * done / max(total, 1))
        remote.step("SR.scan")
    if move.memory:
        ctx.sleep(secs * move.memory / max(total, 1))


def _land(ctx: CallContext, remote: Remote, move: Move) -> str:
    """The VM as it is now, moved: created there, gone here (both locks held)."""
    db, rdb = ctx.db, remote.db
    rec = db.find("VM", move.vm)
    was = "running" if move.rec["power_state"] == "Running" else "halted"
    if rec is None or rec["power_state"] != move.rec["power_state"]:
        raise XapiError("VM_BAD_POWER_STATE", move.vm, was,
                        str(rec["power_state"]).lower() if rec else "halted")
    running = rec["power_state"] == "Running"
    fields = {k: v for k, v in rec.items() if k not in _NOT_CARRIED}
    new = rdb.create("VM", {**fields, "power_state": "Halted", "resident_on": NULL,
                            "domid": -1})
    metrics = db.find("VM_metrics", rec.get("metrics", NULL))
    rdb.modify("VM", new, {"metrics": rdb.create("VM_metrics", {
        k: v for k, v in (metrics or {}).items() if k != "uuid"})})
    for vbd, vdi, _sr in move.disks:
        b = db.get("VBD", vbd)
        rdb.create("VBD", {**{k: v for k, v in b.items()
                              if k not in ("uuid", "VM", "VDI", "metrics", "current_operations",
                                           "allowed_operations")},
                           "VM": new, "VDI": move.copies[vdi]})
    for vif, net in move.vifs:
        v = db.get("VIF", vif)
        rdb.create("VIF", {**{k: val for k, val in v.items()
                              if k not in ("uuid", "VM", "network", "metrics",
                                           "current_operations", "allowed_operations")},
                           "VM": new, "network": net})
    gm = db.find("VM_guest_metrics", rec.get("guest_metrics", NULL))
    _leave(ctx, move.vm, rec)
    if running:
        with_gm = rdb.create("VM_guest_metrics", {k: v for k, v in (gm or {}).items()
                                                  if k != "uuid"}) if gm else NULL
        rdb.modify("VM", new, {"power_state": "Running", "resident_on": move.host,
                               "domid": runtime(remote.pool).next_domid(),
                               "guest_metrics": with_gm})
        _guest_arrives(ctx, remote, move, new, gm)
    for vbd in rdb.get("VM", new).get("VBDs", []):
        rdb.modify("VBD", vbd, {"currently_attached": running})
    for vif in rdb.get("VM", new).get("VIFs", []):
        rdb.modify("VIF", vif, {"currently_attached": running})
    ctx.progress(1.0)
    return new


def _leave(ctx: CallContext, vm: str, rec: dict[str, Any]) -> None:
    """The VM and its old disks gone from the source, its memory given back."""
    db = ctx.db
    rt = runtime(ctx.pool)
    with rt.lock:
        held = rt.consumed.pop(vm, None)
    if held is None and rec["power_state"] == "Running":  # a guest the farm was built with
        held = (rec.get("resident_on", NULL), needed_memory(rec))
    if held is not None and held[0] in db.tables["host"]:
        _adjust(db, held[0], held[1])
    vdis = []
    for vbd in rec.get("VBDs", []):
        b = db.find("VBD", vbd)
        if b is not None and not b.get("empty") and b.get("type") != "CD":
            vdis.append(b.get("VDI", NULL))
    destroy_vm(ctx.pool, vm)  # its lease and guest port go with it
    for vdi in vdis:
        vrec = db.find("VDI", vdi)
        if vrec is not None:
            sraccount.release(db, vrec.get("SR", NULL), int(vrec.get("physical_utilisation", 0)),
                              int(vrec.get("virtual_size", 0)))
            db.destroy("VDI", vdi)


def _guest_arrives(ctx: CallContext, remote: Remote, move: Move, new: str,
                   gm: dict[str, Any] | None) -> None:
    """The running guest carries on there: its memory held on the host, its image, its
    address (a live move keeps the guest's network configuration)."""
    src_rt, rt = runtime(ctx.pool), runtime(remote.pool)
    with src_rt.lock:
        image = src_rt.images.pop(move.vm, None)
    with rt.lock:
        rt.consumed[new] = (move.host, move.memory)
        if image is not None:
            rt.images[new] = image
    ip = ((gm or {}).get("networks") or {}).get("0/ip")
    if ip and not ip.startswith("169.254.") and ctx.farm.guest_ports is not None:
        with rt.lock:
            rt.ips[new] = ip
        ctx.farm.guest_ports.open(ip, rt.image(new))


def _undo(ctx: CallContext, remote: Remote, move: Move, key: str) -> None:
    """A move that did not happen: the copies and the memory held there given back."""
    for copy in move.copies.values():
        vrec = remote.db.find("VDI", copy)
        if vrec is not None:
            sraccount.release(remote.db, vrec.get("SR", NULL),
                              int(vrec.get("physical_utilisation", 0)),
                              int(vrec.get("virtual_size", 0)))
            remote.db.destroy("VDI", copy)
    if move.memory and move.host in remote.db.tables["host"]:
        _adjust(remote.db, move.host, move.memory)
    set_operation(ctx.db, "VM", move.vm, key, None)


def _intra_pool(ctx: CallContext, vm: str, host: str, vdi_map: dict[str, str],
                vif_map: dict[str, str], options: dict[str, str], dry_run: bool = False) -> str:
    """Within one pool: a live migration when no disk changes SR (xapi refuses a VIF map)."""
    if vif_map:
        raise XapiError("NOT_IMPLEMENTED", "VIF mapping is not supported for intra-pool migration")
    with ctx.db.lock:
        rec = ctx.db.get("VM", vm)
        for vbd in rec.get("VBDs", []):
            vdi = (ctx.db.find("VBD", vbd) or {}).get("VDI", NULL)
            sr = (ctx.db.find("VDI", vdi) or {}).get("SR")
            if vdi in vdi_map and vdi_map[vdi] != sr:
                raise XapiError("NOT_IMPLEMENTED",
                                "intra-pool storage motion is not modelled by the simulator")
        if dry_run:
            check_operation(vm, rec, "migrate_send", ("running",))
            return vm
    migrate(ctx, vm, host, force=truthy((options or {}).get("force", "false")))
    return vm
