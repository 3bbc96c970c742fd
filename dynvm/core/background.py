"""The background worker: one per process, doing leader-only work when elected.

Every process keeps its heartbeat (so others can tell it is alive) and
replays its own store outbox. Exactly one process in the whole deployment —
the holder of the `background` lock — runs expiry, the warm-pool filler,
reconciliation and the fleet's convergence; if it dies, another takes over when the lock's TTL lapses.

Each of these runs in a thread of its own, on its own schedule. The
heartbeat and the leader lock are renewed by a loop that does nothing else,
so a duty that takes long (a release on a slow host: XenAPI calls may take a
minute) never lets the process pass for dead; another instance would then
take over and destroy the VMs this one is still building. Each duty does
bounded work per run and picks up the rest on its next run.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from dynvm.core import queueing
from dynvm.core.context import Context
from dynvm.core.dispatch import Dispatcher
from dynvm.core.fleet.converge import Converger
from dynvm.core.liveness import HEARTBEAT_PREFIX, instance_alive
from dynvm.core.reconcile import ORPHAN_GRACE_SECS, Reconciler
from dynvm.core.release import expire_due, expire_from_tags
from dynvm.core.store import StoreError, StoreUnavailable
from dynvm.core.warmpool import Filler

log = logging.getLogger("dynvm.background")

LEADER_LOCK = "background"
EXPIRE_PER_RUN = 10  # leases released per expiry run; the next run goes on


@dataclass(frozen=True)
class Timings:
    tick: float = 1.0  # how often expiry, the outbox and the warm-pool filler run
    leader_ttl: float = 10.0
    heartbeat_ttl: float = 20.0
    reconcile_every: float = 15.0
    fleet_every: float = 15.0  # how often the leader keeps the fleet converged
    orphan_grace: float = ORPHAN_GRACE_SECS

    @property
    def beat(self) -> float:
        """How often the heartbeat and the leader lock are renewed: well within both TTLs."""
        return min(self.heartbeat_ttl, self.leader_ttl) / 4


LOOPS = 7  # the loops `ensure_started` starts


class Background:
    """Started lazily in each worker process (never before a fork)."""

    def __init__(self, ctx: Context, timings: Timings | None = None) -> None:
        self.ctx = ctx
        self.t = timings or Timings()
        self.filler = Filler(ctx)
        self.reconciler = Reconciler(ctx, orphan_grace=self.t.orphan_grace)
        self.converger = Converger(ctx, ctx.fleet_port)
        self.dispatcher = Dispatcher(ctx)
        self.is_leader = False
        self._errors: dict[str, str | None] = {}
        self._stop = threading.Event()
        self._threads: dict[str, threading.Thread] = {}
        self._pid = 0
        self._start_lock = threading.Lock()
        self.reconcile_passes = 0  # for /health and for tests that wait for a pass
        self.beats = 0  # heartbeats renewed, for tests that wait for one
        self.fleet_passes = 0  # passes of the fleet duty, for tests that wait for one
        self.fleet_stats: dict[str, int] = {}

    @property
    def last_error(self) -> str | None:
        return next((e for e in self._errors.values() if e), None)

    def ensure_started(self) -> None:
        """Start every loop that is not running in this process (after a fork: all of them)."""
        threads = self._threads  # every request asks: no lock while all of them run
        if self._pid == os.getpid() and len(threads) == LOOPS and all(
                t.is_alive() for t in threads.values()):
            return
        with self._start_lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._threads = {}
                self._stop.clear()
            loops: list[tuple[str, Callable[[], None], float, threading.Event | None]] = [
                ("liveness", self.beat, self.t.beat, None),
                ("outbox", self.replay, self.t.tick, None),
                ("expiry", self.expire, self.t.tick, None),
                ("pool", self.fill, self.t.tick, None),
                ("queue", self.dispatch, self.t.tick, self.ctx.room_freed),
                ("reconcile", self.reconcile, self.t.reconcile_every, None),
                ("fleet", self.converge, self.t.fleet_every, None),
            ]
            assert len(loops) == LOOPS
            for name, fn, every, bell in loops:
                thread = self._threads.get(name)
                if thread is not None and thread.is_alive():
                    continue
                thread = threading.Thread(target=self._loop, args=(name, fn, every, bell),
                                          name=f"dynvm-{name}", daemon=True)
                self._threads[name] = thread
                thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.ctx.room_freed.set()  # wakes the queue's loop to see it must stop
        if self._pid == os.getpid():
            deadline = time.monotonic() + 5
            for thread in self._threads.values():
                thread.join(timeout=max(deadline - time.monotonic(), 0.1))
        self.filler.close()
        if self.is_leader:
            try:
                self.ctx.store.locks.release(LEADER_LOCK, self.ctx.instance)
            except StoreError:
                pass
        try:
            self.ctx.store.locks.release(HEARTBEAT_PREFIX + self.ctx.instance, self.ctx.instance)
        except StoreError:
            pass

    def _loop(self, name: str, fn: Callable[[], None], every: float,
              bell: threading.Event | None = None) -> None:
        """Run `fn` every `every` seconds, and at once when `bell` rings."""
        # Duties wait one interval first: a starting worker answers its first
        # requests before the leader's work competes with them.
        wait = self.ctx.clock.wait
        if name != "liveness" and wait(self._stop, every):
            return
        while not self._stop.is_set():
            if bell is not None:
                bell.clear()  # before the run: a ring during it runs it again
            try:
                fn()
                self._errors[name] = None
            except Exception as exc:  # keep looping: the store or a host may come back
                self._errors[name] = f"{name}: {exc}"
                log.warning("background %s failed: %s", name, exc)
            wait(bell or self._stop, every)

    # -- every process ------------------------------------------------------------------
    def beat(self) -> None:
        """Renew the heartbeat, then take or keep the leader lock. Nothing else, ever."""
        store = self.ctx.store
        store.locks.acquire(HEARTBEAT_PREFIX + self.ctx.instance, self.ctx.instance,
                             self.t.heartbeat_ttl)
        self.beats += 1
        was = self.is_leader
        self.is_leader = store.locks.acquire(LEADER_LOCK, self.ctx.instance, self.t.leader_ttl)
        if self.is_leader != was:
            log.info("%s background leadership", "took" if self.is_leader else "lost")

    def replay(self) -> None:
        self.ctx.store.replay()

    # -- the leader's duties --------------------------------------------------------------
    def expire(self) -> None:
        if not self.is_leader:
            return
        try:
            expire_due(self.ctx, limit=EXPIRE_PER_RUN)
        except StoreUnavailable:
            expire_from_tags(self.ctx)  # the last known leader keeps expiring, from the tags
            raise

    def fill(self) -> None:
        if self.is_leader:
            self.filler.tick()

    def converge(self) -> None:
        """The fleet's VMs keep running (`dynvm.core.fleet.converge`)."""
        if self.is_leader and self.ctx.fleet is not None:
            self.fleet_stats = self.converger.run()
            self.fleet_passes += 1

    def dispatch(self) -> None:
        """Serve the queue: room taken for waiting requests as it frees."""
        if self.is_leader:
            self.dispatcher.run()

    def reconcile(self) -> None:
        if not self.is_leader:
            return
        stats = self.reconciler.run()
        stats["queue"] = queueing.repair(self.ctx, lambda i: instance_alive(self.ctx, i))
        self.reconcile_passes += 1
        if any(v for k, v in stats.items() if k != "foreign"):  # foreign VMs: logged once each
            log.warning("reconciled: %s", stats)
