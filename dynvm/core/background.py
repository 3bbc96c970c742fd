"""The background worker: one per process, doing leader-only work when elected.

Every process keeps its heartbeat (so others can tell it is alive) and
replays its own store outbox. Exactly one process in the whole deployment —
the holder of the `background` lock — runs expiry, the warm-pool filler and
crash reconciliation; if it dies, another takes over when the lock's TTL
lapses.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

from dynvm.core.context import Context
from dynvm.core.reconcile import HEARTBEAT_PREFIX, reconcile
from dynvm.core.release import expire_due, expire_from_tags
from dynvm.core.warmpool import Filler
from dynvm.store.base import StoreError, StoreUnavailable

log = logging.getLogger("dynvm.background")

LEADER_LOCK = "background"


@dataclass(frozen=True)
class Timings:
    tick: float = 1.0
    leader_ttl: float = 10.0
    heartbeat_ttl: float = 20.0
    reconcile_every: float = 15.0


class Background:
    """Started lazily in each worker process (never before a fork)."""

    def __init__(self, ctx: Context, timings: Timings | None = None) -> None:
        self.ctx = ctx
        self.t = timings or Timings()
        self.filler = Filler(ctx)
        self.is_leader = False
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._last_reconcile = 0.0
        self.reconcile_passes = 0  # for /health and for tests that wait for a pass
        self._last_heartbeat = 0.0

    def ensure_started(self) -> None:
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        self._pid = os.getpid()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="dynvm-background", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._pid == os.getpid():
            self._thread.join(timeout=5)
        self.filler.close()
        if self.is_leader:
            try:
                self.ctx.store.release_leader(LEADER_LOCK, self.ctx.instance)
            except StoreError:
                pass
        try:
            self.ctx.store.release_leader(HEARTBEAT_PREFIX + self.ctx.instance, self.ctx.instance)
        except StoreError:
            pass

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
                self.last_error = None
            except Exception as exc:  # keep looping: the store or a host may come back
                self.last_error = str(exc)
                log.warning("background tick failed: %s", exc)
            self._stop.wait(self.t.tick)

    def tick(self) -> None:
        try:
            self._tick()
        except StoreUnavailable:
            if self.is_leader:  # the last known leader keeps expiring, from the VMs' tags
                expire_from_tags(self.ctx)
            raise

    def _tick(self) -> None:
        store = self.ctx.store
        now = time.monotonic()
        if now - self._last_heartbeat >= self.t.heartbeat_ttl / 4:
            store.acquire_leader(HEARTBEAT_PREFIX + self.ctx.instance, self.ctx.instance,
                                 self.t.heartbeat_ttl)
            self._last_heartbeat = now
        replay = getattr(store, "replay", None)
        if replay is not None:
            replay()
        was = self.is_leader
        self.is_leader = store.acquire_leader(LEADER_LOCK, self.ctx.instance, self.t.leader_ttl)
        if self.is_leader != was:
            log.info("%s background leadership", "took" if self.is_leader else "lost")
        if not self.is_leader:
            return
        expire_due(self.ctx)
        self.filler.tick()
        if now - self._last_reconcile >= self.t.reconcile_every:
            self._last_reconcile = now
            stats = reconcile(self.ctx)
            self.reconcile_passes += 1
            if any(stats.values()):
                log.warning("reconciled: %s", stats)
