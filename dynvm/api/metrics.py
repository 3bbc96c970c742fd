"""Prometheus metrics of the HTTP layer.

When PROMETHEUS_MULTIPROC_DIR is set (`dynvm serve` does it before any worker
starts) every gunicorn worker writes its samples there and /metrics sums them,
so the numbers do not depend on which worker answers the scrape.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

REQUESTS = Counter(
    "dynvm_http_requests_total",
    "HTTP requests answered, by route, method and status code",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "dynvm_http_request_seconds",
    "Time to answer an HTTP request, by route",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900),
)
VMS_HANDED_OUT = Counter(
    "dynvm_vms_handed_out_total", "VMs handed out by /getservers, by OS", ["os"]
)
VMS_RELEASED = Counter("dynvm_vms_released_total", "VMs released by /releaseservers")
FAILURES = Counter(
    "dynvm_request_failures_total",
    "Requests refused or failed, by reason (bad_request, no_capacity, all_or_none, ...)",
    ["reason"],
)
VM_FAILURES = Counter(
    "dynvm_vm_failures_total", "VMs that could not be created, by OS", ["os"]
)

RECONCILED = Counter(
    "dynvm_reconciled_vms_total",
    "VMs and leases set right by reconciliation: adopted (a VM of this deployment found "
    "without a lease) or vanished (a lease whose VM no longer exists)",
    ["event"],
)


def core_event(kind: str) -> None:
    """Count an event the core reports (see Context.on_event)."""
    if kind in ("adopted", "vanished"):
        RECONCILED.labels(kind).inc()


def render() -> tuple[bytes, str]:
    """The exposition text, merged over worker processes when that is configured."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
