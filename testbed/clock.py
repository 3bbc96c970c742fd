"""A core clock a test moves forward itself, so a long wait ends when the test says so.

It runs with the system's time (the simulator's boots and migrations take
the real time they take) plus an offset that only `advance` changes: a
deadline ten minutes ahead is past as soon as the test advances ten
minutes, and no test waits for it, nor bets on the machine's pace.
"""

from __future__ import annotations

import threading
import time

from dynvm.core.clock import Clock

SLICE = 0.05  # waits look at the offset this often (seconds of real time)


class SteppedClock(Clock):
    def __init__(self) -> None:
        self.offset = 0.0
        self._moved = threading.Condition()
        self._on_wait: dict[int, float] = {}  # thread -> seconds to advance when it next waits

    def __call__(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, secs: float) -> None:
        """Move time forward by `secs`: every wait whose end that passes returns."""
        with self._moved:
            self.offset += secs
            self._moved.notify_all()

    def advance_when_waiting(self, secs: float) -> None:
        """Move time forward by `secs` as soon as this thread next sleeps or waits: a
        deadline it sets before that (the wait it is about to start) is then past."""
        self._on_wait[threading.get_ident()] = secs

    def _waiting(self) -> None:
        secs = self._on_wait.pop(threading.get_ident(), 0.0)
        if secs:
            self.advance(secs)

    def sleep(self, secs: float) -> None:
        self._waiting()
        end = self.monotonic() + secs
        with self._moved:
            while (left := end - self.monotonic()) > 0:
                self._moved.wait(left)

    def wait_on(self, cond: threading.Condition, secs: float) -> bool:
        end = self.monotonic() + secs
        self._waiting()  # time moved while it waits: this wait, too, ends when it passes
        while (left := end - self.monotonic()) > 0:
            if cond.wait(min(left, SLICE)):
                return True
        return False

    def wait(self, event: threading.Event, secs: float) -> bool:
        self._waiting()
        end = self.monotonic() + secs
        while not event.is_set():
            left = end - self.monotonic()
            if left <= 0:
                return False
            event.wait(min(left, SLICE))
        return True
