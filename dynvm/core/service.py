"""The core facade: one object serving the HTTP API, the CLI and the background loops."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from dynvm.config import AuthConfig, Config
from dynvm.core import getservers, health, tokens, warmpool
from dynvm.core.answers import Available, ServerResult, ServersRequest, ServersResult, ShowAll
from dynvm.core.background import Background, Timings
from dynvm.core.callers import Caller
from dynvm.core.capacity import vm_os
from dynvm.core.clock import SYSTEM, Clock
from dynvm.core.context import Adapters, Context, EventHook, MaintenanceFactory, no_event
from dynvm.core.errors import (
    AllOrNoneFailed,
    BadRequest,
    DynvmError,
    NameInUse,
    NoCapacity,
    NotFound,
    ProvisionFailed,
    StoreDown,
)
from dynvm.core.maintenance.state import all_status, placement_blocked
from dynvm.core.placement import candidates, eligible_hosts, views_of
from dynvm.core.registry import PoolRegistry
from dynvm.core.release import Target, release_target, set_expiry
from dynvm.core.store import Lease, RequestRecord, Reservation, StoreError, StoreUnavailable
from dynvm.core.store_probe import StoreProbe

__all__ = [
    "AllOrNoneFailed", "Available", "BadRequest", "DynvmError", "NameInUse", "NoCapacity",
    "NotFound", "ProvisionFailed", "ServerResult", "ServersRequest", "ServersResult",
    "ShowAll", "StoreDown", "Dynvm", "Target",
]

log = logging.getLogger("dynvm.service")

T = TypeVar("T")


class FarmRecords(NamedTuple):
    leases: list[Lease]
    reservations: list[Reservation]
    blocked: frozenset[str]  # drained pools "<N>", members in maintenance "<N>/<uuid>"


class Dynvm:
    """Everything the service does, independent of HTTP."""

    def __init__(self, config: Callable[[], Config], adapters: Adapters, *,
                 config_status: Callable[[], dict[str, Any]] | None = None,
                 timings: Timings | None = None, background: bool = True,
                 on_event: EventHook = no_event, clock: Clock = SYSTEM) -> None:
        self._config = config
        self._config_status = config_status or (lambda: {"error": None})
        self.registry = PoolRegistry(adapters.pools)
        self.ctx = Context(store=adapters.store, registry=self.registry, config=self.config,
                           guest=adapters.guest, identity=adapters.identity,
                           static_pools=adapters.static_pools, on_event=on_event, clock=clock)
        self.background = Background(self.ctx, timings)
        self._run_background = background
        self._synced: Config | None = None
        self._showall_memo: tuple | None = None
        self._lock = threading.Lock()
        self.store_probe = StoreProbe(adapters.store, clock=clock)
        # The hypervisor side of host maintenance for one pool client (None: not offered).
        self.maintenance_port: MaintenanceFactory | None = adapters.maintenance

    # -- plumbing -----------------------------------------------------------------
    def config(self) -> Config:
        cfg = self._config()
        if cfg is not self._synced:
            with self._lock:
                if cfg is not self._synced:
                    if self._synced is not None:
                        for ref, hc in self._synced.hosts.items():
                            if ref not in cfg.hosts:
                                self.ctx.retired_hosts[ref] = hc
                    for ref in cfg.hosts:
                        self.ctx.retired_hosts.pop(ref, None)
                    self.registry.sync(cfg)
                    self._synced = cfg
        return cfg

    def _touch(self) -> Config:
        if self._run_background:
            self.background.ensure_started()
        return self.config()

    def os_keys(self) -> frozenset[str]:
        return getservers.served_os(self.config())

    def host_refs(self) -> set[int]:
        return set(self.config().hosts)

    # -- reads ------------------------------------------------------------------------
    def show_all(self, os: str | None, labels: frozenset[str], ignore_labels: bool) -> ShowAll:
        cfg = self._touch()
        if os is not None and os not in getservers.served_os(cfg):
            raise BadRequest(f"Error: unknown os '{os}'")
        hosts = eligible_hosts(cfg, None, labels, ignore_labels)
        views, down = views_of(hosts, self.ctx.view)
        # Same views as last time (the inventory re-issues one object per change):
        # answer with the same rows, so the API can reuse its formatted body too.
        key = (os, labels, ignore_labels, tuple(down),
               tuple((hc.ref, id(view.vms)) for hc, view in views))
        last = self._showall_memo
        if last is not None and last[0] == key and all(
                a is b.vms for a, (_, b) in zip(last[2], views, strict=True)):
            age = max((v.age_secs for _, v in views), default=0.0)
            return ShowAll(last[1].hosts, down, age)
        out: dict[int, list[dict]] = {}
        age = 0.0
        for hc, view in views:
            age = max(age, view.age_secs)
            rows = []
            for vm in view.vms.values():
                if vm.power_state != "Running":
                    continue
                if os is not None and vm_os(vm, hc) != os:
                    continue
                rows.append({
                    "name": vm.name_label,
                    "power_state": vm.power_state,
                    "vcpus": str(vm.vcpus_max),
                    "memory_static_max": str(vm.memory_static_max),
                    "networkinfo": ",".join(vm.ips),
                    "name_description": vm.name_description,
                })
            rows.sort(key=lambda r: r["name"])
            out[hc.ref] = rows
        result = ShowAll(out, down, age)
        self._showall_memo = (key, result, [view.vms for _, view in views])
        return result

    def available(self, os: str, labels: frozenset[str], ignore_labels: bool) -> Available:
        cfg = self._touch()
        if os not in getservers.served_os(cfg):
            raise BadRequest(f"Error: unknown os '{os}'")
        hosts = eligible_hosts(cfg, os, labels, ignore_labels)
        return self._count(hosts, os)

    def _count(self, hosts: list, os: str) -> Available:
        views, down = views_of(hosts, self.ctx.view)
        # Without the store the room being taken is unknown: no count at all, not a guess.
        reservations, blocked = self._read(
            lambda: (self.ctx.store.reservations.live(), placement_blocked(self.ctx.store)))
        ready = (self._read(lambda: warmpool.ready_count(self.ctx, os, {h.ref for h, _ in views}))
                 if os in self.config().pools else 0)  # no pool: no ready VMs to read
        count = sum(c.slots for c in candidates(views, os, reservations, None, blocked)) + ready
        age = max((v.age_secs for _, v in views), default=0.0)
        return Available(count, down, age)

    def available_by_label(self, os: str) -> list[dict]:
        cfg = self._touch()
        if os not in getservers.served_os(cfg):
            raise BadRequest(f"Error: unknown os '{os}'")
        labels = sorted({lbl for h in cfg.hosts.values() for lbl in h.labels})
        out = []
        for lbl in labels:
            hosts = eligible_hosts(cfg, os, frozenset({lbl}), False)
            out.append({"label": lbl, "count": self._count(hosts, os).count})
        out.append({"label": "default",
                    "count": self._count(eligible_hosts(cfg, os, frozenset(), False), os).count})
        return out

    # -- records of the store, as the dashboard and the APIs read them --------------------
    @staticmethod
    def _read(read: Callable[[], T]) -> T:
        """`read()`; a store that cannot answer is StoreDown (503), never an empty answer."""
        try:
            return read()
        except StoreError as exc:
            reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise StoreDown(f"the state store cannot be read ({reason})") from exc

    def farm_records(self) -> FarmRecords:
        """Leases, live reservations and what placement skips, read together."""
        store = self.ctx.store
        return self._read(lambda: FarmRecords(store.leases.find(), store.reservations.live(),
                                              placement_blocked(store)))

    def request_records(self) -> list[RequestRecord]:
        return self._read(self.ctx.store.requests.find)

    def history_mark(self) -> str:
        return self._read(self.ctx.store.history.mark)

    def history(self, limit: int) -> list[dict[str, Any]]:
        """History documents, most recent first."""
        return self._read(lambda: self.ctx.store.history.recent(limit=limit))

    # -- writes -----------------------------------------------------------------------
    def get_servers(self, req: ServersRequest) -> ServersResult:
        self._touch()
        return getservers.get_servers(self.ctx, req)

    def release_servers(self, target: Target, state: str | None,
                        caller: Caller | None = None) -> list[str]:
        """Release what `target` names; with a caller, only if it may act on all of it."""
        self._touch()
        released = release_target(self.ctx, target, reason="released", release_state=state,
                                  caller=caller)
        if not released:
            raise NotFound(f"Error: VM {target.said} doesn't exist")
        return released

    def set_expiry(self, target: Target, minutes: int, from_created: bool,
                   caller: Caller | None = None) -> list[str]:
        self._touch()
        try:
            changed = set_expiry(self.ctx, target, minutes, from_created, caller)
        except StoreUnavailable as exc:
            raise StoreDown(f"Error: the state store is unreachable ({exc})") from exc
        if not changed:
            raise NotFound(f"Error: VM {target.said} doesn't exist")
        return changed

    # -- who is calling -----------------------------------------------------------------
    def auth_settings(self) -> AuthConfig:
        """[auth] as configured now: which routes need a token, failed-attempt limits."""
        return self.config().auth

    def caller_for(self, secret: str) -> Caller | None:
        """The caller behind a token's secret; None if unknown, expired or revoked.

        Raises StoreUnavailable when the tokens cannot be read.
        """
        token = tokens.authenticate(self.ctx.store, secret)
        return None if token is None else Caller(owner=token.owner, admin=token.admin)

    # -- operations ---------------------------------------------------------------------
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

    def health(self) -> dict[str, Any]:
        """The combined report of `/health`, reasons first (`dynvm.core.health` decides)."""
        cfg = self._touch()
        conf = dict(self._config_status())
        checks = [health.config_check(conf.get("error")),
                  health.store_check(self.store_probe.check())]  # read and write, bounded
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
                "instance": self.ctx.instance, "leader": self.background.is_leader,
                "background_error": self.background.last_error}

    def readiness(self) -> dict[str, Any]:
        """`/health/ready`: can this instance serve (config, store, at least one pool)?"""
        try:
            cfg = self.config()
            error = self._config_status().get("error")
        except Exception as exc:  # a config that cannot be read is the answer
            check = health.config_check(f"{type(exc).__name__}: {exc}")
            return {"reasons": [check.reason], "status": "not ready",
                    "checks": {"config": {"ok": False, "error": check.detail["error"]}}}
        conf = health.config_check(error)
        store = health.store_check(self.store_probe.check())
        pools = self._pool_checks(cfg)
        verdict = health.Verdict.of([conf, store, *pools])
        reasons = verdict.not_ready
        reachable = sorted(int(c.name.removeprefix("xenhost")) for c in pools if c.ok)
        return {"reasons": reasons, "status": "not ready" if reasons else "ok", "checks": {
            "config": {"ok": conf.ok, "error": error},
            "store": {"ok": store.ok, **({} if store.ok else {"error": store.reason})},
            "hosts": {"ok": bool(reachable), "reachable": reachable,
                      "configured": len(cfg.hosts)}}}

    def warm_up(self) -> None:
        """Open the store and every pool's sessions and inventory (a fresh worker's first
        request would otherwise pay for it); a host that fails is left for later."""
        cfg = self._touch()
        self.ctx.store.ping()
        for hc in cfg.hosts.values():
            try:
                self.ctx.view(hc)
            except Exception as exc:
                log.warning("warm-up: xenhost%s not loaded: %s", hc.ref, exc)

    def close(self) -> None:
        if self._run_background:
            self.background.stop()
        self.registry.close()
        if self.ctx.static_pools is not None:
            self.ctx.static_pools.close()
        self.ctx.store.close()
