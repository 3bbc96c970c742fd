"""Reads of the store kept until the store changes: what `/getavailablecount` needs.

A count is asked far more often than the store changes (monitors poll it many
times a second), and reading the reservations, the drained hosts and the
ready warm VMs was a good part of each answer. The store's generation
(`Store.generation`) is cheaper than any of those reads and moves with every
write of any process, so each thread keeps what it read until it moves. A
backend that cannot tell its generation is read every time, as before.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from dynvm.core.clock import Clock
from dynvm.core.store import Store

T = TypeVar("T")

# At most this many values are kept per thread and generation (keys are an OS
# and a set of hosts: a handful in any configuration).
MAX_KEYS = 256


class PerGeneration:
    """Values read from the store, kept by each thread while the store's generation
    is unchanged and the value's own deadline (a reservation lapsing) has not passed.

    Per thread because a generation may only be compared with one the same thread
    read (see `Store.generation`).
    """

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._local = threading.local()

    def read(self, key: Hashable, read: Callable[[], T],
             until: Callable[[T], float] | None = None) -> T:
        """`read()`, or what it gave at this generation; `until(value)` is the wall
        time after which the value is stale even if nothing is written."""
        token = self.store.generation()  # before the read: a write after it moves it
        if token is None:
            return read()
        local = self._local
        values: dict[Hashable, tuple[Any, float]] | None = getattr(local, "values", None)
        if values is None or local.token != token or len(values) > MAX_KEYS:
            values = local.values = {}
            local.token = token
        hit = values.get(key)
        if hit is not None and self.clock() < hit[1]:
            return hit[0]
        value = read()
        values[key] = (value, until(value) if until is not None else math.inf)
        return value
