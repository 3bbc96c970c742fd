"""How this instance is: `/health`, `/health/ready` and the store's gauges for /metrics.

The verdicts are `dynvm.core.health`'s (one rule for every answer); this
gathers the checks from the configuration, the store and the pools.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dynvm.config import Config
from dynvm.core import health
from dynvm.core.background import LEADER_LOCK
from dynvm.core.maintenance.state import all_status
from dynvm.core.services.base import Subject
from dynvm.core.store import StoreError


@dataclass(frozen=True)
class StoreGauges:
    """The store as /metrics shows it, read at scrape time."""

    up: bool  # it answered a ping
    leader: str | None  # the instance running leader-only work (None: unknown or none)
    outbox: float  # writes waiting in this instance's outbox (NaN: it could not be read)


class Health(Subject):
    """The checks of this instance, each one an operator can act on."""

    def _pool_checks(self, cfg: Config) -> list[health.Check]:
        out = []
        for hc in sorted(cfg.hosts.values(), key=lambda h: h.ref):
            try:
                view = self.ctx.view(hc)
            except Exception as exc:  # unreachable, refused, timed out: the answer itself
                error = " ".join(str(exc).split())[:300] or type(exc).__name__
                out.append(health.pool_check(hc.ref, hc.name, error,
                                             {"ok": False, "error": error}))
                continue
            out.append(health.pool_check(hc.ref, hc.name, None, {
                "ok": True, "members": len(view.hosts), "vms": len(view.vms),
                "view_age_secs": round(view.age_secs, 2)}))
        return out

    def report(self) -> dict[str, Any]:
        """The combined report of `/health`, reasons first (`dynvm.core.health` decides)."""
        rt = self.rt
        cfg = rt.touch()
        conf = dict(rt.config_status())
        checks = [health.config_check(conf.get("error")),
                  health.store_check(rt.store_probe.check())]  # read and write, bounded
        store = dict(checks[1].detail)
        if store.get("ok"):
            try:
                store["pending_outbox"] = self.ctx.store.pending()
            except StoreError:
                pass
        pools = self._pool_checks(cfg)
        checks += pools
        # Said, not a fault (no 503): the OS is only not served where its template is missing.
        conf["warnings"] = self.ctx.templates.notes(cfg)
        maint: dict[str, dict[str, Any]] = {}
        if checks[1].ok:  # a store that failed its bounded probe is not read again here
            try:
                maint = {str(k): v for k, v in
                         all_status(self.ctx.store, sorted(cfg.hosts)).items()}
            except StoreError:  # it failed since: the next check says so
                maint = {}
        for ref, run in maint.items():
            check = health.maintenance_check(int(ref), run)
            checks.append(check)
            if not check.ok:
                run["warning"] = check.reason
        verdict = health.Verdict.of(checks)
        return {"reasons": verdict.reasons, "status": verdict.status, "config": conf,
                "store": store, "hosts": {c.name.removeprefix("xenhost"): c.detail
                                          for c in pools},
                "maintenance": maint,
                "instance": self.ctx.instance, "leader": rt.background.is_leader,
                "background_error": rt.background.last_error}

    def readiness(self) -> dict[str, Any]:
        """`/health/ready`: can this instance serve (config, store, at least one pool)?"""
        rt = self.rt
        try:
            cfg = rt.config()
            error = rt.config_status().get("error")
        except Exception as exc:  # a config that cannot be read is the answer
            check = health.config_check(f"{type(exc).__name__}: {exc}")
            return {"reasons": [check.reason], "status": "not ready",
                    "checks": {"config": {"ok": False, "error": check.detail["error"]}}}
        conf = health.config_check(error)
        store = health.store_check(rt.store_probe.check())
        pools = self._pool_checks(cfg)
        verdict = health.Verdict.of([conf, store, *pools])
        reasons = verdict.not_ready
        reachable = sorted(int(c.name.removeprefix("xenhost")) for c in pools if c.ok)
        return {"reasons": reasons, "status": "not ready" if reasons else "ok", "checks": {
            "config": {"ok": conf.ok, "error": error},
            "store": {"ok": store.ok, **({} if store.ok else {"error": store.reason})},
            "hosts": {"ok": bool(reachable), "reachable": reachable,
                      "configured": len(cfg.hosts)}}}

    def store_gauges(self) -> StoreGauges:
        """Whether the store answers, who leads, and this instance's outbox depth."""
        store = self.ctx.store
        up, leader = True, None
        try:
            store.ping()
            leader = store.locks.holder(LEADER_LOCK)
        except StoreError:
            up = False
        try:
            outbox = float(store.pending())
        except Exception:  # the outbox file is local; a failure to read it is not the farm's
            outbox = float("nan")
        return StoreGauges(up=up, leader=leader, outbox=outbox)
