"""`python -m bench.queue_sim_replay`: the demand trace of `bench.queue_replay`, scaled
down, replayed through dynvm itself on the XAPI simulator, in simulated time.

Where `bench.queue_replay` models the farm, this one runs the real thing: dynvm
in process over its SQLite store, the simulator over XML-RPC, every request a
v1 request (`queue: false` for today's refusal), its VMs built, leased, expired
and destroyed on the simulator. Time is a clock the replay moves itself (the
`SteppedClock` the tests use): it jumps to the next arrival, lease end or
queue deadline, then the leader's duties run (leases expire, the dispatcher
serves the queue) and the builds finish before it moves on, so the figures do
not depend on the machine's pace. Builds take the simulator's (short) time, not
60 s. The FIFO variant swaps the dispatcher's order for arrival order and lets
nobody pass the head; that swap lives here only.

Prints, per variant: requests served, refused, expired; wait p50 / p95 / max
per owner and per size; the longest wait of a 10-VM request; Jain's fairness
index normalised by demand (`bench.queue_replay.Fairness`, from the farm's
leases and the queue as the store holds them).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from bench.queue_replay import BUILD, MAX_WAIT, Ask, Fairness, Farm, report, trace
from dynvm.core import dispatch, queueing
from dynvm.core.errors import DynvmError
from dynvm.core.records import QueueEntry
from dynvm.core.release import expire_due
from dynvm.core.services import Dynvm, NewRequest
from dynvm.core.store import LEASE_READY, LEASE_RELEASING
from dynvm.runtime.bootstrap import build_service
from dynvm.sim import Farm as SimFarm
from testbed.clock import SteppedClock
from testbed.inis import Ini
from testbed.serving import wait_until

POOLS, MEMBERS = 2, 2  # member hosts per pool


def _fifo(entries: Iterable[QueueEntry], held: Mapping[str, float]) -> list[QueueEntry]:
    return sorted(entries, key=lambda e: (e.enqueued, e.id))


def _never(now: float, entry: QueueEntry, build_secs: float, head_start: float | None) -> bool:
    return False


@contextlib.contextmanager
def fifo_only() -> Iterator[None]:
    """The dispatcher serves in arrival order and nobody passes the head."""
    saved = (queueing.order, queueing.may_backfill, dispatch.may_backfill)
    queueing.order = _fifo
    queueing.may_backfill = dispatch.may_backfill = _never
    try:
        yield
    finally:
        queueing.order, queueing.may_backfill, dispatch.may_backfill = saved


def service(work: Path, sim: SimFarm, per_member: int, clock: SteppedClock) -> Dynvm:
    ini = (Ini.of_farm(sim).set_hosts({"host.vms.max.centos": per_member})
           .sqlite_store(work)
           .set("common", {"vm.network.timeout.secs": 60, "vm.expiry.minutes": 24 * 60})
           .merge(Ini.parse(f"[queue]\nmax_wait_minutes={int(MAX_WAIT / 60)}\n"
                            f"max_wait_minutes.max={int(MAX_WAIT / 60)}\n"
                            "[quota release]\npriority.max=5\n"))
           .write(work / "dynvm.ini"))
    svc = build_service(str(ini), background=False, clock=clock)
    svc.background.beat()  # the leader: its duties are run by the replay, one pass at a time
    return svc


def settle(svc: Dynvm) -> None:
    """Run the leader's duties until nothing moves: leases due expire, the queue is served,
    every build started has ended and the farm's view shows what the store holds."""
    ctx = svc.ctx
    while True:
        expire_due(ctx)
        served = svc.background.dispatcher.run()
        wait_until(lambda: not ctx.store.requests.find("running"), timeout=600,
                   what="the builds to end")
        wait_until(lambda: _view_matches(svc), timeout=120, what="the farm's view")
        if not served:
            return


def _view_matches(svc: Dynvm) -> bool:
    leased = {lease.name for lease in svc.ctx.store.leases.find()
              if lease.state not in (LEASE_READY, LEASE_RELEASING)}
    seen = set()
    for hc in svc.config().hosts.values():
        seen |= {vm.name_label for vm in svc.ctx.view(hc).vms.values()}
    return seen == leased


def replay(asks: list[Ask], slots: int, variant: str, speed: float) -> tuple[list[Ask], Fairness]:
    per_member = max(slots // (POOLS * MEMBERS), 1)
    asks = [Ask(a.id, a.owner, a.at, a.count, a.lease, a.priority) for a in asks]
    clock = SteppedClock()
    fairness = Fairness(per_member * POOLS * MEMBERS)
    with tempfile.TemporaryDirectory(prefix="dynvm-qsim-") as tmp, \
            SimFarm.generate(pools=POOLS, hosts=MEMBERS, speed=speed) as sim, \
            (fifo_only() if variant == "fifo" else contextlib.nullcontext()):
        svc = service(Path(tmp), sim, per_member, clock)
        t0 = clock()
        ids: dict[str, str] = {}
        try:
            pending = list(asks)
            while pending or svc.ctx.store.queue.entries():
                due = [t0 + a.at for a in pending[:1]]
                due += [lease.expires for lease in svc.ctx.store.leases.find()
                        if lease.state not in (LEASE_READY, LEASE_RELEASING)]
                due += [e.deadline for e in svc.ctx.store.queue.entries()]
                nxt = min(due)
                if nxt > clock():
                    clock.advance(nxt - clock())
                _observe(fairness, svc, clock() - t0, asks, ids)
                while pending and t0 + pending[0].at <= clock():
                    a = pending.pop(0)
                    ids[a.id] = _ask(svc, a, variant)
                settle(svc)
        finally:
            _outcomes(svc, asks, ids)
            svc.close()
    return asks, fairness


def _ask(svc: Dynvm, a: Ask, variant: str) -> str:
    new = NewRequest(owner=a.owner, os="centos", count=a.count, name=a.id.replace("-", "x") + "v",
                     lease_minutes=max(round(a.lease / 60), 1), priority=a.priority,
                     queue=variant != "refuse", max_wait_minutes=int(MAX_WAIT / 60))
    try:
        return svc.requests.submit(new).id
    except DynvmError:
        a.end = "refused"
        return ""


def _observe(fairness: Fairness, svc: Dynvm, now: float, asks: list[Ask],
             ids: dict[str, str]) -> None:
    """The farm and the queue as the store holds them, for the fairness figure."""
    by_id = {rid: a for a in asks if (rid := ids.get(a.id))}
    farm = Farm(fairness.slots)
    for lease in svc.ctx.store.leases.find():
        if lease.state not in (LEASE_READY, LEASE_RELEASING):
            farm.running.append((now + 1.0, lease.owner, 1))
    waiting = [by_id[e.id] for e in svc.ctx.store.queue.entries() if e.id in by_id]
    refused = [a for a in asks if a.end == "refused"]
    fairness.observe(now, farm, waiting, refused)


def _outcomes(svc: Dynvm, asks: list[Ask], ids: dict[str, str]) -> None:
    for a in asks:
        rec = svc.ctx.store.requests.get(ids[a.id]) if ids.get(a.id) else None
        if rec is None:
            continue
        q = rec.detail.get("queue") or {}
        if rec.state in ("done", "partial", "running"):
            a.start = a.at + (float(q["served"]) - rec.started if "served" in q else 0.0)
        elif rec.state in ("expired", "refused", "failed", "cancelled"):
            a.end = rec.state


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument("--scale", type=int, default=5, help="1/scale of the model's demand")
    ap.add_argument("--speed", type=float, default=200.0, help="the simulator's speed-up")
    ap.add_argument("--variants", default="refuse,fifo,queue")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # a lease destroyed under a read is expected
    asks = trace(args.seed, scale=args.scale)
    peak = max(sum(a.count for a in asks if a.at <= t < a.at + BUILD + a.lease)
               for t in [a.at for a in asks])
    slots = max(int(peak * 0.6) // (POOLS * MEMBERS), 1) * POOLS * MEMBERS
    print(f"trace 1/{args.scale}: {len(asks)} requests over 2 days, peak demand {peak} VMs, "
          f"farm {slots} VMs on {POOLS * MEMBERS} simulated hosts")
    started = time.monotonic()
    for variant in args.variants.split(","):
        report(*replay(asks, slots, variant, args.speed), variant)
    print(f"\n{time.monotonic() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
