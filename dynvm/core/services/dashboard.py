"""What the operator's dashboard, its JSON routes and /metrics show, read from the store
and the inventory.

Everything here is computed per call from the state of record (leases,
requests, history in the store) and the pools' inventory, so every worker
and every instance answers the same. Plain dicts and lists only: the JSON
routes serialise them as they are and the templates render them.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dynvm.core import demand, getservers, progress, queueing, warmpool
from dynvm.core.callers import EVERYONE, Caller, request_owner
from dynvm.core.capacity import vm_os
from dynvm.core.lifecycle import (
    VM_SHOWN_OF_LEASE,
    MemberShown,
    PoolShown,
    RequestState,
    VmShown,
    is_warm_request,
)
from dynvm.core.placement import eligible_hosts
from dynvm.core.ports import (
    TAG_CREATED,
    TAG_EXPIRES,
    TAG_LEASE,
    TAG_OS,
    TAG_OWNER,
)
from dynvm.core.records import RequestRecord
from dynvm.core.services.base import Runtime, Subject
from dynvm.core.services.dashboard_rows import (
    MEMBER_TOTALS,
    end_reason,
    filter_vms,
    lease_row,
    member_row,
    member_state,
    tag_number,
    unleased_state,
    with_times,
)
from dynvm.core.services.history import History
from dynvm.core.services.snapshot import Snapshot
from dynvm.core.store import (
    LEASE_PROVISIONING,
    LEASE_READY,
)
from dynvm.core.store_cache import MAX_KEYS, PerGeneration

T = TypeVar("T")

RECENT_HOURS = 6.0  # finished requests shown this far back
RECYCLE_PREFIX = "warm pool recycle"


@dataclass(frozen=True)
class RequestFigures:
    in_flight: int  # getservers requests being served (warm-pool refills apart)
    queued: dict[tuple[str, ...], int] = field(default_factory=dict)  # (OS, priority) -> waiting


class Dashboard(Subject):
    """The dashboard's sections (`/`, `/ui/...`) and the farm gauges of /metrics."""

    def __init__(self, rt: Runtime, history: History) -> None:
        super().__init__(rt)
        self._history = history
        self._store_reads = PerGeneration(rt.ctx.store, rt.ctx.clock)
        self._memo_lock = threading.Lock()
        self._memo_key: tuple[Any, ...] | None = None
        self._memo: dict[Any, Any] = {}

    def snapshot(self) -> Snapshot:
        """One read of config, inventory and store for every section of one answer
        (the store's records as this thread last read them, until the store changes)."""
        return Snapshot.take(self.rt, self._store_reads)

    def _memo_of(self, snap: Snapshot) -> dict[Any, Any]:
        """The values computed from the same configuration and inventory views (the
        inventory re-issues one object per change) and equal store records as `snap`,
        shared by the worker's threads: sections and totals are computed once per
        change, not once per thread or per store write that changes none of them."""
        refs = tuple(sorted(snap.views))
        views = [x for ref in refs for x in (snap.views[ref].vms, snap.views[ref].hosts,
                                             snap.views[ref].templates)]
        records = (snap.leases, snap.reservations, snap.blocked, snap.store_error)
        with self._memo_lock:
            last = self._memo_key
            if (last is None or last[0] is not snap.cfg or last[1] != refs
                    or len(last[2]) != len(views)
                    or any(a is not b for a, b in zip(last[2], views, strict=True))
                    or last[3] != records):
                self._memo_key, self._memo = (snap.cfg, refs, views, records), {}
            elif len(self._memo) > MAX_KEYS:
                self._memo = {}
            return self._memo

    def shared(self, snap: Snapshot, key: Hashable, make: Callable[[], T]) -> T:
        """make(), computed once per change of what `snap` shows and shared by the
        worker's threads (e.g. a section as the page renders it)."""
        memo = self._memo_of(snap)
        mark = ("shared", key)
        if mark not in memo:
            memo[mark] = make()
        value: T = memo[mark]
        return value

    def os_keys(self) -> frozenset[str]:
        """The OS keys some host serves (the VM table's filter)."""
        return getservers.served_os(self.rt.config())

    @staticmethod
    def vm_state_names() -> list[str]:
        """The states the VM table may show (its filter), sorted."""
        return sorted(set(VM_SHOWN_OF_LEASE.values())
                      | {VmShown.FOREIGN, VmShown.UNTRACKED, VmShown.FLEET})

    # ---------------------------------------------------------------- farm

    def hosts(self, snap: Snapshot | None = None) -> dict[str, Any]:
        """Every pool and member host with its state, load and free room; totals
        (computed once per generation, the views' ages as of now)."""
        snap = snap or self.snapshot()
        memo = self._memo_of(snap)
        if "hosts" not in memo:
            memo["hosts"] = self._hosts(snap)
        out: dict[str, Any] = memo["hosts"]
        ages = {ref: round(v.age_secs, 2) for ref, v in snap.views.items()}
        return {**out, "pools": [{**p, "view_age_secs": ages[p["ref"]]} if p["ref"] in ages
                                 and "view_age_secs" in p else p for p in out["pools"]]}

    def _hosts(self, snap: Snapshot) -> dict[str, Any]:
        """A pool's `available` per OS is its members' free slots plus its warm VMs
        ready to hand out (`warm`), so the members' figures add up to the pool's. A
        pool that does not answer says since when (`since`) and lists its members as
        last read (`last_known`), counted in no total."""
        cfg = snap.cfg
        pools = []
        totals: defaultdict[str, float] = defaultdict(float)
        for hc in sorted(cfg.hosts.values(), key=lambda h: h.ref):
            view = snap.views.get(hc.ref)
            pool: dict[str, Any] = {"ref": hc.ref, "name": hc.name, "labels": sorted(hc.labels),
                                    "os": sorted(hc.os), "drain": hc.drain, "members": []}
            if view is None:
                outage = snap.outages.get(hc.ref)
                last = outage.last if outage else None
                pool.update(state=PoolShown.UNREACHABLE, error=snap.errors.get(hc.ref, ""),
                            since=outage.since if outage else None, last_known=last is not None,
                            available={o: 0 for o in sorted(hc.os)}, warm={})
                for m in sorted(last.hosts if last else (), key=lambda m: m.name_label):
                    assert last is not None
                    pool["members"].append(dict(member_row(last, m), state=MemberShown.UNKNOWN,
                                                available={}, warm={}))
                pools.append(pool)
                continue
            drained = hc.drain or str(hc.ref) in snap.blocked
            pool.update(state=PoolShown.DRAINED if drained else PoolShown.UP, error="",
                        view_age_secs=round(view.age_secs, 2))
            known = snap.store_error is None  # room taken and warm VMs: unknown otherwise
            slots: dict[str, dict[str, int]] = defaultdict(dict)
            for o in sorted(hc.os) if known else ():
                for member_uuid, n in snap.slots(hc.ref, o).items():
                    slots[member_uuid][o] = 0 if hc.drain else n
            warm: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
            for lease in snap.leases:
                vm = view.vms.get(lease.vm_uuid)
                if lease.state == LEASE_READY and lease.host_ref == hc.ref \
                        and lease.os in cfg.pools and vm is not None:
                    warm[vm.resident_on][lease.os] += 1
            for m in sorted(view.hosts, key=lambda m: m.name_label):
                state = member_state(m.enabled, f"{hc.ref}/{m.uuid}" in snap.blocked, drained)
                member = dict(member_row(view, m), state=state,
                              available={o: n + warm[m.uuid].get(o, 0)
                                         for o, n in slots.get(m.uuid, {}).items()},
                              warm=dict(warm[m.uuid]))
                for k in MEMBER_TOTALS:
                    totals[k] += member[k]
                pool["members"].append(member)
            pool["available"] = {o: sum(m["available"].get(o, 0) for m in pool["members"])
                                 for o in sorted(hc.os) if known}
            pool["warm"] = {o: n for o in sorted(hc.os)
                            if (n := sum(m["warm"].get(o, 0) for m in pool["members"]))}
            pools.append(pool)
        return {"pools": pools, "totals": {k: int(v) for k, v in totals.items()},
                "capacity": self.capacity(snap)["os"] if snap.store_error is None else {},
                "labelled": any(p["labels"] for p in pools)}

    def capacity(self, snap: Snapshot | None = None) -> dict[str, Any]:
        """Available VM count of every served OS (default labels, as /getavailablecount)."""
        snap = snap or self.snapshot()
        out = {}
        for o in sorted(getservers.served_os(snap.cfg)):
            hosts_ = eligible_hosts(snap.cfg, o, frozenset(), False)
            views = [(h, snap.views[h.ref]) for h in hosts_ if h.ref in snap.views]
            down = [h.ref for h in hosts_ if h.ref not in snap.views]
            refs = {h.ref for h, _ in views}
            ready = sum(1 for lease in snap.leases
                        if lease.state == LEASE_READY and lease.os == o and lease.host_ref in refs)
            free = sum(sum(snap.slots(h.ref, o).values()) for h, _ in views)
            out[o] = {"available": free + (ready if o in snap.cfg.pools else 0),
                      "ready": ready, "unreachable": down}
        return {"os": out}

    def vms(self, snap: Snapshot | None = None,
            viewer: Caller = EVERYONE) -> list[dict[str, Any]]:
        """Every VM on the farm the viewer may see: dynvm's with their lease, others marked
        foreign (an owner sees only the leased VMs that are its own).

        Built once per generation and viewer; `age_secs` and `expires_in_secs` are
        as of then (`fresh` gives them as of now). The rows are shared: read only.
        """
        snap = snap or self.snapshot()
        memo = self._memo_of(snap)
        key = ("vms", viewer.owner, viewer.admin)
        if key not in memo:
            memo[key] = self._vms(snap, viewer)
        rows: list[dict[str, Any]] = memo[key]
        return rows

    def vm_table(self, snap: Snapshot, viewer: Caller, *, q: str = "", state: str = "",
                 os: str = "", sort: str = "name", desc: bool = False) -> list[dict[str, Any]]:
        """The VM table: filtered (substring of name, owner, IP, host or request) and
        sorted, once per generation, viewer and filter. Shared rows: read only."""
        memo = self._memo_of(snap)
        key = ("table", viewer.owner, viewer.admin, q, state, os, sort, desc)
        if key not in memo:
            memo[key] = filter_vms(self.vms(snap, viewer), q=q, state=state, os=os,
                                   sort=sort, desc=desc)
        rows: list[dict[str, Any]] = memo[key]
        return rows

    @staticmethod
    def fresh(rows: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
        """Copies of `rows` with their ages and expiries as of `now` (a page of them)."""
        return [with_times(dict(r), now) for r in rows]

    def _vms(self, snap: Snapshot, viewer: Caller) -> list[dict[str, Any]]:
        leases = snap.leases if viewer.admin else [lease for lease in snap.leases
                                                   if lease.state != LEASE_READY and viewer.may(lease)]
        by_uuid = {lease.vm_uuid: lease for lease in leases}
        seen: set[str] = set()
        rows = []
        for ref, view in sorted(snap.views.items()):
            hc = snap.cfg.hosts.get(ref)
            members = {m.uuid: m.name_label for m in view.hosts}
            for vm in view.vms.values():
                lease = by_uuid.get(vm.uuid)
                tags = vm.other_config
                if lease is None and (vm.power_state != "Running" or not viewer.admin):
                    continue  # halted foreign VMs are not the farm's load; others' are not shown
                seen.add(vm.uuid)
                if lease is not None:
                    row = lease_row(lease, snap.now)
                else:
                    created = tag_number(tags.get(TAG_CREATED))
                    expires = tag_number(tags.get(TAG_EXPIRES))
                    row = {"uuid": vm.uuid, "name": vm.name_label, "owner": tags.get(TAG_OWNER, ""),
                           "request_id": tags.get(TAG_LEASE, ""),
                           "os": tags.get(TAG_OS) or (vm_os(vm, hc) if hc else None) or "",
                           "state": unleased_state(tags, snap.store_error is not None),
                           "created": created, "expires": expires}
                row.update({"host_ref": ref, "host": members.get(vm.resident_on, ""),
                            "ip": row.get("ip") or (vm.ips[0] if vm.ips else ""),
                            "power_state": vm.power_state,
                            "vcpus": vm.vcpus_max, "memory": vm.memory_static_max})
                row["foreign"] = row["state"] == VmShown.FOREIGN
                rows.append(with_times(row, snap.now))
        for lease in leases:  # being built, not in the inventory yet
            if lease.vm_uuid not in seen:
                row = lease_row(lease, snap.now)
                row.update({"host_ref": lease.host_ref, "host": "", "power_state": "",
                            "vcpus": 0, "memory": 0, "foreign": False})
                rows.append(with_times(row, snap.now))
        rows.sort(key=lambda r: r["name"])
        return rows

    def request_records(self) -> list[RequestRecord]:
        """Every request record (as this thread last read them, until the store changes:
        the page and its refreshes read them every few seconds); StoreDown when the store
        cannot say."""
        return self.rt.read(lambda: self._store_reads.read("requests",
                                                           self.ctx.store.requests.find))

    def requests(self, hours: float = RECENT_HOURS,
                 viewer: Caller = EVERYONE) -> dict[str, Any]:
        """Requests in flight with each VM's step; finished ones of the last `hours`
        (the viewer's own, or all for an admin)."""
        now = self.ctx.clock()
        records = self.request_records()  # StoreDown when the store cannot say
        running, recent = [], []
        mine = [r for r in records if viewer.may_own(request_owner(r))]
        queued = self.queue(viewer) if any(r.state == RequestState.QUEUED for r in mine) else []
        for r in sorted(mine, key=lambda r: r.started, reverse=True):
            if r.state == RequestState.QUEUED:
                continue  # in `queued`, in the queue's order
            row = {"id": r.id, "owner": request_owner(r), "name": r.name, "os": r.os,
                   "count": r.count, "state": r.state,
                   "instance": r.instance, "started": r.started, "finished": r.finished,
                   "warm_pool": is_warm_request(r.id),
                   "elapsed_secs": round((r.finished or now) - r.started, 1),
                   "reason": end_reason(r.detail),
                   "vms": [dict(p.to_dict(), step_secs=round(now - p.since, 1))
                           for p in progress.of_request(r)]}
            if r.state == RequestState.RUNNING:
                running.append(row)
            elif r.finished is None or now - r.finished <= hours * 3600:
                recent.append(row)
        return {"queued": queued, "running": running, "recent": recent}

    def queue(self, viewer: Caller = EVERYONE) -> list[dict[str, Any]]:
        """The queue in serving order (the viewer's own requests, or all for an admin):
        position, owner, OS, count, priority, how long each has waited, its ETA, why."""
        snap = self.rt.read(lambda: queueing.snapshot(self.ctx, queueing.BUILDS))
        return [row for row in snap.rows() if viewer.may_own(row["owner"])]

    def warm_pools(self, snap: Snapshot | None = None,
                   docs: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Ready vs target per pool, VMs being built, recycled and handed out (history)."""
        snap = snap or self.snapshot()
        docs = self._history.docs() if docs is None else docs
        memo = self._memo_of(snap)
        last = memo.get("warm")
        if last is None or last[0] is not docs:
            memo["warm"] = last = (docs, self._warm_pools(snap, docs))
        pools: list[dict[str, Any]] = last[1]
        return pools

    def _warm_pools(self, snap: Snapshot, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        recycled: defaultdict[str, int] = defaultdict(int)
        handed: defaultdict[str, int] = defaultdict(int)
        for d in docs:
            if d.get("from_warm_pool"):
                handed[d.get("os", "")] += 1
            if str(d.get("delete_reason", "")).startswith(RECYCLE_PREFIX):
                recycled[d.get("os", "")] += 1
        out = []
        for o, pool in sorted(snap.cfg.pools.items()):
            ready = sum(1 for lease in snap.leases if lease.os == o and lease.state == LEASE_READY)
            building = sum(1 for lease in snap.leases if lease.os == o
                           and lease.state == LEASE_PROVISIONING
                           and lease.owner == warmpool.READY_OWNER)
            target = demand.target(docs, o, snap.now, low=pool.min_ready, high=pool.max_ready,
                                   ready_owner=warmpool.READY_OWNER) if pool.auto else pool.ready
            out.append({"os": o, "target": target, "auto": pool.auto, "ready": ready,
                        "building": building,
                        "recycled": recycled[o], "handed_out": handed[o],
                        "labels": sorted(pool.labels), "ttl_minutes": pool.ttl_minutes})
        return out

    def request_figures(self, records: list[RequestRecord]) -> RequestFigures:
        """How many requests are being served now (the time each build step takes is
        observed as it happens: dynvm.runtime.events)."""
        in_flight = sum(1 for r in records
                        if r.state == RequestState.RUNNING and not is_warm_request(r.id))
        return RequestFigures(in_flight, queueing.waiting_by(records))
