"""The queue's rules as pure functions: who goes next, who may jump ahead, and when each
request could start.

- **Order** (`order`): higher priority first. Within a priority, fair between
  owners: the owner holding the least (each VM weighted by its size, what
  goes ahead of it in this order counted as held) goes next; one owner's
  requests keep their arrival order.
- **Backfill** (`may_backfill`): when the request at the head cannot be served
  yet, room that frees is kept for it; a request behind it may still be
  served now only if its VMs' leases end before the head could start anyway,
  so serving it never delays the head (as backfilling batch schedulers do).
- **Start times** (`start_times`): from each member host's free room and the
  expiries of the leases on it, when each request in order would find room,
  the requests ahead of it served first. The ETA adds the build time.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from dynvm.core.records import QueueEntry


def order(entries: Iterable[QueueEntry], held: Mapping[str, float]) -> list[QueueEntry]:
    """The entries in the order they are to be served.

    `held`: each owner's weighted VMs now (leases and room being built).
    """
    held = dict(held)
    by_priority: dict[int, dict[str, deque[QueueEntry]]] = {}
    for e in sorted(entries, key=lambda e: (e.enqueued, e.id)):
        by_priority.setdefault(e.priority, {}).setdefault(e.owner, deque()).append(e)
    out: list[QueueEntry] = []
    for priority in sorted(by_priority, reverse=True):
        heads = by_priority[priority]
        while heads:
            owner = min(heads, key=lambda o: (held.get(o, 0.0), heads[o][0].enqueued,
                                              heads[o][0].id))
            e = heads[owner].popleft()
            out.append(e)
            held[owner] = held.get(owner, 0.0) + e.weight * e.count
            if not heads[owner]:
                del heads[owner]
    return out


def may_backfill(now: float, entry: QueueEntry, build_secs: float,
                 head_start: float | None) -> bool:
    """Whether `entry` may be served ahead of a head that cannot start before `head_start`
    (None: no head is waiting, or no known expiry would ever make room for it)."""
    if head_start is None:
        return True
    return now + build_secs + entry.lease_secs <= head_start


@dataclass(frozen=True)
class Room:
    """What is free on one member host now, in the units a VM takes."""

    vcpus: float
    memory_gib: float
    disk_gib: float
    vms_left: int | None = None  # host.vms.max.<os> left (None: no cap)

    def fits(self, need: Need) -> int:
        """How many of `need`'s VMs fit here."""
        n = min(self.vcpus // max(need.vcpus, 1), self.memory_gib // max(need.memory_gib, 1e-9),
                self.disk_gib // max(need.disk_gib, 1e-9))
        if self.vms_left is not None:
            n = min(n, self.vms_left)
        return max(int(n), 0)

    def less(self, need: Need, n: int) -> Room:
        return Room(self.vcpus - n * need.vcpus, self.memory_gib - n * need.memory_gib,
                    self.disk_gib - n * need.disk_gib,
                    None if self.vms_left is None else self.vms_left - n)

    def plus(self, f: Freeing) -> Room:
        return Room(self.vcpus + f.vcpus, self.memory_gib + f.memory_gib,
                    self.disk_gib + f.disk_gib,
                    None if self.vms_left is None else self.vms_left + 1)


@dataclass(frozen=True)
class Freeing:
    """A leased VM's room, given back on `host` when its lease ends at `at`."""

    at: float
    host: str
    vcpus: float
    memory_gib: float
    disk_gib: float


@dataclass(frozen=True)
class Need:
    """What one queued request needs: `count` VMs of this size on any of `hosts`."""

    id: str
    count: int
    vcpus: float
    memory_gib: float
    disk_gib: float
    hosts: frozenset[str]
    lease_secs: float = 0.0


def start_times(needs: Sequence[Need], rooms: Mapping[str, Room],
                freeing: Iterable[Freeing], now: float) -> dict[str, float | None]:
    """When each request (in serving order) would find its room: now, or as leases end,
    each taking room from those behind it; None if no known expiry ever makes room.

    Estimates: each request starts no earlier than the one before it, and the
    room a request takes is kept for its whole lease.
    """
    rooms = dict(rooms)
    events = sorted(freeing, key=lambda f: f.at)
    i = 0  # the next event not yet given back
    t = now
    out: dict[str, float | None] = {}
    for need in needs:
        before = (dict(rooms), i, t)  # a request nothing will make room for changes nothing
        while True:
            got = sum(rooms[h].fits(need) for h in need.hosts if h in rooms)
            if got >= need.count:
                break
            if i >= len(events):
                break
            f = events[i]
            i += 1
            t = max(t, f.at)
            if f.host in rooms:
                rooms[f.host] = rooms[f.host].plus(f)
        if sum(rooms[h].fits(need) for h in need.hosts if h in rooms) < need.count:
            out[need.id] = None
            rooms, i, t = before
            continue
        out[need.id] = t
        left = need.count
        for h in sorted(need.hosts & rooms.keys(), key=lambda h: -rooms[h].fits(need)):
            n = min(rooms[h].fits(need), left)
            rooms[h] = rooms[h].less(need, n)
            left -= n
            if not left:
                break
    return out


def eta_secs(start: float | None, now: float, build_secs: float) -> float | None:
    """Seconds until the request's VMs are ready, from its start time."""
    if start is None or math.isinf(start):
        return None
    return max(start - now, 0.0) + build_secs
