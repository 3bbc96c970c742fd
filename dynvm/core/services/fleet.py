"""The fleet as the CLI and the dashboard offer it: plan, apply, and how it stands.

The plan, its steps and the leader's convergence are `dynvm.core.fleet`'s,
over the hypervisor side the bootstrap hands in (`Adapters.fleet`).
"""

from __future__ import annotations

from typing import Any

from dynvm.config import ConfigError, load_fleet
from dynvm.core.fleet.apply import Applied, Progress, apply, make_plan
from dynvm.core.fleet.observe import observe
from dynvm.core.fleet.plan import Drift, FleetPlan, Options, plan_fleet
from dynvm.core.services.base import Subject

__all__ = ["Applied", "FleetPlan", "FleetService"]


class FleetService(Subject):
    """`dynvm fleet plan|apply|status`; the fleet on the dashboard and in `dynvm hosts`."""

    def plan(self, *, prune: bool = False, restart: bool = False) -> FleetPlan:
        """What apply would do now, and what it would report or refuse; changes nothing."""
        self.rt.touch()
        return make_plan(self.ctx, self.ctx.fleet_port, Options(prune=prune, restart=restart))

    def apply(self, *, prune: bool = False, restart: bool = False,
              on_progress: Progress | None = None) -> Applied:
        """Plan and do it (FleetRefused, nothing done, when the plan has a problem)."""
        self.rt.touch()
        return apply(self.ctx, self.ctx.fleet_port, Options(prune=prune, restart=restart),
                     on_progress)

    def status(self) -> dict[str, Any]:
        """Every fleet VM: declared where, running where, drifted how; from the inventory
        and the store alone (no XenAPI call), so a page may ask it every few seconds."""
        cfg = self.rt.touch()
        out: dict[str, Any] = {"configured": cfg.fleet_path is not None,
                               "path": cfg.fleet_path, "error": None, "vms": [],
                               "declared": 0, "running": 0, "drifted": 0, "down": []}
        try:
            fleet = load_fleet(cfg)
        except ConfigError as exc:
            out["error"] = str(exc)
            return out
        if fleet is None:
            return out
        farm = self.rt.read(lambda: observe(self.ctx, fleet, self.ctx.fleet_port,
                                            details=False, halted=False))
        plan = plan_fleet(fleet, farm)
        for f in plan.findings:
            entry = farm.entries.get(f.name)
            out["vms"].append({**f.to_dict(),
                               "starts": dict(entry.start) if entry is not None else {}})
        out["declared"] = len(fleet.vms)
        out["running"] = sum(1 for f in plan.findings if f.power == "Running" and f.declared)
        out["drifted"] = sum(1 for f in plan.findings if f.state != Drift.OK)
        out["down"] = list(farm.down)
        return out
