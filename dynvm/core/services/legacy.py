"""The legacy API's use cases (what Jenkins jobs call): show, count, get, release, extend.

Each takes what the route validated (`ServersRequest`, a `Target`) and answers
the records the route formats (`ShowAll`, `Available`, `ServersResult`, names).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from dynvm.config import HostConfig
from dynvm.core import getservers, legacywait, warmpool
from dynvm.core.answers import Available, ServersRequest, ServersResult, ShowAll
from dynvm.core.callers import Caller
from dynvm.core.capacity import vm_os
from dynvm.core.errors import BadRequest, NotFound, StoreDown
from dynvm.core.maintenance.state import placement_blocked
from dynvm.core.placement import candidates, eligible_hosts, views_of
from dynvm.core.release import Target, release_target, set_expiry
from dynvm.core.services.base import Runtime, Subject
from dynvm.core.store import Reservation, StoreUnavailable
from dynvm.core.store_cache import MAX_KEYS, PerGeneration


@dataclass(frozen=True)
class _Room:
    """What the store says about room on the hosts: reservations and blocked hosts."""

    reservations: list[Reservation]
    blocked: frozenset[str]
    lapses: float  # the wall time the first of the reservations stops counting


def _same(a: tuple, b: tuple) -> bool:
    """(room, ready, views): the same views, an equal room and ready count (a store write
    that changed neither, a heartbeat, keeps the count)."""
    return (a[0] == b[0] and a[1] == b[1] and len(a[2]) == len(b[2])
            and all(x is y for p, q in zip(a[2], b[2], strict=True)
                    for x, y in zip(p, q, strict=True)))


class LegacyServers(Subject):
    """/showall, /getavailablecount, /getservers, /releaseservers, /setexpiry."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self._showall_memo: tuple | None = None
        self._store_reads = PerGeneration(rt.ctx.store, rt.ctx.clock)
        self._counts = threading.local()  # this thread's last counts (see `count`)

    def os_keys(self) -> frozenset[str]:
        """The OS keys some host serves (what `os=` may name)."""
        return getservers.served_os(self.rt.config())

    def host_refs(self) -> set[int]:
        """The configured host numbers (what `xhostref=` may name)."""
        return set(self.rt.config().hosts)

    def _check_os(self, os: str) -> None:
        if os not in getservers.served_os(self.rt.config()):
            raise BadRequest(f"Error: unknown os '{os}'")

    # -- reads ------------------------------------------------------------------------
    def show_all(self, os: str | None, labels: frozenset[str], ignore_labels: bool) -> ShowAll:
        cfg = self.rt.touch()
        if os is not None:
            self._check_os(os)
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
        cfg = self.rt.touch()
        self._check_os(os)
        return self.count(eligible_hosts(cfg, os, labels, ignore_labels), os)

    def count(self, hosts: list[HostConfig], os: str) -> Available:
        """How many VMs of `os` fit now on `hosts`, ready warm VMs included.

        The same views (the inventory re-issues one object per change) and the
        same store generation give the same count: each thread keeps its last
        one per OS and hosts, so a monitor polling many times a second costs one
        generation read per poll until something changes.
        """
        views, down = views_of(hosts, self.ctx.view)
        # Without the store the room being taken is unknown: no count at all, not a guess.
        room = self.rt.read(lambda: self._store_reads.read("room", self._read_room,
                                                           until=lambda r: r.lapses))
        refs = frozenset(h.ref for h, _ in views)
        ready = (self.rt.read(lambda: self._store_reads.read(
                     ("warm vms", os, refs), lambda: warmpool.ready_count(self.ctx, os, set(refs))))
                 if os in self.rt.config().pools else 0)  # no pool: no ready VMs to read
        age = max((v.age_secs for _, v in views), default=0.0)
        seen = (room, ready, tuple((hc, v.hosts, v.vms, v.templates) for hc, v in views))
        memo: dict[tuple, tuple[tuple, int]] = self._counts.__dict__.setdefault("by", {})
        key = (os, tuple(h.ref for h in hosts))
        last = memo.get(key)
        if last is not None and _same(last[0], seen):
            return Available(last[1], down, age)
        count = sum(c.slots for c in candidates(views, os, room.reservations, None,
                                                room.blocked)) + ready
        if len(memo) > MAX_KEYS:
            memo.clear()
        memo[key] = (seen, count)
        return Available(count, down, age)

    def _read_room(self) -> _Room:
        store = self.ctx.store
        reservations = store.reservations.live()
        lapses = min((r.settle_until if r.settle_until is not None else r.expires
                      for r in reservations), default=math.inf)
        return _Room(reservations, placement_blocked(store), lapses)

    def available_by_label(self, os: str) -> list[dict]:
        """The count per host label, then `default` (hosts of any label)."""
        cfg = self.rt.touch()
        self._check_os(os)
        labels = sorted({lbl for h in cfg.hosts.values() for lbl in h.labels})
        out = []
        for lbl in labels:
            hosts = eligible_hosts(cfg, os, frozenset({lbl}), False)
            out.append({"label": lbl, "count": self.count(hosts, os).count})
        out.append({"label": "default",
                    "count": self.count(eligible_hosts(cfg, os, frozenset(), False), os).count})
        return out

    # -- writes -----------------------------------------------------------------------
    def get_servers(self, req: ServersRequest) -> ServersResult:
        """Served at once (the seed's behaviour), or, with a wait (`wait=`, `[queue]
        legacy.wait.secs`), through the queue for at most that long."""
        cfg = self.rt.touch()
        legacywait.refuse_explicit_wait(req)
        wait = cfg.queue.legacy_wait(req.wait_secs)
        if wait > 0 and legacywait.may_wait(req):
            return legacywait.get_servers(self.ctx, req, wait)
        return getservers.get_servers(self.ctx, req)

    def release_servers(self, target: Target, state: str | None,
                        caller: Caller | None = None) -> list[str]:
        """Release what `target` names; with a caller, only if it may act on all of it."""
        self.rt.touch()
        released = release_target(self.ctx, target, reason="released", release_state=state,
                                  caller=caller)
        if not released:
            raise NotFound(f"Error: VM {target.said} doesn't exist")
        return released

    def set_expiry(self, target: Target, minutes: int, from_created: bool,
                   caller: Caller | None = None) -> list[str]:
        self.rt.touch()
        try:
            changed = set_expiry(self.ctx, target, minutes, from_created, caller)
        except StoreUnavailable as exc:
            raise StoreDown(f"Error: the state store is unreachable ({exc})") from exc
        if not changed:
            raise NotFound(f"Error: VM {target.said} doesn't exist")
        return changed
