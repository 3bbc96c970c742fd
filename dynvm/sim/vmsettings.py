"""VM settings with xapi's rules: memory limits and ranges, VCPUs, and
turning a VM into a template."""

from __future__ import annotations

from .context import CallContext
from .vmchecks import check_operation, halted_or_dom0
from .wire import XapiError


def _check_memory_order(smin: int, smax: int, dmin: int, dmax: int) -> None:
    if not smin <= dmin <= dmax <= smax:
        raise XapiError("MEMORY_CONSTRAINT_VIOLATION_ORDER")


def _set_memory_limits(ctx: CallContext, vm: str, smin: int, smax: int, dmin: int, dmax: int,
                       op: str = "changing_memory_limits") -> None:
    with ctx.db.lock:
        rec = ctx.db.get("VM", vm)
        check_operation(vm, rec, op, halted_or_dom0(rec))
        _check_memory_order(smin, smax, dmin, dmax)
        ctx.db.modify("VM", vm, {"memory_static_min": smin, "memory_static_max": smax,
                                 "memory_dynamic_min": dmin, "memory_dynamic_max": dmax})


def vm_set_memory_limits(ctx: CallContext, vm: str, smin: int, smax: int, dmin: int,
                         dmax: int) -> None:
    _set_memory_limits(ctx, vm, smin, smax, dmin, dmax)


def vm_set_memory(ctx: CallContext, vm: str, value: int) -> None:
    with ctx.db.lock:
        rec = ctx.db.get("VM", vm)
        _set_memory_limits(ctx, vm, int(rec["memory_static_min"]), value, value, value)


def vm_set_memory_static_range(ctx: CallContext, vm: str, lo: int, hi: int) -> None:
    with ctx.db.lock:
        rec = ctx.db.get("VM", vm)
        _set_memory_limits(ctx, vm, lo, hi, int(rec["memory_dynamic_min"]),
                           int(rec["memory_dynamic_max"]), "changing_static_range")


def vm_set_memory_static_max(ctx: CallContext, vm: str, value: int) -> None:
    with ctx.db.lock:
        rec = ctx.db.get("VM", vm)
        _set_memory_limits(ctx, vm, int(rec["memory_static_min"]), value,
                           int(rec["memory_dynamic_min"]), int(rec["memory_dynamic_max"]))


def vm_set_memory_dynamic_range(ctx: CallContext, vm: str, lo: int, hi: int) -> None:
    with ctx.db.lock:
        rec = ctx.db.get("VM", vm)
        check_operation(vm, rec, "changing_dynamic_range", ("halted", "running"))
        _check_memory_order(int(rec["memory_static_min"]), int(rec["memory_static_max"]), lo, hi)
        ctx.db.modify("VM", vm, {"memory_dynamic_min": lo, "memory_dynamic_max": hi})


VCPU_RULE = "VCPU values must satisfy: 0 < VCPUs_at_startup ≤ VCPUs_max"


def _set_vcpus(ctx: CallContext, vm: str, field: str, value: int) -> None:
    """VCPUs_max or VCPUs_at_startup, keeping 0 < VCPUs_at_startup <= VCPUs_max."""
    with ctx.db.lock:
        rec = ctx.db.get("VM", vm)
        check_operation(vm, rec, "changing_VCPUs", halted_or_dom0(rec))
        at_startup, top = int(rec["VCPUs_at_startup"]), int(rec["VCPUs_max"])
        if field == "VCPUs_max":
            top = value
        else:
            at_startup = value
        if value < 1 or at_startup > top:
            raise XapiError("INVALID_VALUE", VCPU_RULE, value)
        ctx.db.modify("VM", vm, {field: value})


def vm_set_vcpus_max(ctx: CallContext, vm: str, value: int) -> None:
    _set_vcpus(ctx, vm, "VCPUs_max", value)


def vm_set_vcpus_at_startup(ctx: CallContext, vm: str, value: int) -> None:
    _set_vcpus(ctx, vm, "VCPUs_at_startup", value)


def vm_set_is_a_template(ctx: CallContext, vm: str, value: bool) -> None:
    with ctx.db.lock:
        rec = ctx.db.get("VM", vm)
        if value:
            check_operation(vm, rec, "make_into_template", ("halted",))
        ctx.db.modify("VM", vm, {"is_a_template": bool(value)})
