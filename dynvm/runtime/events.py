"""What the core reports as it happens (`CoreEvent`), counted for /metrics.

The bootstrap hands `count` to the core as its event hook. Each event is observed
once, in the process where it happened; the metrics live in the default registry,
so /metrics exposes them beside the HTTP metrics and sums them over the workers
(prometheus_client's multiprocess mode). Counters and histograms only ever grow:
figures derived from the store are gauges (dynvm.api.gauges).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Histogram

from dynvm.core.lifecycle import CoreEvent

# Seconds: from a few for a fast clone to the longest network wait.
BUCKETS = (1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 240, 300, 450, 600, 900)

RECONCILED = Counter(
    "dynvm_reconciled_vms_total",
    "VMs and leases set right by reconciliation: adopted (a VM of this deployment found "
    "without a lease) or vanished (a lease whose VM no longer exists)",
    ["event"],
)
HANDED_OUT = Counter(
    "dynvm_vms_handed_out_total",
    "VMs handed out to their requester (legacy and v1, built or from a warm pool), by OS",
    ["os"])
RELEASED = Counter(
    "dynvm_vms_released_total",
    "VMs destroyed by a release of any kind (caller, expiry, rollback, warm-pool recycle), "
    "by OS", ["os"])
EXPIRED = Counter("dynvm_vms_expired_total", "VMs destroyed because their lease ran out, by OS",
                  ["os"])
VM_FAILURES = Counter("dynvm_vm_failures_total",
                      "VMs a request asked for that could not be had, by OS", ["os"])
BUILD_SECONDS = Histogram("dynvm_build_seconds",
                          "Time from a VM's build start to a usable VM, by OS", ["os"],
                          buckets=BUCKETS)
STEP_SECONDS = Histogram("dynvm_build_step_seconds",
                         "Time VMs spent in each build step, by OS", ["os", "step"],
                         buckets=BUCKETS)

QUEUE_EXPIRED = Counter(
    "dynvm_queue_expired_total",
    "Requests that waited their longest in the queue (max_wait_minutes) and ended expired")
QUEUE_WAIT = Histogram("dynvm_queue_wait_seconds",
                       "Time requests waited in the queue, observed as each leaves it (served, "
                       "cancelled or expired), by OS", ["os"],
                       buckets=(1, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400,
                                43200, 86400))

_COUNTERS = {CoreEvent.HANDED_OUT: HANDED_OUT, CoreEvent.RELEASED: RELEASED,
             CoreEvent.EXPIRED: EXPIRED, CoreEvent.VM_FAILED: VM_FAILURES}


def count(event: CoreEvent, fields: Mapping[str, Any]) -> None:
    """The core's event hook: each event counted or observed once, as it happens."""
    os_key = str(fields.get("os") or "unknown")
    if event in (CoreEvent.ADOPTED, CoreEvent.VANISHED):
        RECONCILED.labels(event.value).inc()
    elif event in _COUNTERS:
        _COUNTERS[event].labels(os_key).inc()
    elif event == CoreEvent.BUILT:
        BUILD_SECONDS.labels(os_key).observe(max(float(fields.get("seconds") or 0.0), 0.0))
    elif event == CoreEvent.STEP_DONE:
        STEP_SECONDS.labels(os_key, str(fields.get("step", ""))).observe(
            max(float(fields.get("seconds") or 0.0), 0.0))
    elif event == CoreEvent.QUEUE_EXPIRED:
        QUEUE_EXPIRED.inc()
    elif event == CoreEvent.QUEUE_LEFT:
        QUEUE_WAIT.labels(os_key).observe(max(float(fields.get("seconds") or 0.0), 0.0))
