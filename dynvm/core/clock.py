"""Time for the core: the wall clock, a monotonic clock, and waiting on them, as one object.

Every wait in the core (the maintenance runner's polls and deadlines, the
background loops, the SSH check, long polls, the store probe) goes through a
`Clock` handed in with the context, never through `time` directly; so does
the Xen layer's wait for a guest's address (its deadline and link-local
settle time), which the composition root hands the same clock. The
system clock below is what runs in production; a test hands in one whose
time it moves itself, so a wait of ten minutes ends when the test says so
and no test bets on how fast the machine is.
"""

from __future__ import annotations

import threading
import time


class Clock:
    """The system's time. Calling it gives the wall time (epoch seconds)."""

    def __call__(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        """For deadlines: never goes back, whatever happens to the wall clock."""
        return time.monotonic()

    def sleep(self, secs: float) -> None:
        time.sleep(max(secs, 0.0))

    def wait(self, event: threading.Event, secs: float) -> bool:
        """Wait up to `secs` for `event`; whether it is set."""
        return event.wait(max(secs, 0.0))

    def wait_on(self, cond: threading.Condition, secs: float) -> bool:
        """Wait, holding `cond`, up to `secs` for it to be notified; whether it was."""
        return cond.wait(max(secs, 0.0))


SYSTEM = Clock()
