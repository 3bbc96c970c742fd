"""`kill -HUP` without a stall: the old workers serve until the new ones do.

gunicorn's own reload starts the new workers and stops the old ones at once.
A new dynvm worker warms up before it accepts a connection (`serving.warm_up`:
the store, the pools' views from the inventory process), so for that long
nobody accepted and every request waited in the listen queue. Here
the master stops an old worker only for each new one that serves: a worker
serves once it beats gunicorn's heartbeat (`WorkerTmp.notify`), which the
threaded worker first does right after it starts accepting.
"""

from __future__ import annotations

import signal
import time
from typing import Any

from gunicorn.arbiter import Arbiter

from dynvm.runtime.serving import WARM_UP_SECS

# Old workers are stopped after this long even if the new ones never serve (a new
# worker that crashes at every start must not keep the old code running forever).
RETIRE_AFTER_SECS = WARM_UP_SECS + 30.0


class WarmReloadArbiter(Arbiter):
    """gunicorn's master, with a reload that keeps serving while new workers warm up."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self._retiring: set[int] = set()  # old workers alive, told to stop or not yet
        self._told: set[int] = set()
        self._retire_by = 0.0
        self._first_beat: dict[int, float] = {}  # pid -> its heartbeat file's time at birth
        self._reloading = False  # inside gunicorn's reload (which waits for old workers)

    def spawn_worker(self) -> int:
        pid: int = super().spawn_worker()  # returns in the master only
        self._first_beat[pid] = self.WORKERS[pid].tmp.last_update()
        return pid

    def _serving(self, pid: int) -> bool:
        """Whether the worker beat its heartbeat since it was born (it accepts)."""
        try:
            return bool(self.WORKERS[pid].tmp.last_update() != self._first_beat.get(pid))
        except (KeyError, OSError, ValueError):
            return False

    def reload(self) -> None:
        self._retiring = set(self.WORKERS)
        self._told = set()
        self._retire_by = time.monotonic() + RETIRE_AFTER_SECS
        self._reloading = True
        try:
            super().reload()
        finally:
            self._reloading = False

    def reap_workers(self) -> None:
        super().reap_workers()
        # gunicorn's reload (in recent releases) waits, reaping, up to the graceful timeout for the
        # old workers to be gone before the master loop runs again: retire them here as
        # their replacements serve, or they would all be kept until that timeout.
        if self._reloading and self._retiring:
            self._retire()

    def manage_workers(self) -> None:
        if not self._retire():
            super().manage_workers()

    def _retire(self) -> bool:
        """Stop an old worker for each new one that serves; False once none is left."""
        for pid in [p for p in self._first_beat if p not in self.WORKERS]:
            del self._first_beat[pid]
        self._retiring &= set(self.WORKERS)
        self._told &= self._retiring
        if not self._retiring:
            return False
        fresh = [pid for pid in self.WORKERS if pid not in self._retiring]
        for _ in range(self.num_workers - len(fresh)):  # a new worker died: replace it
            self.spawn_worker()
        serving = sum(1 for pid in fresh if self._serving(pid))
        keep = 0 if time.monotonic() >= self._retire_by else max(self.num_workers - serving, 0)
        waiting = sorted(self._retiring - self._told, key=lambda p: self.WORKERS[p].age)
        for pid in waiting[:max(len(self._retiring) - len(self._told) - keep, 0)]:
            self._told.add(pid)
            self.kill_worker(pid, signal.SIGTERM)
        return True
