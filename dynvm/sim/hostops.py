"""session, task, host and pool behaviours."""

from __future__ import annotations

from .db import NULL, now_stamp
from .dispatch import CallContext, handler
from .poolops import elect_successor
from .vmops import _host_free, _needed_memory, halt, migrate, runtime
from .wire import DateTime, XapiError

# ----------------------------------------------------------------- session


@handler("session.login_with_password")
def session_login(ctx: CallContext, uname: str, pwd: str, version: str = "1.1",
                  originator: str = "") -> str:
    if not ctx.host.is_master:
        raise XapiError("HOST_IS_SLAVE", ctx.pool.master.address)
    return ctx.pool.sessions.login(ctx.host, uname, pwd, originator)


@handler("session.slave_local_login_with_password", "session.slave_local_login")
def session_slave_local_login(ctx: CallContext, uname: str, pwd: str = "") -> str:
    return ctx.pool.sessions.login(ctx.host, uname, pwd, "", local=True)


@handler("session.logout", "session.local_logout")
def session_logout(ctx: CallContext) -> None:
    assert ctx.session is not None
    ctx.pool.sessions.logout(ctx.session.ref)


@handler("session.get_all_subject_identifiers")
def session_subjects(ctx: CallContext) -> list[str]:
    return []


# -------------------------------------------------------------------- task


@handler("task.cancel")
def task_cancel(ctx: CallContext, task: str) -> None:
    ctx.pool.tasks.cancel(task)


@handler("task.destroy")
def task_destroy(ctx: CallContext, task: str) -> None:
    ctx.pool.tasks.destroy(task)


# -------------------------------------------------------------------- host


@handler("host.disable")
def host_disable(ctx: CallContext, host: str, auto_enable: bool = True) -> None:
    """`auto_enable` false: the host stays disabled after its next reboot."""
    with ctx.db.lock:
        ctx.db.get("host", host)
        ctx.db.modify("host", host, {"enabled": False})
        sim = ctx.pool.host_by_ref(host)
        if sim is not None:
            sim.auto_enable = bool(auto_enable)


@handler("host.enable")
def host_enable(ctx: CallContext, host: str) -> None:
    with ctx.db.lock:
        ctx.db.get("host", host)
        ctx.db.modify("host", host, {"enabled": True})
        sim = ctx.pool.host_by_ref(host)
        if sim is not None:
            sim.auto_enable = True


@handler("host.get_servertime", "host.get_server_localtime")
def host_servertime(ctx: CallContext, host: str) -> DateTime:
    ctx.db.get("host", host)
    return DateTime(now_stamp())


@handler("host.compute_free_memory")
def host_compute_free_memory(ctx: CallContext, host: str) -> int:
    with ctx.db.lock:
        return _host_free(ctx.db, host)[1]


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
        free[h] = _host_free(db, h)[1]
    plan: dict[str, str] = {}
    errors: dict[str, list[str]] = {}
    rt = runtime(ctx.pool)
    for vm in _resident_guests(ctx, host):
        held = rt.consumed.get(vm)
        need = held[1] if held else _needed_memory(db.tables["VM"][vm])
        fits = [(f, h) for h, f in free.items() if f >= need]
        if not fits:
            errors[vm] = ["HOST_NOT_ENOUGH_FREE_MEMORY", vm]
            continue
        _, target = max(fits)
        free[target] -= need
        plan[vm] = target
    return plan, errors


@handler("host.get_vms_which_prevent_evacuation")
def host_vms_preventing(ctx: CallContext, host: str) -> dict[str, list[str]]:
    with ctx.db.lock:
        ctx.db.get("host", host)
        return _evacuation_plan(ctx, host)[1]


@handler("host.assert_can_evacuate")
def host_assert_can_evacuate(ctx: CallContext, host: str) -> None:
    with ctx.db.lock:
        ctx.db.get("host", host)
        errors = _evacuation_plan(ctx, host)[1]
    if errors:
        raise XapiError("CANNOT_EVACUATE_HOST", "|".join(",".join(e) for e in errors.values()))


@handler("host.evacuate")
def host_evacuate(ctx: CallContext, host: str, network: str = NULL, batch: int = 0) -> None:
    with ctx.db.lock:
        ctx.db.get("host", host)
        plan, errors = _evacuation_plan(ctx, host)
        if errors:
            raise XapiError(*next(iter(errors.values())))
    total = max(1, len(plan))
    for i, (vm, target) in enumerate(plan.items(), 1):
        ctx.check_cancel()
        migrate(ctx, vm, target)
        ctx.progress(i / total)


def _power_off_host(ctx: CallContext, host: str) -> None:
    """xapi's "bacon mode" check, then the host goes down: disabled and no
    running guest (HOST_NOT_DISABLED, HOST_IN_USE [host, "vm", vm]). With HA
    on, a live member becomes master when the master goes down."""
    db = ctx.db
    with db.lock:
        rec = db.get("host", host)
        if rec.get("enabled", True):
            raise XapiError("HOST_NOT_DISABLED")
        running = [vm for vm in rec.get("resident_VMs", []) if vm in db.tables["VM"]
                   and not db.tables["VM"][vm].get("is_control_domain")
                   and db.tables["VM"][vm]["power_state"] == "Running"]
        if running:
            raise XapiError("HOST_IN_USE", host, "vm", running[0])
        for vm in _resident_guests(ctx, host):  # paused domains die with the host
            halt(ctx.pool, vm)
        metrics = rec.get("metrics", NULL)
        if db.find("host_metrics", metrics) is not None:
            db.modify("host_metrics", metrics, {"live": False})
        elect_successor(ctx, host)


@handler("host.reboot")
def host_reboot(ctx: CallContext, host: str) -> None:
    sim = ctx.pool.host_by_ref(host)
    was_master = sim is not None and sim.is_master
    _power_off_host(ctx, host)
    if was_master:  # a successor (HA) starts its own xapi: every pool session is lost
        ctx.pool.sessions.invalidate_all()
    if sim is not None:
        ctx.farm.reboot_host(sim)


@handler("host.shutdown")
def host_shutdown(ctx: CallContext, host: str) -> None:
    sim = ctx.pool.host_by_ref(host)
    was_master = sim is not None and sim.is_master
    _power_off_host(ctx, host)
    if was_master:
        ctx.pool.sessions.invalidate_all()
    if sim is not None:
        ctx.farm.power_off_host(sim)


# -------------------------------------------------------------------- pool


@handler("pool.designate_new_master")
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
