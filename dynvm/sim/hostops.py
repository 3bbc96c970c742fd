"""session, task, host and pool behaviours."""

from __future__ import annotations

import threading
import uuid as uuidlib
from concurrent.futures import ThreadPoolExecutor

from .context import CallContext
from .db import NULL, now_stamp
from .placement import host_free, needed_memory, unreachable_sr
from .poolops import elect_successor
from .vmpower import halt, migrate
from .vmruntime import runtime
from .wire import DateTime, XapiError

# ----------------------------------------------------------------- session


def session_login(ctx: CallContext, uname: str, pwd: str,
                  version: str = "1.1",  # noqa: V107 - XAPI's parameter, not checked
                  originator: str = "") -> str:
    if not ctx.host.is_master:
        raise XapiError("HOST_IS_SLAVE", ctx.pool.master.address)
    return ctx.pool.sessions.login(ctx.host, uname, pwd, originator, preauth=ctx.local)


def session_slave_local_login(ctx: CallContext, uname: str, pwd: str = "") -> str:
    return ctx.pool.sessions.login(ctx.host, uname, pwd, "", local=True)


def session_logout(ctx: CallContext) -> None:
    assert ctx.session is not None
    ctx.pool.sessions.logout(ctx.session.ref)


def session_subjects(ctx: CallContext) -> list[str]:
    return []


# -------------------------------------------------------------------- task


def task_create(ctx: CallContext, label: str, description: str) -> str:
    """A pending task for work done outside an API call (an HTTP upload names it)."""
    ref = ctx.pool.tasks.create(label, ctx.host.ref)
    with ctx.db.lock:
        ctx.db.modify("task", ref, {"name_description": description})
    return ref


def task_cancel(ctx: CallContext, task: str) -> None:
    ctx.pool.tasks.cancel(task)


def task_destroy(ctx: CallContext, task: str) -> None:
    ctx.pool.tasks.destroy(task)


# -------------------------------------------------------------------- host


def _assert_live(ctx: CallContext, host: str) -> None:
    """xapi checks a host is live before forwarding a call to it (HOST_OFFLINE)."""
    rec = ctx.db.get("host", host)
    metrics = ctx.db.find("host_metrics", rec.get("metrics", NULL))
    sim = ctx.pool.host_by_ref(host)
    if (metrics is not None and not metrics.get("live", True)) or (sim is not None
                                                                   and not sim.online):
        raise XapiError("HOST_OFFLINE", host)


def host_disable(ctx: CallContext, host: str, auto_enable: bool = True) -> None:
    """`auto_enable` false: the host stays disabled after its next reboot.
    With HA on, xapi refuses a disable that breaks the failover plan (the
    simulator's plan: n enabled hosts survive n - 1 failures)."""
    with ctx.db.lock:
        rec = ctx.db.get("host", host)
        pool = next(iter(ctx.db.tables["pool"].values()), {})
        if pool.get("ha_enabled") and rec.get("enabled", True) and not pool.get(
                "ha_allow_overcommit"):
            left = sum(1 for h, r in ctx.db.tables["host"].items()
                       if h != host and r.get("enabled", True))
            if int(pool.get("ha_plan_exists_for") or 0) > max(0, left - 1):
                raise XapiError("HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN")
        _assert_live(ctx, host)
        ctx.db.modify("host", host, {"enabled": False})
        sim = ctx.pool.host_by_ref(host)
        if sim is not None:
            sim.auto_enable = bool(auto_enable)


def host_enable(ctx: CallContext, host: str) -> None:
    with ctx.db.lock:
        _assert_live(ctx, host)
        ctx.db.modify("host", host, {"enabled": True})
        sim = ctx.pool.host_by_ref(host)
        if sim is not None:
            sim.auto_enable = True


def host_servertime(ctx: CallContext, host: str) -> DateTime:
    ctx.db.get("host", host)
    return DateTime(now_stamp())


def host_compute_free_memory(ctx: CallContext, host: str) -> int:
    with ctx.db.lock:
        return host_free(ctx.db, host)[1]


def _resident_guests(ctx: CallContext, host: str) -> list[str]:
    db = ctx.db
    return [vm for vm in db.get("host", host).get("resident_VMs", [])
            if vm in db.tables["VM"] and not db.tables["VM"][vm].get("is_control_domain")
            and db.tables["VM"][vm]["power_state"] in ("Running", "Paused")]


def _evacuation_plan(ctx: CallContext, host: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """VM -> target host, and VM -> [code, params...] for those that cannot move."""
    db = ctx.db
    free: dict[str, int] = {}
    for h, rec in db.tables["host"].items():
        sim = ctx.pool.host_by_ref(h)
        if h == host or not rec.get("enabled", True) or (sim is not None and not sim.online):
            continue
        free[h] = host_free(db, h)[1]
    plan: dict[str, str] = {}
    errors: dict[str, list[str]] = {}
    rt = runtime(ctx.pool)
    for vm in _resident_guests(ctx, host):
        rec = db.tables["VM"][vm]
        held = rt.consumed.get(vm)
        need = held[1] if held else needed_memory(rec)
        seeing = [h for h in free if unreachable_sr(db, rec, h) is None]
        if free and not seeing:
            errors[vm] = ["VM_REQUIRES_SR", vm, str(unreachable_sr(db, rec, next(iter(free))))]
            continue
        fits = [(free[h], h) for h in seeing if free[h] >= need]
        if not fits:
            errors[vm] = ["HOST_NOT_ENOUGH_FREE_MEMORY", vm]
            continue
        _, target = max(fits)
        free[target] -= need
        plan[vm] = target
    return plan, errors


def host_vms_preventing(ctx: CallContext, host: str) -> dict[str, list[str]]:
    with ctx.db.lock:
        ctx.db.get("host", host)
        return _evacuation_plan(ctx, host)[1]


def host_assert_can_evacuate(ctx: CallContext, host: str) -> None:
    with ctx.db.lock:
        ctx.db.get("host", host)
        errors = _evacuation_plan(ctx, host)[1]
    if errors:
        raise XapiError("CANNOT_EVACUATE_HOST", "|".join(",".join(e) for e in errors.values()))


EVACUATE_BATCH = 10  # xapi's default evacuation_batch_size


def host_evacuate(ctx: CallContext, host: str, network: str = NULL, batch: int = 0) -> None:
    """Live-migrates the host's guests by the plan, `batch` (default 10) at a
    time, with `evacuate` in the host's current_operations meanwhile."""
    db = ctx.db
    with db.lock:
        rec = db.get("host", host)
        plan, errors = _evacuation_plan(ctx, host)
        if errors:
            raise XapiError(*next(iter(errors.values())))
        key = ctx.task or f"OpaqueRef:{uuidlib.uuid4()}"
        db.modify("host", host, {"current_operations": {
            **(rec.get("current_operations") or {}), key: "evacuate"}})
    total = max(1, len(plan))
    done = 0
    lock = threading.Lock()

    def move(item: tuple[str, str]) -> None:
        nonlocal done
        migrate(ctx, *item)
        with lock:
            done += 1
            ctx.progress(done / total)

    try:
        with ThreadPoolExecutor(max_workers=batch if batch > 0 else EVACUATE_BATCH) as pool:
            results = [pool.submit(move, item) for item in plan.items()]
        for r in results:
            r.result()  # the first failure, once every migration has ended
    finally:
        _end_power_op(ctx, host, key)


_EXCLUSIVE = {"reboot": "shutdown", "shutdown": "reboot"}


def _begin_power_op(ctx: CallContext, host: str, op: str) -> str:
    """xapi's host op check: disabled first (HOST_NOT_DISABLED), no reboot
    during a shutdown or the reverse; then the op is in current_operations."""
    db = ctx.db
    with db.lock:
        rec = db.get("host", host)
        ops = rec.get("current_operations") or {}
        for task, other in ops.items():
            if other == _EXCLUSIVE[op]:
                raise XapiError("OTHER_OPERATION_IN_PROGRESS", "host", host, other, task)
        if rec.get("enabled", True):
            raise XapiError("HOST_NOT_DISABLED")
        _assert_live(ctx, host)
        key = ctx.task or f"OpaqueRef:{uuidlib.uuid4()}"
        db.modify("host", host, {"current_operations": {**ops, key: op}})
        return key


def _end_power_op(ctx: CallContext, host: str, key: str) -> None:
    with ctx.db.lock:
        rec = ctx.db.find("host", host)
        if rec is not None:
            ops = dict(rec.get("current_operations") or {})
            ops.pop(key, None)
            ctx.db.modify("host", host, {"current_operations": ops})


def _ensure_no_vms(ctx: CallContext, host: str) -> None:
    """What xapi does before powering a host off (vm_evacuation.ml): guests
    that cannot move are shut down, the rest are live-migrated away, and
    whatever still runs is shut down. Running guests are no error."""
    with ctx.db.lock:
        plan, errors = _evacuation_plan(ctx, host)
        for vm in errors:
            halt(ctx.pool, vm)
    for vm, target in plan.items():
        try:
            migrate(ctx, vm, target)
        except XapiError as exc:
            if exc.description[:1] == ["TASK_CANCELLED"]:
                raise
    with ctx.db.lock:
        for vm in _resident_guests(ctx, host):  # paused domains die with the host too
            halt(ctx.pool, vm)


def _power_off_host(ctx: CallContext, host: str, op: str) -> None:
    """Check, empty the host, then mark it down (live=false). With HA on, a
    live member becomes master when the master goes down."""
    key = _begin_power_op(ctx, host, op)
    try:
        _ensure_no_vms(ctx, host)
        db = ctx.db
        with db.lock:
            rec = db.get("host", host)
            metrics = rec.get("metrics", NULL)
            if db.find("host_metrics", metrics) is not None:
                db.modify("host_metrics", metrics, {"live": False})
            elect_successor(ctx, host)
    finally:
        _end_power_op(ctx, host, key)


def host_reboot(ctx: CallContext, host: str) -> None:
    sim = ctx.pool.host_by_ref(host)
    was_master = sim is not None and sim.is_master
    _power_off_host(ctx, host, "reboot")
    if was_master:  # a successor (HA) starts its own xapi: every pool session is lost
        ctx.pool.sessions.invalidate_all()
    if sim is not None:
        ctx.farm.reboot_host(sim)


def host_shutdown(ctx: CallContext, host: str) -> None:
    sim = ctx.pool.host_by_ref(host)
    was_master = sim is not None and sim.is_master
    _power_off_host(ctx, host, "shutdown")
    if was_master:
        ctx.pool.sessions.invalidate_all()
    if sim is not None:
        ctx.farm.power_off_host(sim)


# -------------------------------------------------------------------- pool


def pool_designate_new_master(ctx: CallContext, host: str) -> None:
    with ctx.db.lock:
        ctx.db.get("host", host)
        for ref, rec in ctx.db.tables["pool"].items():
            if rec.get("ha_enabled"):
                raise XapiError("HA_IS_ENABLED")
            if rec.get("master") == host:
                return
            ctx.db.modify("pool", ref, {"master": host})
    # A new coordinator restarts xapi: every pool session is lost.
    ctx.pool.sessions.invalidate_all()
