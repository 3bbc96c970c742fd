"""A store lock held for as long as a piece of work takes: renewed in a thread of its own,
so a long step (a build, a migration) never lets the lock lapse under its holder, and a
holder that dies frees it within its TTL."""

from __future__ import annotations

import logging
import threading

from dynvm.core.clock import Clock
from dynvm.core.store import Store, StoreError

log = logging.getLogger("dynvm.locks")


class HeldLock:
    def __init__(self, store: Store, name: str, holder: str, ttl: float, clock: Clock) -> None:
        self.store, self.name, self.holder, self.ttl, self.clock = store, name, holder, ttl, clock
        self._stop = threading.Event()
        self.lost = threading.Event()  # renewal failed: another may hold it now

    def acquire(self, wait: float = 0.0, poll: float = 0.5) -> bool:
        """Take the lock, waiting up to `wait` seconds for its holder to let it go."""
        deadline = self.clock.monotonic() + wait
        while not self.store.locks.acquire(self.name, self.holder, self.ttl):
            if self.clock.monotonic() >= deadline:
                return False
            self.clock.sleep(poll)
        threading.Thread(target=self._keep, name=f"dynvm-lock-{self.name}", daemon=True).start()
        return True

    def current_holder(self) -> str | None:
        return self.store.locks.holder(self.name)

    def _keep(self) -> None:
        while not self.clock.wait(self._stop, self.ttl / 4):
            try:
                if not self.store.locks.acquire(self.name, self.holder, self.ttl):
                    self.lost.set()
                    return
            except StoreError:  # a store hiccup: the next beat tries again within the TTL
                log.warning("lock %s: renewal failed", self.name, exc_info=True)

    def release(self) -> None:
        self._stop.set()
        try:
            self.store.locks.release(self.name, self.holder)
        except StoreError:  # it lapses on its own
            log.warning("lock %s: not released (it lapses within %.0f s)", self.name, self.ttl)
