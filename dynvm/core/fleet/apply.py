"""`dynvm fleet plan` and `dynvm fleet apply`: the whole plan first, then its steps.

Applying takes the store's `fleet` lock (renewed while it runs), so one apply
or one pass of the background leader changes the fleet at a time, whichever
instance runs it; it reads the farm and makes the plan again under the lock,
and refuses a plan with any problem before any XenAPI write. A step that fails
is reported and the others go on, but never a later step of the same VM.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dynvm.config import ConfigError, Fleet, load_fleet
from dynvm.core.context import Context
from dynvm.core.errors import FleetRefused
from dynvm.core.fleet.act import StepFailed, Steps
from dynvm.core.fleet.farm import FarmState
from dynvm.core.fleet.observe import PortOf, observe
from dynvm.core.fleet.plan import FleetPlan, Options, plan_fleet
from dynvm.core.heldlock import HeldLock
from dynvm.core.lifecycle import FleetState
from dynvm.core.store import FleetEntry

FLEET_LOCK = "fleet"
LOCK_TTL_SECS = 30.0
LOCK_WAIT_SECS = 60.0  # an apply waits this long for a pass of the leader to end

Progress = Callable[[dict[str, Any]], None]


@dataclass
class Applied:
    plan: FleetPlan
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def fleet_of(ctx: Context) -> Fleet:
    """The fleet directory as it is now, validated (FleetRefused when there is none to use)."""
    try:
        fleet = load_fleet(ctx.config())
    except ConfigError as exc:
        raise FleetRefused(str(exc)) from None
    if fleet is None:
        raise FleetRefused("no fleet: the configuration has no [fleet] path")
    return fleet


def make_plan(ctx: Context, port_of: PortOf, options: Options) -> FleetPlan:
    """The plan as apply would make it now; reads only."""
    fleet = fleet_of(ctx)
    return plan_fleet(fleet, observe(ctx, fleet, port_of), options)


def adopt_unrecorded(ctx: Context, farm: FarmState) -> None:
    """A fleet VM of ours the store has no record of (the store was lost): recorded now."""
    for seen in farm.seen:
        if seen.ours and not seen.building and seen.name not in farm.entries:
            entry = FleetEntry(name=seen.name, state=FleetState.PRESENT.value,
                               vm_uuid=seen.uuid, host_ref=seen.pool, ip=seen.ip,
                               created=farm.now, extra={"adopted": farm.now})
            if ctx.store.fleet.adopt(entry):
                farm.entries[seen.name] = entry


def apply(ctx: Context, port_of: PortOf, options: Options,
          on_progress: Progress | None = None, lock_wait: float = LOCK_WAIT_SECS) -> Applied:
    """Plan and do it; FleetRefused (nothing done) when the plan has problems."""
    fleet = fleet_of(ctx)
    holder = f"{ctx.instance}:apply:{uuid.uuid4().hex[:6]}"
    lock = HeldLock(ctx.store, FLEET_LOCK, holder, LOCK_TTL_SECS, ctx.clock)
    if not lock.acquire(wait=lock_wait):
        raise FleetRefused(f"the fleet is being changed by {lock.current_holder()}; "
                           f"try again when it is done")
    try:
        farm = observe(ctx, fleet, port_of)
        plan = plan_fleet(fleet, farm, options)
        if not plan.ok:
            raise FleetRefused("; ".join(plan.problems), plan)
        adopt_unrecorded(ctx, farm)
        out = Applied(plan)
        steps = Steps(ctx, port_of, holder)
        stopped: set[str] = set()  # VMs one of whose steps failed: their later steps wait
        tell = on_progress or (lambda _status: None)
        for n, action in enumerate(plan.actions, 1):
            tell({"step": n, "total": len(plan.actions), "doing": action.line(),
                  "done": len(out.done), "failed": len(out.failed)})
            if lock.lost.is_set():
                out.failed.append(f"{action.name}: not done, the fleet lock was lost "
                                  f"(store unreachable too long?)")
                continue
            if action.name in stopped:
                out.failed.append(f"{action.name}: {action.kind.value} not done after the "
                                  f"step before it failed")
                continue
            try:
                out.done.append(steps.do(action))
            except StepFailed as exc:
                stopped.add(action.name)
                out.failed.append(str(exc))
        tell({"step": len(plan.actions), "total": len(plan.actions), "doing": "",
              "done": len(out.done), "failed": len(out.failed)})
        return out
    finally:
        lock.release()
