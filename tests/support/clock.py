"""The core clock tests move forward themselves (`testbed.clock.SteppedClock`, which the
benchmarks use too), and waiting with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from testbed.clock import SLICE, SteppedClock

__all__ = ["SLICE", "SteppedClock", "ticking"]

T = TypeVar("T")


def ticking(clock: SteppedClock, cond: Callable[[], T], step: float = 1.0) -> Callable[[], T]:
    """`cond` for `wait_until`, with `clock` `step` seconds further at each look: what
    waits on the clock (an INI file's settling, a check interval) passes as the test
    looks, not in real time."""
    def look() -> T:
        clock.advance(step)
        return cond()
    return look
