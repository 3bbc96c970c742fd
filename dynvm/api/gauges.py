"""Farm gauges for /metrics, computed at scrape time from the store and the inventory.

When the store cannot be read, the gauges made of its records are left out of
the scrape (`dynvm_store_up` is 0): absent series, never zeros that read as
"nothing there".

A custom collector rather than gauges set by the code that changes things:
the values come from the state of record, so every worker (and every
instance) answers the same, and they survive restarts.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dynvm.core.errors import StoreDown
from dynvm.core.services import MemberShown, PoolShown, VmShown

if TYPE_CHECKING:
    from dynvm.core.services import Dynvm, RequestFigures

log = logging.getLogger(__name__)


class FarmCollector(Collector):
    def __init__(self, svc: Dynvm) -> None:
        self.svc = svc

    def collect(self) -> Iterator[Any]:
        svc = self.svc
        board = svc.dashboard
        snap = board.snapshot()
        farm = board.hosts(snap)
        yield from _host_gauges(farm)
        yield from _store_gauges(svc)
        if snap.store_error is not None:
            return  # the store's records are unknown: no series, rather than zeros
        try:
            docs = svc.history.docs()
            records = board.request_records()
        except StoreDown:
            return
        yield from _vm_gauges(board.vms(snap))
        avail = GaugeMetricFamily("dynvm_available_vms",
                                  "VMs of an OS that can be handed out now (as /getavailablecount)",
                                  labels=["os"])
        for os_key, c in farm["capacity"].items():
            avail.add_metric([os_key], c["available"])
        yield avail
        yield from _warm_gauges(board.warm_pools(snap, docs))
        yield from _request_gauges(board.request_figures(records))
        yield from _history_gauges(svc.history.derived(docs, "metrics", _history_totals))

    def describe(self) -> list:
        return []  # computed at scrape time; nothing to check at registration


def _vm_gauges(rows: list[dict[str, Any]]) -> Iterator[Any]:
    g = GaugeMetricFamily("dynvm_vms", "VMs on the farm by state (building, ready, leased, "
                          "releasing, fleet, foreign, untracked), OS and member host",
                          labels=["state", "os", "xenhost", "host"])
    counts = Tally((r["state"], r["os"] or "", f"xenhost{r['host_ref']}", r["host"] or "")
                   for r in rows)
    for labels, n in sorted(counts.items()):
        g.add_metric(list(labels), n)
    yield g
    overdue = GaugeMetricFamily("dynvm_leases_overdue",
                                "Leased VMs past their expiry, not yet destroyed")
    overdue.add_metric([], sum(1 for r in rows if r["state"] == VmShown.LEASED
                               and r["expires_in_secs"] is not None and r["expires_in_secs"] < 0))
    yield overdue


def _host_gauges(farm: dict[str, Any]) -> Iterator[Any]:
    up = GaugeMetricFamily("dynvm_host_up", "1 when the pool of a [xenhostN] answers",
                           labels=["xenhost"])
    enabled = GaugeMetricFamily("dynvm_member_enabled", "1 when a member host is enabled",
                                labels=["xenhost", "host"])
    free = GaugeMetricFamily("dynvm_host_memory_free_bytes", "Free memory of a member host",
                             labels=["xenhost", "host"])
    total = GaugeMetricFamily("dynvm_host_memory_total_bytes", "Memory of a member host",
                              labels=["xenhost", "host"])
    for p in farm["pools"]:
        x = f"xenhost{p['ref']}"
        up.add_metric([x], 0 if p["state"] == PoolShown.UNREACHABLE else 1)
        if p["state"] == PoolShown.UNREACHABLE:
            continue  # its members are listed as last read: no current figure to report
        for m in p["members"]:
            enabled.add_metric([x, m["name"]], 0 if m["state"] == MemberShown.DISABLED else 1)
            free.add_metric([x, m["name"]], m["memory_free"])
            total.add_metric([x, m["name"]], m["memory_total"])
    yield from (up, enabled, free, total)


def _warm_gauges(pools: list[dict[str, Any]]) -> Iterator[Any]:
    ready = GaugeMetricFamily("dynvm_warm_pool_ready", "Ready VMs of a warm pool", labels=["os"])
    target = GaugeMetricFamily("dynvm_warm_pool_target", "Configured size of a warm pool",
                               labels=["os"])
    for w in pools:
        ready.add_metric([w["os"]], w["ready"])
        target.add_metric([w["os"]], w["target"])
    yield from (ready, target)


def _request_gauges(figures: RequestFigures) -> Iterator[Any]:
    inflight = GaugeMetricFamily("dynvm_requests_in_flight",
                                 "getservers requests being served (warm-pool refills apart)")
    inflight.add_metric([], figures.in_flight)
    yield inflight
    queued = GaugeMetricFamily("dynvm_queue_length", "Requests waiting in the queue for room",
                               labels=["os", "priority"])
    for (os_key, priority), n in sorted(figures.queued.items()):
        queued.add_metric([os_key, priority], n)
    yield queued


def _history_totals(docs: list[dict[str, Any]]) -> Tally:
    return Tally((str(d.get("os", "")), str(d.get("state", ""))) for d in docs)


def _history_gauges(kept: Tally) -> Iterator[Any]:
    """What the store's history holds now: a gauge (documents age out of it), never the
    counters and histograms, which only grow and are observed as things happen."""
    docs = GaugeMetricFamily("dynvm_history_documents",
                             "History documents the store keeps, by OS and state",
                             labels=["os", "state"])
    for (os_key, state), n in sorted(kept.items()):
        docs.add_metric([os_key, state], n)
    yield docs


def _store_gauges(svc: Dynvm) -> Iterator[Any]:
    store = svc.health.store_gauges()
    outbox = GaugeMetricFamily("dynvm_outbox_depth",
                               "Store writes waiting in this instance's outbox")
    leader = GaugeMetricFamily("dynvm_leader", "1 for the instance running leader-only work "
                               "(expiry, warm pools, reconciliation)", labels=["instance"])
    up = GaugeMetricFamily("dynvm_store_up", "1 when the state store answers")
    up.add_metric([], 1 if store.up else 0)
    if store.leader:
        leader.add_metric([store.leader], 1)
    outbox.add_metric([], store.outbox)
    yield from (up, leader, outbox)


def render(svc: Dynvm) -> bytes:
    """The farm gauges as Prometheus text, appended to the HTTP metrics by /metrics.

    A failure here costs the farm gauges of one scrape, never the HTTP metrics:
    `dynvm_farm_gauges_ok` says which.
    """
    registry = CollectorRegistry()
    registry.register(FarmCollector(svc))
    try:
        body, ok = generate_latest(registry), 1
    except Exception:
        log.exception("computing the farm gauges failed")
        body, ok = b"", 0
    return body + (b"# HELP dynvm_farm_gauges_ok 1 when the farm gauges of this scrape "
                   b"could be computed\n# TYPE dynvm_farm_gauges_ok gauge\n"
                   b"dynvm_farm_gauges_ok %d\n" % ok)
