"""Prometheus metrics of the HTTP layer.

When PROMETHEUS_MULTIPROC_DIR is set (`dynvm serve` does it before any worker
starts) every gunicorn worker writes its samples there and /metrics sums them,
so the numbers do not depend on which worker answers the scrape.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger(__name__)

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
FAILURES = Counter(
    "dynvm_request_failures_total",
    "Requests refused or failed, by reason (bad_request, no_capacity, all_or_none, ...)",
    ["reason"],
)

_answered: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def answered(route: str, method: str, status: int, secs: float | None) -> None:
    """Count one answer and observe its time; the labelled series are looked up once per
    (route, method, status) in this process (`labels()` validates and locks each time)."""
    key = (route, method, status)
    series = _answered.get(key)
    if series is None:
        series = _answered.setdefault(key, (REQUESTS.labels(route, method, str(status)),
                                            LATENCY.labels(route)))
    series[0].inc()
    if secs is not None:
        series[1].observe(secs)


class WorkerFilesCollector:
    """Sums the workers' sample files like MultiProcessCollector, skipping unreadable ones.

    A worker that gunicorn just started (HUP, max_requests, a killed worker)
    creates its file while a scrape may be reading the directory: that file is
    empty for an instant, and a vanished worker's file may be gone. Either must
    not turn a scrape into a 500; the file is read again at the next scrape.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self) -> Iterator[Metric]:
        readable = []
        for name in glob.glob(os.path.join(self.path, "*.db")):
            try:
                MmapedDict.read_all_values_from_file(name)
            except Exception as exc:  # half-created or just removed: skip for this scrape
                log.debug("metrics file %s skipped: %s", name, exc)
                continue
            readable.append(name)
        return iter(MultiProcessCollector.merge(readable, accumulate=True))


def render() -> tuple[bytes, str]:
    """The exposition text, merged over worker processes when that is configured."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        registry = CollectorRegistry()
        registry.register(WorkerFilesCollector(path))
        try:
            return generate_latest(registry), CONTENT_TYPE_LATEST
        except Exception:  # a file changed between the check and the merge: once more
            log.debug("metrics merge raced a worker; retrying", exc_info=True)
            return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
