"""The order the test workers take the suite in: slow modules spread evenly through it.

pytest-xdist's `worksteal` hands each worker an equal share of the tests *by
count*, and a worker that runs out steals half of the longest queue *by
count*. The suite's cost is not spread like its count: a few dozen served
tests (gunicorn, browsers) cost as much as a thousand unit tests, and in
collection order they sit together in one worker's share, which then runs
alone at the end while the others, done with their unit tests, find only
short queues to steal from. Interleaving modules so that the estimated cost
so far keeps pace with the count so far gives every share, and every stolen
half, its part of the slow tests. Modules stay whole and keep their own
order: their module-scoped farms and served instances are built once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

# A collected test: pytest's Item, or a stand-in with its `nodeid`, `get_closest_marker`
# and `_fixtureinfo`.
T = TypeVar("T")

CHUNK = 40  # a long module of cheap tests is dealt out in pieces this long


# Estimated cost of one test, in units of a plain unit test, rounded from the suite's
# durations; only the proportions matter.
SERVED = 80.0  # starts `dynvm serve` (gunicorn, workers, inventory process), a browser,
# or an outside program (Ansible)
SERVICE = 12.0  # a service in process against the simulator over XML-RPC
PLAIN = 1.0
TAIL = 0.9  # the share of the list the slow modules are spread over


def cost(item: Any) -> float:
    if item.get_closest_marker("served") or item.get_closest_marker("external"):
        return SERVED
    return SERVICE if item.nodeid.startswith("tests/service/") else PLAIN


def _module_of(item: Any) -> str:
    return str(item.nodeid).split("::", 1)[0]


def _shares_fixtures(item: Any) -> bool:
    """Whether the test uses a fixture built once per module or class: its module must
    then stay in one piece (split, it would be built again for each piece)."""
    info = getattr(item, "_fixtureinfo", None)
    defs = getattr(info, "name2fixturedefs", {}) if info is not None else {}
    return any(d.scope in ("module", "class", "package") for ds in defs.values() for d in ds)


def spread(items: Sequence[T]) -> list[T]:
    """`items` with whole modules reordered so that cost is spread evenly along the list."""
    modules: dict[str, list[T]] = {}
    for item in items:
        modules.setdefault(_module_of(item), []).append(item)
    pieces: list[list[T]] = []
    for group in modules.values():
        if len(group) > CHUNK and not any(map(_shares_fixtures, group)):
            pieces += [group[k:k + CHUNK] for k in range(0, len(group), CHUNK)]
        else:
            pieces.append(group)
    groups = [(sum(cost(i) for i in group), group) for group in pieces]
    total_cost = sum(c for c, _ in groups) or 1.0
    total_count = len(items) or 1
    mean = total_cost / total_count
    # The costliest first, so that the end of the list, which the last steals split,
    # holds small modules only.
    heavy = sorted((g for g in groups if g[0] > mean * len(g[1])), key=lambda g: -g[0])
    # The longest first too: the end of the list is made of short pieces.
    light = sorted((g for g in groups if g[0] <= mean * len(g[1])), key=lambda g: -len(g[1]))
    out: list[T] = []
    spent = 0.0
    while heavy or light:
        # A heavy module next while the cost so far lags behind the count so far, read
        # as if the list ended at TAIL of its length: the rest is left light.
        # Placed by its middle: a module as costly as a worker's share must not all be
        # early because the list is still cheap where it starts.
        due = min(1.0, len(out) / total_count / TAIL)
        take_heavy = bool(heavy) and (not light or (spent + heavy[0][0] / 2) / total_cost <= due)
        c, group = (heavy if take_heavy else light).pop(0)
        out.extend(group)
        spent += c
    return out
