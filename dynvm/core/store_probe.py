"""The store's health, as /health and readiness checks report it: readable AND writable.

A probe runs in a thread of its own and is waited for at most `timeout`
seconds, so a hung store (a held write lock, a stalled disk or cluster) makes
the check answer "failing" in time instead of hanging the balancer's probe.
While a probe hangs no second one is started: checks share its outcome.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from dynvm.core.clock import SYSTEM, Clock
from dynvm.core.store import Store

PROBE_TIMEOUT_SECS = 1.5


@dataclass
class _Probe:
    started: float
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


class StoreProbe:
    """Checks that a store can be read and written, within a bounded time."""

    def __init__(self, store: Store, timeout: float = PROBE_TIMEOUT_SECS,
                 clock: Clock = SYSTEM) -> None:
        self.store = store
        self.clock = clock
        self.timeout = timeout
        self._lock = threading.Lock()
        self._running: _Probe | None = None

    def _run(self, probe: _Probe) -> None:
        try:
            self.store.ping()
            self.store.ping_write()
        except Exception as exc:  # any failure is the answer, whatever its type
            probe.error = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        finally:
            probe.done.set()

    def check(self) -> dict[str, Any]:
        """{"ok": bool, "error"?: one line}; never takes much longer than `timeout`."""
        with self._lock:
            probe = self._running
            if probe is None or probe.done.is_set():
                probe = _Probe(started=self.clock.monotonic())
                self._running = probe
                threading.Thread(target=self._run, args=(probe,), daemon=True,
                                 name="dynvm-store-probe").start()
        # The probe's own deadline: a check joining a probe that already hangs waits only
        # what is left of it, so no check waits much longer than `timeout`.
        left = probe.started + self.timeout - self.clock.monotonic()
        if not self.clock.wait(probe.done, left):
            waited = self.clock.monotonic() - probe.started
            return {"ok": False,
                    "error": f"the store did not answer a read and a write within {waited:.1f}s"}
        if probe.error:
            return {"ok": False, "error": probe.error}
        return {"ok": True}
