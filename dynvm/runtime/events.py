"""What the core reports as it happens (`CoreEvent`), counted for /metrics.

The bootstrap hands `count` to the core as its event hook. The counter lives
in the default registry, so /metrics exposes it beside the HTTP metrics (and
sums it over the workers like them).
"""

from __future__ import annotations

from prometheus_client import Counter

from dynvm.core.lifecycle import CoreEvent

RECONCILED = Counter(
    "dynvm_reconciled_vms_total",
    "VMs and leases set right by reconciliation: adopted (a VM of this deployment found "
    "without a lease) or vanished (a lease whose VM no longer exists)",
    ["event"],
)


def count(event: CoreEvent) -> None:
    """The core's event hook: every event it reports is a reconciliation's."""
    RECONCILED.labels(event.value).inc()
