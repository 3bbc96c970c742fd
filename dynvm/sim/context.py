"""What a behaviour handler is given for one call: the farm, the pool and host
it reached, the wire method, the session and, for an Async call, its task
(through which a long operation sleeps, notices a cancel and reports progress).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .wire import XapiError

if TYPE_CHECKING:
    from .db import Database
    from .farm import Farm, SimHost, SimPool
    from .sessions import SessionInfo

Handler = Callable[..., Any]


@dataclass
class CallContext:
    farm: Farm
    pool: SimPool
    host: SimHost
    method: str
    session: SessionInfo | None = None
    task: str | None = None
    local: bool = False  # over the host's local socket, where root needs no password

    @property
    def db(self) -> Database:
        return self.pool.db

    def cancelled(self) -> bool:
        if self.task is None:
            return False
        ev = self.pool.tasks.cancel_events.get(self.task)
        return ev is not None and ev.is_set()

    def check_cancel(self) -> None:
        if self.cancelled():
            raise XapiError("TASK_CANCELLED", self.task)

    def sleep(self, seconds: float) -> None:
        """Wait `seconds` of wall time; a cancelled task stops with TASK_CANCELLED."""
        if seconds <= 0:
            self.check_cancel()
            return
        if self.task is None:
            time.sleep(seconds)
            return
        ev = self.pool.tasks.cancel_events.get(self.task)
        if ev is None:
            time.sleep(seconds)
        elif ev.wait(seconds):
            raise XapiError("TASK_CANCELLED", self.task)

    def progress(self, value: float) -> None:
        if self.task is not None:
            self.pool.tasks.progress(self.task, value)
