"""Farm gauges for /metrics, computed at scrape time from the store and the inventory.

When the store cannot be read, the gauges made of its records are left out of
the scrape (`dynvm_store_up` is 0): absent series, never zeros that read as
"nothing there".

A custom collector rather than gauges set by the code that changes things:
the values come from the state of record, so every worker (and every
instance) answers the same, and they survive restarts.
"""

from __future__ import annotations

import bisect
import logging
from collections import Counter as Tally
from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from dynvm.api import dashboard_data as data
from dynvm.core.background import LEADER_LOCK
from dynvm.core.errors import StoreDown
from dynvm.core.lifecycle import RequestState
from dynvm.core.progress import STEP_TIME_PREFIX, Step
from dynvm.core.store import RequestRecord, StoreError

if TYPE_CHECKING:
    from dynvm.core.service import Dynvm

log = logging.getLogger(__name__)

BUCKETS = (1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1800)
STEP_ORDER = [str(s) for s in Step]
REQUEST_SCAN_SECS = 24 * 3600.0  # build steps are read from requests of the last day


class FarmCollector(Collector):
    def __init__(self, svc: Dynvm) -> None:
        self.svc = svc

    def collect(self) -> Iterator[Any]:
        svc = self.svc
        snap = data.Snapshot.take(svc)
        farm = data.hosts(svc, snap)
        yield from _host_gauges(farm)
        yield from _store_gauges(svc)
        if snap.store_error is not None:
            return  # the store's records are unknown: no series, rather than zeros
        try:
            docs = data.history_docs(svc)
            records = svc.request_records()
        except StoreDown:
            return
        yield from _vm_gauges(data.vms(svc, snap))
        avail = GaugeMetricFamily("dynvm_available_vms",
                                  "VMs of an OS that can be handed out now (as /getavailablecount)",
                                  labels=["os"])
        for os_key, c in farm["capacity"].items():
            avail.add_metric([os_key], c["available"])
        yield avail
        yield from _warm_gauges(data.warm_pools(svc, snap, docs))
        yield from _request_gauges(records, snap.now)
        yield from _history_metrics(docs)

    def describe(self) -> list:
        return []  # computed at scrape time; nothing to check at registration


def _vm_gauges(rows: list[dict[str, Any]]) -> Iterator[Any]:
    g = GaugeMetricFamily("dynvm_vms", "VMs on the farm by state (building, ready, leased, "
                          "releasing, foreign, untracked), OS and member host",
                          labels=["state", "os", "xenhost", "host"])
    counts = Tally((r["state"], r["os"] or "", f"xenhost{r['host_ref']}", r["host"] or "")
                   for r in rows)
    for labels, n in sorted(counts.items()):
        g.add_metric(list(labels), n)
    yield g
    overdue = GaugeMetricFamily("dynvm_leases_overdue",
                                "Leased VMs past their expiry, not yet destroyed")
    overdue.add_metric([], sum(1 for r in rows if r["state"] == "leased"
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
        up.add_metric([x], 0 if p["state"] == "unreachable" else 1)
        for m in p["members"]:
            enabled.add_metric([x, m["name"]], 0 if m["state"] == "disabled" else 1)
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


def _request_gauges(records: list[RequestRecord], now: float) -> Iterator[Any]:
    inflight = GaugeMetricFamily("dynvm_requests_in_flight",
                                 "getservers requests being served (warm-pool refills apart)")
    inflight.add_metric([], sum(1 for r in records if r.state == RequestState.RUNNING
                                and not r.id.startswith("warm-")))
    yield inflight
    # Time spent in each build step, from the step times kept in request records.
    steps: dict[tuple[str, ...], list[float]] = defaultdict(list)
    for r in records:
        if now - r.started > REQUEST_SCAN_SECS:
            continue
        for entry in (r.detail.get("vms") or {}).values():
            times = sorted(((float(t), k[len(STEP_TIME_PREFIX):]) for k, t in entry.items()
                            if k.startswith(STEP_TIME_PREFIX)
                            and k[len(STEP_TIME_PREFIX):] in STEP_ORDER),
                           key=lambda ts: (ts[0], STEP_ORDER.index(ts[1])))
            for (t0, s0), (t1, _) in zip(times, times[1:], strict=False):
                steps[(r.os, s0)].append(max(t1 - t0, 0.0))
    yield _histogram("dynvm_build_step_seconds",
                     "Time VMs spent in each build step (requests of the last day), by OS",
                     ["os", "step"], steps)


def _histogram(name: str, doc: str, labels: list[str],
               samples: dict[tuple[str, ...], list[float]]) -> HistogramMetricFamily:
    h = HistogramMetricFamily(name, doc, labels=labels)
    for key, values in sorted(samples.items()):
        ordered = sorted(values)
        buckets = [(str(float(b)), bisect.bisect_right(ordered, b)) for b in BUCKETS]
        buckets.append(("+Inf", len(ordered)))
        h.add_metric(list(key), buckets, sum(ordered))
    return h


def _history_totals(docs: list[dict[str, Any]]) -> tuple[dict, Tally]:
    create: dict[tuple[str, ...], list[float]] = defaultdict(list)
    expired: Tally = Tally()
    for d in docs:
        os_key = str(d.get("os", ""))
        if d.get("create_duration_secs") is not None and d.get("state") != "failed":
            create[(os_key,)].append(float(d["create_duration_secs"]))
        if d.get("delete_reason") == "expired":
            expired[os_key] += 1
    return create, expired


def _history_metrics(docs: list[dict[str, Any]]) -> Iterator[Any]:
    create, expired = data.derived(docs, "metrics", _history_totals)
    yield _histogram("dynvm_build_seconds",
                     "Time from request to a usable VM, by OS (history documents kept)",
                     ["os"], create)
    exp = CounterMetricFamily("dynvm_vms_expired", "VMs destroyed because their lease expired "
                              "(history documents kept)", labels=["os"])
    for os_key, n in sorted(expired.items()):
        exp.add_metric([os_key], n)
    yield exp


def _store_gauges(svc: Dynvm) -> Iterator[Any]:
    store = svc.ctx.store
    outbox = GaugeMetricFamily("dynvm_outbox_depth",
                               "Store writes waiting in this instance's outbox")
    leader = GaugeMetricFamily("dynvm_leader", "1 for the instance running leader-only work "
                               "(expiry, warm pools, reconciliation)", labels=["instance"])
    up = GaugeMetricFamily("dynvm_store_up", "1 when the state store answers")
    try:
        store.ping()
        up.add_metric([], 1)
        holder = store.locks.holder(LEADER_LOCK)
        if holder:
            leader.add_metric([holder], 1)
    except StoreError:
        up.add_metric([], 0)
    pending = getattr(store, "pending", None)
    try:
        outbox.add_metric([], pending() if pending else 0)
    except Exception:  # the outbox file is local; a failure to read it is not the farm's
        outbox.add_metric([], float("nan"))
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
