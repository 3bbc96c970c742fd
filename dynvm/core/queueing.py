"""Requests that wait for room: into the queue, out of it (cancelled, expired), and where
each stands (position, why it waits, when it should be served).

A v1 request that fits its owner's quota but finds no room is recorded
`queued` with an entry in the store's queue (`store.queue`), holding nothing
but its names; the background leader (`dynvm.core.dispatch`) serves it once
room frees. Every leave of the queue is one compare-and-set on the request's
record (`lifecycle.leave_queue`): of a cancel, an expiry and a dispatch racing,
exactly one wins.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dynvm.config import Config, OsSpec
from dynvm.core import lifecycle, quota
from dynvm.core.capacity import free_on, host_key, unseen, vm_os
from dynvm.core.context import Context
from dynvm.core.errors import NoCapacity
from dynvm.core.getservers import NAME_LOCK
from dynvm.core.lifecycle import RequestState
from dynvm.core.placement import eligible_hosts, views_of
from dynvm.core.progress import STEP_TIME_PREFIX, Step
from dynvm.core.queueorder import (
    Freeing,
    Need,
    Room,
    eta_secs,
    may_backfill,
    order,
    start_times,
)
from dynvm.core.records import LEASE_READY, LEASE_RELEASING, QueueEntry, RequestRecord
from dynvm.core.release import names_for
from dynvm.core.v1request import QUEUED_KEYS

if TYPE_CHECKING:
    from dynvm.core.v1request import NewRequest

log = logging.getLogger("dynvm.queue")

DEFAULT_BUILD_SECS = 60.0  # a build's length before history has any
BUILD_SAMPLE = 50  # recent builds the typical build time is taken from
BUILD_MEMO_SECS = 60.0


def entry_of(cfg: Config, rec: RequestRecord, req: NewRequest, spec: OsSpec,
             now: float) -> QueueEntry:
    """The queue entry of a request: its priority capped by its owner's `priority.max`."""
    return QueueEntry(
        id=rec.id, owner=req.owner, os=req.os, count=req.count, enqueued=now,
        deadline=now + cfg.queue.wait_minutes(req.max_wait_minutes) * 60,
        priority=min(max(req.priority, 0), cfg.quota_for(req.owner).priority_max),
        weight=float(spec.memory_gib), lease_secs=cfg.lease_minutes(req.lease_minutes) * 60.0,
        all_or_none=req.all_or_none)


def reason_of(exc: NoCapacity, labels: list[str]) -> str:
    """Why a request waits: which OS and labels, how many VMs short."""
    asked = exc.asked or 0
    avail = min(exc.available or 0, asked)
    where = f" with labels {', '.join(labels)}" if labels else ""
    down = (f"; {', '.join(f'xenhost{r}' for r in exc.unreachable)} unreachable"
            if exc.unreachable else "")
    return (f"waiting for room: {asked} {exc.os} VM(s){where} asked, {avail} fit now, "
            f"{asked - avail} short{down}")


def check_quota(ctx: Context, cfg: Config, owner: str, count: int, spec: OsSpec) -> None:
    """QuotaExceeded if `count` more VMs of `spec` would take `owner` over its quota,
    counting what it holds and what it has waiting in the queue (served later, those
    would hold room too): a clear answer before any room is taken or any wait begins."""
    if quota.check_for(cfg, owner, spec.vcpus, spec.memory_gib) is None:
        return  # no limit
    used = quota.usage(ctx.store, cfg, owner)
    over = quota.exceeded(cfg, owner, used, count, spec.vcpus, spec.memory_gib,
                          queued_usage(ctx, cfg, owner))
    if over is not None:
        raise over


def queued_usage(ctx: Context, cfg: Config, owner: str) -> quota.Usage:
    """What `owner`'s requests waiting in the queue would hold once served."""
    vms, vcpus, mem = 0, 0, 0.0
    for e in ctx.store.queue.entries():
        if e.owner != owner:
            continue
        rec = ctx.store.requests.get(e.id)
        if rec is None or rec.state != RequestState.QUEUED \
                or rec.detail.get("params", {}).get("counted") is False:
            continue
        need = need_of(cfg, e, rec, {})
        vms += e.count
        vcpus += e.count * int(need.vcpus)
        mem += e.count * need.memory_gib
    return quota.Usage(vms=vms, vcpus=vcpus, memory_gib=mem)


def enqueue(ctx: Context, cfg: Config, entry: QueueEntry, names: list[str],
            reason: str, keys: tuple[str, ...] = ()) -> None:
    """Record the request `queued` (it holds nothing: its VMs' steps are cleared), with
    the keys it brought, then add its entry; its chosen names stay held for as long as
    it may wait and build."""
    now = ctx.clock()
    ttl = entry.deadline - now + cfg.reservation_ttl_secs
    for n in names:
        ctx.store.locks.acquire(NAME_LOCK + n, entry.id, ttl)
    lifecycle.queue_request(ctx.store.direct, entry.id, {
        "vms": {}, QUEUED_KEYS: list(keys),
        "queue": {"reason": reason, "since": now, "deadline": entry.deadline,
                  "priority": entry.priority, "entry": entry.to_dict()}})
    ctx.store.direct.queue.add(entry)  # after the record: an entry's request is queued


def held_back(ctx: Context, entry: QueueEntry, rec: RequestRecord) -> str | None:
    """Why a new request must wait behind those already queued (None: it may take room
    now, if there is room): one of them goes before it and cannot start yet, and its
    leases would not end before that one could start (`may_backfill`)."""
    entries = ctx.store.queue.entries()
    if not entries:
        return None
    snap = snapshot(ctx, BUILDS, [*entries, entry], {rec.id: rec})
    for e in snap.ordered:
        if e.id == entry.id:
            return None
        start = snap.starts.get(e.id)
        if start is not None and start > snap.now:  # the head: waiting for room to free
            if may_backfill(snap.now, entry, snap.builds.get(entry.os, DEFAULT_BUILD_SECS),
                            start):
                return None
            ahead = next(i for i, x in enumerate(snap.ordered) if x.id == entry.id)
            return (f"waiting behind {ahead} queued request(s): room that frees is kept for "
                    f"request {e.id} ({e.count} {e.os} VM(s)), which goes first")
    return None


def may_wait(ctx: Context, cfg: Config, entry: QueueEntry, rec: RequestRecord,
             exc: NoCapacity) -> bool:
    """Whether waiting could ever serve the request: room for it frees as leases end (or a
    host it could use is unreachable now). A request bigger than the farm is refused."""
    if exc.unreachable:
        return True
    rooms, freeing, members = farm_rooms(ctx, cfg, {entry.os})
    need = need_of(cfg, entry, rec, members)
    return start_times([need], rooms, freeing, ctx.clock())[entry.id] is not None


def leave(ctx: Context, rec: RequestRecord, state: RequestState, why: str) -> bool:
    """End a queued request (cancelled, expired, refused) unless it left the queue
    already; its entry and its names go. True if this call ended it."""
    waited = ctx.clock() - float(rec.detail.get("queue", {}).get("since", rec.started))
    if not lifecycle.leave_queue(ctx.store.direct, rec.id, state, {
            "reason": f"{why} after waiting {waited:.0f} s in the queue; no VM was built",
            "waited": round(waited, 3), QUEUED_KEYS: None}):
        return False
    ctx.event(lifecycle.CoreEvent.QUEUE_LEFT, os=rec.os, seconds=waited)
    drop(ctx, rec)
    return True


def drop(ctx: Context, rec: RequestRecord) -> None:
    """The entry and the names of a request that left the queue without being served."""
    ctx.store.queue.remove(rec.id)
    for name in names_for(rec.name, rec.count):
        try:
            ctx.store.locks.release(NAME_LOCK + name, rec.id)  # only if it holds it
        except Exception:  # the claim lapses on its own
            log.warning("could not free the name %s", name)


def cancel(ctx: Context, rec: RequestRecord, by: str) -> bool:
    """Cancel a queued request; False if it was dispatched (or ended) meanwhile."""
    return leave(ctx, rec, RequestState.CANCELLED, f"cancelled by {by}")


def expire_due(ctx: Context, entries: list[QueueEntry], now: float) -> list[QueueEntry]:
    """End the requests that waited their longest; returns the entries still waiting."""
    left = []
    for e in entries:
        if e.deadline > now:
            left.append(e)
            continue
        rec = ctx.store.requests.get(e.id)
        if rec is None or rec.state != RequestState.QUEUED:
            if rec is None or lifecycle.is_request_end(rec.state):
                ctx.store.queue.remove(e.id)  # it left already; its entry is all that is left
            continue
        minutes = (e.deadline - e.enqueued) / 60
        if leave(ctx, rec, RequestState.EXPIRED, f"expired: no room within its longest "
                                                 f"wait of {minutes:.0f} min"):
            ctx.event(lifecycle.CoreEvent.QUEUE_EXPIRED)
            log.info("request %s expired in the queue", e.id)
    return left


def repair(ctx: Context, alive: Callable[[str], bool]) -> int:
    """Put right what a process that died half-way left (reconciliation's pass): a queued
    request with no entry gets it back (the process died between the two writes), and
    the room a dead leader took for an entry it had claimed is given back."""
    entries = {e.id: e for e in ctx.store.queue.entries()}
    n = 0
    for rec in ctx.store.requests.find(RequestState.QUEUED):
        e = entries.get(rec.id)
        saved = rec.detail.get("queue", {}).get("entry")
        if e is None and isinstance(saved, dict):
            ctx.store.queue.add(QueueEntry.from_dict(saved))
            n += 1
        elif e is not None and e.claimed_by and not alive(e.claimed_by):
            ctx.store.reservations.drop_request(rec.id)
            ctx.store.queue.unclaim(rec.id, e.claimed_by)
            n += 1
    return n


def waiting_by(records: list[RequestRecord]) -> dict[tuple[str, ...], int]:
    """For /metrics: the requests waiting, by (OS, priority)."""
    queued: dict[tuple[str, ...], int] = {}
    for r in records:
        q = r.detail.get("queue")
        if r.state == RequestState.QUEUED and isinstance(q, dict):
            key = (r.os, str(q.get("priority", 0)))
            queued[key] = queued.get(key, 0) + 1
    return queued


# -- where each stands ------------------------------------------------------------------

def held_by_owner(ctx: Context, cfg: Config) -> dict[str, float]:
    """Each owner's weighted VMs (GiB of memory) held now: leases and room being built."""
    held: dict[str, float] = {}
    for lease in ctx.store.leases.find():
        if lease.state in (LEASE_READY, LEASE_RELEASING):
            continue
        held[lease.owner] = held.get(lease.owner, 0.0) + quota.lease_size(cfg, lease)[1]
    leased = {lease.vm_uuid for lease in ctx.store.leases.find()}
    for r in ctx.store.reservations.live():
        if r.owner and r.vm_uuid not in leased:
            held[r.owner] = held.get(r.owner, 0.0) + r.memory_gib
    return held


def need_of(cfg: Config, e: QueueEntry, rec: RequestRecord | None,
            members: dict[int, list[str]]) -> Need:
    """What a queued request needs, on the member hosts that could serve it."""
    params = rec.detail.get("params", {}) if rec is not None else {}
    spec = cfg.os_spec(e.os)
    vcpus = params.get("cpus") or (spec.vcpus if spec else 1)
    mem = params.get("memory_gib") or (spec.memory_gib if spec else e.weight)
    disk = spec.disk_gib if spec else 0
    hosts = eligible_hosts(cfg, e.os, frozenset(params.get("labels", ())), False,
                           params.get("host"))
    return Need(id=e.id, count=e.count, vcpus=vcpus, memory_gib=mem, disk_gib=disk,
                hosts=frozenset(k for h in hosts for k in members.get(h.ref, [])),
                lease_secs=e.lease_secs)


def farm_rooms(ctx: Context, cfg: Config, os_keys: set[str]
               ) -> tuple[dict[str, Room], list[Freeing], dict[int, list[str]]]:
    """Free room per member host now, and the room each lease gives back when it ends."""
    views, _ = views_of(cfg.hosts.values(), ctx.view)
    live = ctx.store.reservations.live()
    rooms: dict[str, Room] = {}
    members: dict[int, list[str]] = {}
    for hc, view in views:
        for member in view.hosts:
            key = host_key(hc.ref, member.uuid)
            members.setdefault(hc.ref, []).append(key)
            if not member.enabled:
                continue
            running = view.running_on(member.uuid)
            load = view.load_on(member.uuid)
            pending = unseen([r for r in live if r.host_key == key], load.shown,
                             view.running_anywhere())
            free = free_on(member, load.vcpus, hc.storage_name, pending)
            caps = [hc.vms_max[o] - sum(1 for v in running if vm_os(v, hc) == o)
                    - sum(1 for r in pending if r.os == o) for o in os_keys if o in hc.vms_max]
            rooms[key] = Room(free.cpus, free.memory_gib, free.disk_gib if free.has_sr else 0.0,
                              min(caps) if caps else None)
    freeing = []
    for lease in ctx.store.leases.find():
        if lease.state == LEASE_RELEASING:
            continue
        vcpus, mem = quota.lease_size(cfg, lease)
        spec = cfg.os_spec(lease.os)
        freeing.append(Freeing(at=lease.expires, host=host_key(lease.host_ref, lease.host_uuid),
                               vcpus=vcpus, memory_gib=mem,
                               disk_gib=float(spec.disk_gib) if spec else 0.0))
    return rooms, freeing, members


class BuildTimes:
    """A build's typical length per OS, from the requests that were built lately."""

    def __init__(self) -> None:
        self._memo: dict[str, tuple[float, float]] = {}  # os -> (computed at, secs)
        self._lock = threading.Lock()

    def secs(self, ctx: Context, os_key: str) -> float:
        now = time.monotonic()
        with self._lock:
            got = self._memo.get(os_key)
            if got is not None and now - got[0] < BUILD_MEMO_SECS:
                return got[1]
        secs = typical_build(ctx.store.requests.find(RequestState.DONE), os_key)
        with self._lock:
            self._memo[os_key] = (now, secs)
        return secs


def typical_build(done: list[RequestRecord], os_key: str) -> float:
    """The median time from room held to ready, over the latest built VMs of `os_key`."""
    took = []
    for rec in reversed(done):
        if rec.os != os_key:
            continue
        for vm in (rec.detail.get("vms") or {}).values():
            start = vm.get(STEP_TIME_PREFIX + Step.RESERVED)
            ready = vm.get(STEP_TIME_PREFIX + Step.READY)
            if start is None:
                start = vm.get(STEP_TIME_PREFIX + Step.CLONING)
            if start is not None and ready is not None and ready >= start:
                took.append(float(ready) - float(start))
        if len(took) >= BUILD_SAMPLE:
            break
    return statistics.median(took) if took else DEFAULT_BUILD_SECS


@dataclass(frozen=True)
class Standing:
    """Where a queued request stands."""

    position: int  # 1: served next
    of: int  # requests waiting
    start: float | None  # when room for it should free (None: no known expiry makes it)
    eta_secs: float | None  # until its VMs should be ready
    build_secs: float


@dataclass(frozen=True)
class Snapshot:
    """The whole queue in serving order, with when each should start."""

    ordered: list[QueueEntry]
    records: dict[str, RequestRecord]
    starts: dict[str, float | None]
    builds: dict[str, float]  # os -> typical build seconds
    now: float

    def rows(self) -> list[dict[str, Any]]:
        """The queue as the dashboard shows it: position, owner, OS, count, priority,
        how long each has waited, its ETA and why it waits."""
        out = []
        for e in self.ordered:
            rec, standing = self.records.get(e.id), self.standing(e.id)
            if rec is None or standing is None:
                continue
            out.append({"position": standing.position, "id": e.id, "owner": e.owner,
                        "os": e.os, "count": e.count, "priority": e.priority,
                        "name": rec.name, "waited_secs": round(self.now - e.enqueued, 1),
                        "eta_secs": None if standing.eta_secs is None
                        else round(standing.eta_secs, 1),
                        "reason": str(rec.detail.get("queue", {}).get("reason", ""))})
        return out

    def standing(self, request_id: str) -> Standing | None:
        for i, e in enumerate(self.ordered):
            if e.id == request_id:
                start = self.starts.get(e.id)
                build = self.builds.get(e.os, DEFAULT_BUILD_SECS)
                return Standing(i + 1, len(self.ordered), start,
                                eta_secs(start, self.now, build), build)
        return None


def snapshot(ctx: Context, builds: BuildTimes, entries: list[QueueEntry] | None = None,
             known: dict[str, RequestRecord] | None = None) -> Snapshot:
    """The queue as it stands: order, start times and typical builds (`known`: records
    already at hand)."""
    cfg = ctx.config()
    now = ctx.clock()
    entries = ctx.store.queue.entries() if entries is None else entries
    ordered = order(entries, held_by_owner(ctx, cfg))
    known = known or {}
    records = {e.id: r for e in ordered
               if (r := known.get(e.id) or ctx.store.requests.get(e.id)) is not None}
    rooms, freeing, members = farm_rooms(ctx, cfg, {e.os for e in ordered})
    needs = [need_of(cfg, e, records.get(e.id), members) for e in ordered]
    return Snapshot(ordered, records, start_times(needs, rooms, freeing, now),
                    {o: builds.secs(ctx, o) for o in {e.os for e in ordered}}, now)


BUILDS = BuildTimes()  # this process's memo of typical builds
