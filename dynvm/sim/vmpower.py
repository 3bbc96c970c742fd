"""VM power operations: start, shutdown, reboot, pause, destroy and live
migration. Memory is taken from and given back to the hosts' metrics here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import sraccount
from .context import CallContext
from .db import NULL, Database, now_stamp
from .deviceops import is_hvm
from .devices import set_attached
from .guestboot import carry_on, release_address, schedule_boot
from .guests import guest_os
from .placement import (
    adjust_free,
    assert_can_see_srs,
    assert_host_usable,
    choose_host,
    host_free,
    needed_memory,
)
from .vmchecks import check_operation, operation_key, set_operation, state_of, truthy
from .vmruntime import runtime
from .wire import XapiError

if TYPE_CHECKING:
    from .farm import SimPool


def power_on(ctx: CallContext, vm: str, host: str | None, paused: bool, op: str,
             allowed: tuple[str, ...] = ("halted",)) -> tuple[int, bool]:
    """Give the VM a domain on `host` (or the host xapi would pick): its
    memory is taken from the host and its devices plugged. Answers the new
    boot generation and whether the guest is Windows; the caller decides
    what the guest does next (boot, or carry on after a resume)."""
    db = ctx.db
    rt = runtime(ctx.pool)
    with db.lock:
        rec = db.get("VM", vm)
        if host is not None:
            db.get("host", host)
        check_operation(vm, rec, op, allowed)
        needed = needed_memory(rec)
        if host is None:
            host = choose_host(ctx, rec, needed)
        else:
            assert_host_usable(ctx, host)
            assert_can_see_srs(db, vm, rec, host)
            _, free = host_free(db, host)
            if free < needed:
                raise XapiError("HOST_NOT_ENOUGH_FREE_MEMORY", needed, free)
        adjust_free(db, host, -needed)
        with rt.lock:
            rt.consumed[vm] = (host, needed)
        cpu = db.get("host", host).get("cpu_info") or {}
        db.modify("VM", vm, {
            "power_state": "Paused" if paused else "Running",
            "resident_on": host,
            # What a cross-pool live migration checks the destination's CPU against.
            "last_boot_CPU_flags": {"vendor": cpu.get("vendor", ""),
                                    "features": cpu.get("features_hvm", "")},
            "scheduled_to_be_resident_on": NULL,
            "domid": rt.next_domid(),
        })
        metrics = rec.get("metrics", NULL)
        if db.find("VM_metrics", metrics) is not None:
            hvm = is_hvm(rec)
            db.modify("VM_metrics", metrics, {
                "start_time": now_stamp(), "last_updated": now_stamp(),
                "memory_actual": int(rec.get("memory_dynamic_max") or 0),
                "VCPUs_number": int(rec.get("VCPUs_at_startup") or 0),
                "state": [], "hvm": hvm, "current_domain_type": "hvm" if hvm else "pv",
            })
        set_attached(db, rec, True)
        return rt.bump_boot(vm), guest_os(rec).windows


def _start(ctx: CallContext, vm: str, host: str | None, paused: bool, op: str) -> None:
    boot, windows = power_on(ctx, vm, host, paused, op)
    if not paused:
        schedule_boot(ctx.pool, vm, boot, windows)


def drop_suspend_image(db: Database, vm: str) -> None:
    """Destroy a suspended VM's memory image and give its SR the space back."""
    rec = db.get("VM", vm)
    vdi = rec.get("suspend_VDI", NULL)
    vrec = db.find("VDI", vdi)
    if vrec is not None:
        sraccount.release(db, vrec.get("SR", NULL), int(vrec.get("physical_utilisation", 0)),
                          int(vrec.get("virtual_size", 0)))
        db.destroy("VDI", vdi)
    db.modify("VM", vm, {"suspend_VDI": NULL})


def halt(pool: SimPool, vm: str) -> None:
    """Power a VM off: memory back to its host, guest metrics and lease gone."""
    db = pool.db
    rt = runtime(pool)
    with db.lock:
        rec = db.get("VM", vm)
        if rec["power_state"] == "Suspended":
            drop_suspend_image(db, vm)
        rt.bump_boot(vm)
        with rt.lock:
            held = rt.consumed.pop(vm, None)
        host = rec.get("resident_on", NULL)
        if held is not None:
            host, amount = held
        else:
            amount = needed_memory(rec)
        if host in db.tables["host"]:
            adjust_free(db, host, amount)
        gm = rec.get("guest_metrics", NULL)
        db.modify("VM", vm, {"power_state": "Halted", "resident_on": NULL, "domid": -1,
                             "guest_metrics": NULL,
                             "scheduled_to_be_resident_on": NULL})
        db.discard("VM_guest_metrics", gm)
        metrics = rec.get("metrics", NULL)
        if db.find("VM_metrics", metrics) is not None:
            db.modify("VM_metrics", metrics, {"memory_actual": 0, "VCPUs_number": 0,
                                              "last_updated": now_stamp()})
        set_attached(db, rec, False)
        release_address(pool, vm)


def vm_start(ctx: CallContext, vm: str, start_paused: bool = False, force: bool = False) -> None:
    _start(ctx, vm, None, start_paused, "start")


def vm_start_on(ctx: CallContext, vm: str, host: str, start_paused: bool = False,
                force: bool = False) -> None:
    _start(ctx, vm, host, start_paused, "start_on")


def vm_clean_shutdown(ctx: CallContext, vm: str) -> None:
    with ctx.db.lock:
        check_operation(vm, ctx.db.get("VM", vm), "clean_shutdown", ("running",))
        halt(ctx.pool, vm)


def vm_hard_shutdown(ctx: CallContext, vm: str) -> None:
    with ctx.db.lock:
        check_operation(vm, ctx.db.get("VM", vm), "hard_shutdown", ("paused", "suspended", "running"))
        halt(ctx.pool, vm)


def _reboot(ctx: CallContext, vm: str, op: str, allowed: tuple[str, ...]) -> None:
    db = ctx.db
    rt = runtime(ctx.pool)
    with db.lock:
        rec = db.get("VM", vm)
        check_operation(vm, rec, op, allowed)
        gm = rec.get("guest_metrics", NULL)
        release_address(ctx.pool, vm)
        db.modify("VM", vm, {"guest_metrics": NULL, "power_state": "Running"})
        db.discard("VM_guest_metrics", gm)
        boot = rt.bump_boot(vm)
        windows = guest_os(rec).windows
    schedule_boot(ctx.pool, vm, boot, windows)


def vm_clean_reboot(ctx: CallContext, vm: str) -> None:
    _reboot(ctx, vm, "clean_reboot", ("running",))


def vm_hard_reboot(ctx: CallContext, vm: str) -> None:
    _reboot(ctx, vm, "hard_reboot", ("paused", "running"))


def vm_pause(ctx: CallContext, vm: str) -> None:
    with ctx.db.lock:
        check_operation(vm, ctx.db.get("VM", vm), "pause", ("running",))
        ctx.db.modify("VM", vm, {"power_state": "Paused"})


def vm_unpause(ctx: CallContext, vm: str) -> None:
    with ctx.db.lock:
        rec = ctx.db.get("VM", vm)
        check_operation(vm, rec, "unpause", ("paused",))
        ctx.db.modify("VM", vm, {"power_state": "Running"})
        # New boot generation: steps still pending from before the pause are
        # dropped, and whichever one the guest had not reached is scheduled anew.
        boot = runtime(ctx.pool).bump_boot(vm)
        windows = guest_os(rec).windows
    carry_on(ctx.pool, vm, boot, windows)


def destroy_vm(pool: SimPool, vm: str) -> None:
    """Remove a VM with its VBDs, VIFs and metrics (its disks stay, as on xapi)."""
    db = pool.db
    rt = runtime(pool)
    with db.lock:
        rec = db.get("VM", vm)
        for cls, field in (("VBD", "VBDs"), ("VIF", "VIFs")):
            for ref in list(rec.get(field, [])):
                db.discard(cls, ref)
        for cls, field in (("VM_metrics", "metrics"), ("VM_guest_metrics", "guest_metrics")):
            db.discard(cls, rec.get(field, NULL))
        db.destroy("VM", vm)
        release_address(pool, vm)
        with rt.lock:
            rt.boots.pop(vm, None)
            rt.consumed.pop(vm, None)
            rt.images.pop(vm, None)


def vm_destroy(ctx: CallContext, vm: str) -> None:
    with ctx.db.lock:
        check_operation(vm, ctx.db.get("VM", vm), "destroy", ("halted", "suspended"))
        destroy_vm(ctx.pool, vm)


MIGRATE_STEPS = 10


def migrate(ctx: CallContext, vm: str, host: str, force: bool = False) -> None:
    """Live migration: the target's memory is reserved at once, the copy takes
    simulated time in proportion to the VM's memory, and only then does the VM
    change host. It stays Running throughout; a cancelled task or a VM halted
    meanwhile gives the reservation back."""
    db = ctx.db
    rt = runtime(ctx.pool)
    with db.lock:
        rec = db.get("VM", vm)
        db.get("host", host)
        check_operation(vm, rec, "pool_migrate", ("running",), strict=not force)
        assert_host_usable(ctx, host)
        src = rec.get("resident_on", NULL)
        if src == host:
            return
        assert_can_see_srs(db, vm, rec, host)
        with rt.lock:
            held = rt.consumed.get(vm)
        amount = held[1] if held else needed_memory(rec)
        _, free = host_free(db, host)
        if free < amount:
            raise XapiError("HOST_NOT_ENOUGH_FREE_MEMORY", amount, free)
        adjust_free(db, host, -amount)
        op_key = operation_key(ctx)
        set_operation(db, "VM", vm, op_key, "pool_migrate")
        db.modify("VM", vm, {"scheduled_to_be_resident_on": host})
    moved = False
    timing = ctx.farm.timing
    with rt.lock:
        for h in (src, host):
            rt.migrations[h] = rt.migrations.get(h, 0) + 1
    try:
        # Each step is paced by the links' load at that moment: migrations
        # that run side by side on one host share its bandwidth.
        ctx.sleep(timing.scaled(timing.migrate_base_secs))
        for step in range(1, MIGRATE_STEPS + 1):
            with rt.lock:
                streams = max(rt.migrations.get(src, 1), rt.migrations.get(host, 1))
            copy = timing.migrate_secs(amount, streams) - timing.scaled(timing.migrate_base_secs)
            ctx.sleep(copy / MIGRATE_STEPS)
            ctx.progress(step / (MIGRATE_STEPS + 1))
        with db.lock:
            current = db.find("VM", vm)
            with rt.lock:
                held = rt.consumed.get(vm)
            where = held[0] if held else (current or {}).get("resident_on")
            if current is None or current["power_state"] != "Running" or where != src:
                raise XapiError("VM_BAD_POWER_STATE", vm, "running",
                                state_of(current) if current else "halted")
            if src in db.tables["host"]:
                adjust_free(db, src, amount)
            with rt.lock:
                rt.consumed[vm] = (host, amount)
            db.modify("VM", vm, {"resident_on": host, "domid": rt.next_domid(),
                                 "scheduled_to_be_resident_on": NULL})
            moved = True
    finally:
        with rt.lock:
            for h in (src, host):
                rt.migrations[h] -= 1
        with db.lock:
            if not moved:
                if host in db.tables["host"]:
                    adjust_free(db, host, amount)
                if db.find("VM", vm) is not None:
                    db.modify("VM", vm, {"scheduled_to_be_resident_on": NULL})
            set_operation(db, "VM", vm, op_key, None)


def vm_pool_migrate(ctx: CallContext, vm: str, host: str, options: dict[str, str]) -> None:
    migrate(ctx, vm, host, force=truthy((options or {}).get("force", "false")))
