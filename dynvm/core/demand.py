"""Warm pools sized from demand (`[pool <os>] ready=auto`): pure functions over history.

The rule. For the hour of the week it is now, the arrival rate of requests
for the OS is the number of its VMs asked for in that same hour of each of
the last `WEEKS` weeks, weighted so the latest week counts most (weights 8,
4, 2, 1). While a new VM is being built (the median build time of its latest
VMs), `m = rate x build time` requests arrive on average; their number is
taken to be Poisson-distributed, and the pool keeps the smallest N whose
probability of covering them, P(Poisson(m) <= N), is at least `QUANTILE`
(95 %): a request then finds a warm VM with that probability before a new one
could be built for it. N is kept within the pool's `min` and `max`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from typing import Any

from dynvm.core.lifecycle import HistoryState

HOUR = 3600.0
WEEK = 7 * 24 * HOUR
WEEKS = 4
WEIGHTS = tuple(2.0 ** (WEEKS - 1 - k) for k in range(WEEKS))  # latest week first: 8, 4, 2, 1
QUANTILE = 0.95
DEFAULT_BUILD_SECS = 60.0  # before history has any build of the OS
BUILD_SAMPLE = 50
HISTORY_SCAN = 20_000  # history documents read at most to size a pool


def hour_start(now: float) -> float:
    """The start of the (UTC) hour `now` is in: the target changes when it does."""
    return math.floor(now / HOUR) * HOUR


def arrivals(docs: Iterable[Mapping[str, Any]], os_key: str, ready_owner: str) -> list[float]:
    """When each VM of `os_key` was asked for, from history documents: the hand-out of a
    warm VM, else the start of the build of a VM built for a caller (warm-pool refills
    that nobody took are not demand)."""
    out = []
    for d in docs:
        if d.get("os") != os_key:
            continue
        if d.get("handed_out_time") is not None:
            out.append(float(d["handed_out_time"]))
        elif d.get("owner", ready_owner) != ready_owner and d.get("build_started") is not None:
            out.append(float(d["build_started"]))
    return out


def rate(times: Iterable[float], now: float) -> float:
    """Requests per second expected in the hour of the week `now` is in: that hour of each
    of the last `WEEKS` weeks, the latest weighted most."""
    start = hour_start(now)
    counts = [0] * WEEKS
    for t in times:
        for k in range(WEEKS):
            lo = start - (k + 1) * WEEK
            if lo <= t < lo + HOUR:
                counts[k] += 1
                break
    return sum(w * c for w, c in zip(WEIGHTS, counts, strict=True)) / sum(WEIGHTS) / HOUR


def build_secs(docs: Iterable[Mapping[str, Any]], os_key: str) -> float:
    """The median time its latest VMs took to build (history's `create_duration_secs`)."""
    took = []
    for d in docs:  # most recent first
        if d.get("os") == os_key and isinstance(d.get("create_duration_secs"), int | float) \
                and d.get("state") != HistoryState.FAILED:
            took.append(float(d["create_duration_secs"]))
            if len(took) >= BUILD_SAMPLE:
                break
    return statistics.median(took) if took else DEFAULT_BUILD_SECS


def poisson_quantile(mean: float, q: float = QUANTILE) -> int:
    """The smallest n with P(Poisson(mean) <= n) >= q."""
    if mean <= 0:
        return 0
    term = math.exp(-mean)  # P(X = 0)
    total, n = term, 0
    while total < q and n < 10_000:
        n += 1
        term *= mean / n
        total += term
    return n


def target(docs: Iterable[Mapping[str, Any]], os_key: str, now: float, *, low: int,
           high: int, ready_owner: str) -> int:
    """How many ready VMs of `os_key` to keep now (the rule above), within [low, high]."""
    docs = list(docs)
    mean = rate(arrivals(docs, os_key, ready_owner), now) * build_secs(docs, os_key)
    return min(max(poisson_quantile(mean), low), high)
