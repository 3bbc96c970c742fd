"""Closed-loop HTTP load: `python -m bench.load URL CLIENTS SECONDS` prints JSON figures.

Each client thread keeps one HTTP/1.1 connection and sends the next request
as soon as the previous answer is read. Bounded in time; loopback only.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from urllib.parse import urlsplit


def run(url: str, clients: int, seconds: float) -> dict:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start_gate = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(host, parts.port, timeout=30)
        start_gate.wait()
        mine = latencies[i]
        while time.monotonic() < stop_at[0]:
            t0 = time.perf_counter()
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    errors[i] += 1
            except (OSError, http.client.HTTPException):
                errors[i] += 1
                conn.close()
                conn = http.client.HTTPConnection(host, parts.port, timeout=30)
                continue
            mine.append(time.perf_counter() - t0)
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.monotonic() + seconds
    t0 = time.monotonic()
    start_gate.wait()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    lat = sorted(x for per in latencies for x in per)

    def pct(q: float) -> float:
        return lat[min(int(q * len(lat)), len(lat) - 1)] * 1000 if lat else float("nan")

    return {"requests": len(lat), "errors": sum(errors), "seconds": round(elapsed, 2),
            "rps": round(len(lat) / elapsed, 1), "p50_ms": round(pct(0.50), 2),
            "p99_ms": round(pct(0.99), 2)}


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))))
