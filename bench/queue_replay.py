"""`python -m bench.queue_replay`: the queue's rules and demand-sized warm pools, replayed.

A seeded synthetic demand trace, identical for every variant: two days of four
owners with different habits (a nightly burst of ~200 single VMs in 10
minutes, a steady trickle of interactive single VMs, 10-VM all-or-none jobs,
a team with priority) on a farm holding about 60 % of the peak demand. It is
replayed in simulated time through the functions the dispatcher uses
(`dynvm.core.queueorder`: `order`, `start_times`, `may_backfill`) and the warm
pool rule (`dynvm.core.demand.target`), as a discrete-event model of the farm
(one slot per VM, builds of a fixed length): what it measures is the policy,
not XenAPI. Prints, for today's refusal (no queue), a FIFO queue and the queue
as specified: requests refused or expired, waits per owner and per size,
Jain's fairness index normalised by demand (each owner's VM-time held over its
max-min fair share while the farm is contended, `Fairness`), the longest wait
of a 10-VM request; then a warm pool sized by `ready=auto` against a static
`ready=N` of about the same idle VM-hours.
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.harness import percentile
from dynvm.core import demand
from dynvm.core.queueorder import Freeing, Need, Room, may_backfill, order, start_times
from dynvm.core.records import QueueEntry

HOUR, DAY = 3600.0, 86400.0
BUILD = 60.0  # seconds from room taken to an IP
WARM_HANDOUT = 2.0  # seconds from a ready VM to its caller's IP
MAX_WAIT = 4 * HOUR
OWNERS = ("nightly", "interactive", "jobs", "release")


@dataclass
class Ask:
    id: str
    owner: str
    at: float
    count: int
    lease: float
    priority: int = 0
    start: float | None = None  # when room was taken
    end: str = ""  # "" served, or refused / expired


def trace(seed: int, days: int = 2, scale: int = 1) -> list[Ask]:
    """The demand: the same for every variant (`scale`: 1/scale of it, as many VMs per
    request, for a replay on the simulator)."""
    rnd = random.Random(seed)
    out: list[Ask] = []
    for day in range(days):
        base = day * DAY
        for i in range(rnd.randint(190, 210) // scale):  # the nightly burst: 10 min from 01:00
            out.append(Ask(f"n{day}-{i}", "nightly", base + HOUR + rnd.uniform(0, 600), 1,
                           rnd.uniform(20, 40) * 60))
        t = base
        while t < base + DAY:  # interactive: a steady trickle, busier in the working day
            t += rnd.expovariate(1 / (240 if 7 * HOUR <= t - base < 20 * HOUR else 900) / scale)
            out.append(Ask(f"i{len(out)}", "interactive", t, 1, rnd.uniform(30, 120) * 60))
        for j in range(24):  # 10-VM all-or-none jobs, about hourly
            job = Ask(f"j{day}-{j}", "jobs", base + j * HOUR + rnd.uniform(0, 1800), 10,
                      rnd.uniform(30, 60) * 60)
            if j % scale == 0:
                out.append(job)
        for k in range(6):  # a release team with priority, in the evening rush
            rel = Ask(f"r{day}-{k}", "release", base + 18 * HOUR + k * 900, 4,
                      rnd.uniform(40, 60) * 60, priority=5)
            if k % scale == 0:
                out.append(rel)
    return sorted(out, key=lambda a: a.at)


@dataclass
class Farm:
    slots: int
    running: list[tuple[float, str, int]] = field(default_factory=list)  # (end, owner, n)

    def free(self, now: float) -> int:
        self.running = [r for r in self.running if r[0] > now]
        return self.slots - sum(n for _, _, n in self.running)

    def held(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for _, owner, n in self.running:
            out[owner] = out.get(owner, 0.0) + n
        return out


def water_fill(slots: float, demand: dict[str, float]) -> dict[str, float]:
    """Max-min fair shares of `slots` among owners demanding `demand` VMs: nobody gets more
    than it asks, and what one does not need is shared equally among the others."""
    share: dict[str, float] = {}
    left, rest = float(slots), sorted(demand, key=lambda o: demand[o])
    while rest:
        even = left / len(rest)
        owner = rest[0]
        if demand[owner] <= even:
            share[owner] = demand[owner]
            left -= demand[owner]
            rest.pop(0)
        else:
            for o in rest:
                share[o] = even
            break
    return share


@dataclass
class Fairness:
    """Jain's index with Jain's own normalisation for unequal demands: each owner's
    x = VM-time held / VM-time of its max-min fair share, integrated over the time the
    farm is contended (the demand of all owners, held or waiting, exceeds the farm). An
    owner that got its fair share has x = 1 whatever its demand; one kept out has x < 1,
    one holding more than its share has x > 1. A refused request's demand stays for the
    time it would have run: refusing is not serving."""

    slots: int
    held: dict[str, float] = field(default_factory=dict)
    fair: dict[str, float] = field(default_factory=dict)
    last: float = 0.0

    def observe(self, now: float, farm: Farm, waiting: list[Ask], refused: list[Ask]) -> None:
        """The farm and the queue were as they are from the last observation until `now`."""
        dt, self.last = now - self.last, now
        if dt <= 0:
            return
        holding: dict[str, float] = {}
        for end, owner, n in farm.running:
            if end > now - dt:
                holding[owner] = holding.get(owner, 0.0) + n
        demand = dict(holding)
        for a in waiting:
            demand[a.owner] = demand.get(a.owner, 0.0) + a.count
        for a in refused:
            if a.at < now and a.at + BUILD + a.lease > now - dt:
                demand[a.owner] = demand.get(a.owner, 0.0) + a.count
        if sum(demand.values()) <= self.slots:
            return  # room for everyone: nobody is treated unfairly
        for owner, fair in water_fill(self.slots, demand).items():
            self.fair[owner] = self.fair.get(owner, 0.0) + fair * dt
            self.held[owner] = self.held.get(owner, 0.0) + holding.get(owner, 0.0) * dt

    def ratios(self) -> dict[str, float]:
        return {o: self.held.get(o, 0.0) / f for o, f in self.fair.items() if f > 0}

    def index(self) -> float:
        return jain(list(self.ratios().values()))


def replay(asks: list[Ask], slots: int, variant: str) -> tuple[list[Ask], Fairness]:
    """Serve `asks` on a farm of `slots` VMs: "refuse", "fifo" or "queue" (as specified)."""
    asks = [Ask(a.id, a.owner, a.at, a.count, a.lease, a.priority) for a in asks]
    farm = Farm(slots)
    fairness = Fairness(slots)
    waiting: list[Ask] = []
    refused: list[Ask] = []
    events = [(a.at, 0, a.id) for a in asks]
    by_id = {a.id: a for a in asks}
    heapq.heapify(events)
    while events:
        now, kind, rid = heapq.heappop(events)
        fairness.observe(now, farm, waiting, refused)
        if kind == 0:
            a = by_id[rid]
            if variant == "refuse" and farm.free(now) < a.count:
                a.end = "refused"
                refused.append(a)
                continue
            waiting.append(a)
        for a in [w for w in waiting if now - w.at >= MAX_WAIT]:
            a.end = "expired"
            waiting.remove(a)
        for a in _choose(waiting, farm, now, variant):
            a.start = now
            waiting.remove(a)
            farm.running.append((now + BUILD + a.lease, a.owner, a.count))
            heapq.heappush(events, (now + BUILD + a.lease, 1, a.id))
        for a in waiting:  # look again when it would expire
            heapq.heappush(events, (a.at + MAX_WAIT, 2, a.id))
        events = sorted(set(events))
        heapq.heapify(events)
    return asks, fairness


def _choose(waiting: list[Ask], farm: Farm, now: float, variant: str) -> list[Ask]:
    free = farm.free(now)
    out: list[Ask] = []
    if variant in ("refuse", "fifo"):
        for a in sorted(waiting, key=lambda a: a.at):
            if a.count > free:
                break  # the head waits; nobody passes it
            out.append(a)
            free -= a.count
        return out
    entries = {a.id: QueueEntry(id=a.id, owner=a.owner, os="centos", count=a.count,
                                enqueued=a.at, deadline=a.at + MAX_WAIT, priority=a.priority,
                                lease_secs=a.lease) for a in waiting}
    ordered = order(entries.values(), farm.held())
    by_id = {a.id: a for a in waiting}
    head_start: float | None = None
    blocked = False
    for e in ordered:
        a = by_id[e.id]
        if blocked and not may_backfill(now, e, BUILD, head_start):
            continue
        if a.count <= free:
            out.append(a)
            free -= a.count
        elif not blocked:
            blocked = True
            rooms = {"farm": Room(free, free, 1e9)}
            ends = [Freeing(end, "farm", n, n, 0) for end, _, n in farm.running]
            need = Need(e.id, e.count, 1, 1, 0, frozenset({"farm"}))
            head_start = start_times([need], rooms, ends, now)[e.id]
    return out


def jain(xs: list[float]) -> float:
    return sum(xs) ** 2 / (len(xs) * sum(x * x for x in xs)) if xs and any(xs) else 1.0


def report(asks: list[Ask], fairness: Fairness, variant: str) -> None:
    served = [a for a in asks if a.start is not None]
    lost = [a for a in asks if a.end]
    print(f"\n{variant}: {len(asks)} requests, {len(served)} served, "
          f"{sum(a.end == 'refused' for a in lost)} refused, "
          f"{sum(a.end == 'expired' for a in lost)} expired after {MAX_WAIT / HOUR:.0f} h")
    print(f"  {'owner / size':<16} {'n':>5} {'p50 s':>8} {'p95 s':>8} {'max s':>8}")
    groups: dict[str, list[float]] = {}
    for a in served:
        assert a.start is not None
        groups.setdefault(a.owner, []).append(a.start - a.at)
        groups.setdefault(f"{a.count} VM(s)", []).append(a.start - a.at)
    for name, waits in groups.items():
        print(f"  {name:<16} {len(waits):>5} {statistics.median(waits):>8.0f} "
              f"{percentile(waits, 95):>8.0f} {max(waits):>8.0f}")
    ratios = fairness.ratios()
    print(f"  Jain's fairness index (VM-time held / max-min fair share, by owner, while the "
          f"farm is contended): {fairness.index():.2f}  ("
          + ", ".join(f"{o} {ratios[o]:.2f}" for o in OWNERS if o in ratios) + ")")
    tens = [a.start - a.at for a in served if a.count == 10 and a.start is not None]
    print(f"  longest wait of a 10-VM all-or-none request: {max(tens, default=0):.0f} s")


def warm(seed: int, weeks: int = 5) -> None:
    """A warm pool for the interactive owner: ready=auto against static sizes, with the idle
    VM-hours each costs (a static pool cannot match auto's fractional average exactly)."""
    rnd = random.Random(seed)
    arrivals = []
    for day in range(weeks * 7):
        t = day * DAY + 7 * HOUR
        while t < day * DAY + 20 * HOUR:
            t += rnd.expovariate(1 / 240)
            arrivals.append(t)
    history: list[dict[str, float | str]] = [
        {"os": "centos", "owner": "dev", "build_started": t, "create_duration_secs": BUILD}
        for t in arrivals]
    start = (weeks * 7 - 2) * DAY  # the last two days are measured, the weeks before teach
    measured = [t for t in arrivals if t >= start]

    def run(size_at: Callable[[float], int]) -> tuple[float, float, float]:
        """(hit rate, p95 seconds to an IP, idle VM-hours), in steps of a minute."""
        ready, idle, hits, i = 0, 0.0, 0, 0
        pending: list[float] = []
        waits: list[float] = []
        t = start
        while t < start + 2 * DAY:
            ready += sum(1 for r in pending if r <= t)
            pending = [r for r in pending if r > t]
            pending += [t + BUILD] * max(size_at(t) - ready - len(pending), 0)  # refills
            while i < len(measured) and measured[i] < t + 60:
                hit = int(ready > 0)
                ready -= hit
                hits += hit
                waits.append(WARM_HANDOUT if hit else BUILD)
                i += 1
            idle += ready / 60
            t += 60
        return hits / len(measured), percentile(waits, 95), idle

    docs = sorted(history, key=lambda d: -float(d["build_started"]))

    def auto(t: float) -> int:
        past = [d for d in docs if float(d["build_started"]) < demand.hour_start(t)]
        return demand.target(past, "centos", t, low=0, high=10, ready_owner="")

    memo: dict[float, int] = {}

    def auto_hourly(t: float) -> int:
        h = demand.hour_start(t)
        if h not in memo:
            memo[h] = auto(t)
        return memo[h]
    rows = [("ready=auto", run(auto_hourly))]
    for n in range(4):
        rows.append((f"ready={n} (static)", run(_static(n))))
    print("\nwarm pool, interactive single VMs (the last two of five weeks of the same habits):")
    print(f"  {'pool':<18} {'hit rate':>9} {'p95 to IP s':>12} {'idle VM-hours':>14}")
    for name, (hit, p95, idle) in rows:
        print(f"  {name:<18} {hit:>9.1%} {p95:>12.0f} {idle:>14.1f}")
    same = equal_idle(rows[0][1][2], [r for _, r in rows[1:]])
    if same is not None:
        print(f"  a static pool at ready=auto's idle VM-hours (between the static sizes around "
              f"it, linearly): hit rate {same:.1%}")


def equal_idle(idle: float, static: list[tuple[float, float, float]]) -> float | None:
    """The hit rate a static pool would have at `idle` VM-hours: linear between the two
    static sizes around it (a pool of N part of the time and N+1 the rest)."""
    for (h0, _, i0), (h1, _, i1) in zip(static, static[1:], strict=False):
        if i0 <= idle <= i1 and i1 > i0:
            return h0 + (h1 - h0) * (idle - i0) / (i1 - i0)
    return None


def _static(size: int) -> Callable[[float], int]:
    return lambda _t: size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=20)
    args = ap.parse_args()
    asks = trace(args.seed)
    peak = max(sum(a.count for a in asks if a.at <= t < a.at + BUILD + a.lease)
               for t in [a.at for a in asks])
    slots = int(peak * 0.6)
    print(f"trace: {len(asks)} requests over 2 days, peak demand {peak} VMs, farm {slots} VMs")
    for variant in ("refuse", "fifo", "queue"):
        served, fairness = replay(asks, slots, variant)
        report(served, fairness, variant)
    warm(args.seed)


if __name__ == "__main__":
    main()
