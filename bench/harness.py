"""Loading a running dynvm and summing up latencies, for benchmarks."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def load(url: str, clients: int, seconds: float) -> dict:
    """Hammer one URL from `clients` threads in a separate process; returns rps and latencies.

    A separate process keeps the load generator off the caller's interpreter
    lock (the caller may be running the simulator).
    """
    out = subprocess.run([sys.executable, "-m", "bench.load", url, str(clients), str(seconds)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)
