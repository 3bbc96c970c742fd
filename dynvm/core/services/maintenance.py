"""Host maintenance as the CLI and the HTTP API offer it: hosts and their state, drains,
rolling reboots (planned, run, resumed) and their status.

The run itself is `dynvm.core.maintenance.runner`'s, over the hypervisor side
the bootstrap hands in (`Adapters.maintenance`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dynvm.config import HostConfig
from dynvm.core.capacity import GIB, host_key
from dynvm.core.errors import BadRequest
from dynvm.core.maintenance import leftovers
from dynvm.core.maintenance import state as S
from dynvm.core.maintenance.plan import Plan
from dynvm.core.maintenance.plan import describe as describe_plan
from dynvm.core.maintenance.runner import Options, RollingReboot
from dynvm.core.ports import HostUnreachable, XenError
from dynvm.core.services.base import Subject

__all__ = ["Maintenance", "Options", "Plan", "RollingReboot", "describe_plan"]


class Maintenance(Subject):
    """`dynvm hosts`, `dynvm maintenance`, `/hosts` and `/maintenance`."""

    def _host(self, ref: int) -> HostConfig:
        hc = self.rt.config().hosts.get(ref)
        if hc is None:
            raise BadRequest(f"Error: no [xenhost{ref}] in the configuration")
        return hc

    def hosts_report(self) -> list[dict[str, Any]]:
        """Every [xenhostN] and its member hosts with their state, and the member hosts a
        stopped rolling reboot left out of placement."""
        cfg = self.rt.config()
        store = self.ctx.store
        drained = S.drained(store)
        maint = S.in_maintenance(store)
        runs = S.all_status(store, sorted(cfg.hosts))
        out = []
        for ref, hc in sorted(cfg.hosts.items()):
            run = runs.get(ref) or {}
            # Known from the store alone, so said even when the pool does not answer.
            left = run.get("hosts_left") or []
            entry: dict[str, Any] = {
                "ref": ref, "name": hc.name, "drained": hc.drain or ref in drained,
                "drained_by": "config" if hc.drain else ("store" if ref in drained else None),
                "members": [], "error": None, "hosts_left": left,
                "left_by": ({k: run.get(k) for k in ("run", "state", "finish")}
                            if left else None)}
            try:
                view = self.ctx.view(hc)
            except (HostUnreachable, XenError) as exc:
                entry["error"] = str(exc)
                out.append(entry)
                continue
            left_out = {x["uuid"] for x in left}
            for h in sorted(view.hosts, key=lambda h: h.name_label):
                entry["members"].append({
                    "name": h.name_label, "uuid": h.uuid, "enabled": h.enabled,
                    "in_maintenance": host_key(ref, h.uuid) in maint,
                    "left_by_run": h.uuid in left_out,
                    "vms": len(view.running_on(h.uuid)),
                    "memory_free_gib": round(h.memory_free / GIB, 1),
                    "memory_total_gib": round(h.memory_total / GIB, 1)})
            out.append(entry)
        return out

    def set_drain(self, ref: int, on: bool, by: str = "") -> dict[str, Any]:
        """Drain `[xenhostREF]` (for every worker and instance), or put it back in
        placement: undraining also gives back the member hosts a stopped rolling reboot
        left out of placement."""
        hc = self._host(ref)
        S.set_drain(self.ctx.store, ref, on, by)
        notes = []
        if not on:
            self.ctx.room_freed.set()  # the queue may be served there now
            released = leftovers.release(self.ctx.store, ref)
            if released:
                notes.append(f"{len(released)} host(s) a stopped rolling reboot left out of "
                             f"placement are back in it")
            if hc.drain:
                notes.append(f"xenhost{ref} stays drained: host.drain=true in the configuration")
        return {"ref": ref, "drained": on or hc.drain, "note": "; ".join(notes) or None}

    def status(self) -> dict[str, Any]:
        """The last rolling reboot of every pool that had one, by host number."""
        return {str(k): v for k, v in
                S.all_status(self.ctx.store, sorted(self.rt.config().hosts)).items()}

    def run_holder(self, ref: int) -> str | None:
        """Who runs a rolling reboot of `[xenhost<ref>]` now (None: nobody)."""
        return self.ctx.store.locks.holder(S.lock_name(ref))

    def rolling_reboot(self, ref: int, options: Options,
                       on_progress: Callable[[dict[str, Any]], None] | None = None,
                       runner: list[RollingReboot] | None = None) -> Plan:
        """Plan (and with `options.execute`, run) a rolling reboot of `[xenhostN]`.

        `runner`, when given, receives the runner before it starts (to wait on its
        `locked` event from another thread).
        """
        hc = self._host(ref)
        if self.rt.maintenance is None:
            raise RuntimeError("host maintenance is not wired to a hypervisor")
        if options.strategy not in ("migrate", "drain", "auto"):
            raise BadRequest("Error: strategy must be migrate, drain or auto")
        if not 1 <= options.parallel <= 64:
            raise BadRequest("Error: parallel must be between 1 and 64")
        job = RollingReboot(self.ctx, hc, self.rt.maintenance(self.ctx.pool(hc)), options,
                            on_progress)
        if runner is not None:
            runner.append(job)
        return job.run()
