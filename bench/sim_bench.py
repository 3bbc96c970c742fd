"""Simulator throughput: `python -m bench.sim_bench`.

Measures, on a 20-host x 100-VM pool (about 2000 VMs), how long
`get_all_records` takes through the official XenAPI client for VM, host and
SR (cold: first call after a change; warm: record XML cached), how much of
that is the server's encoding, and how many simple getter calls per second
the simulator serves to 1 and 8 client threads.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import threading
import time
from collections.abc import Callable

import XenAPI

from dynvm.sim import Farm


def _median(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of `repeat` calls of `fn`."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _calls_per_second(url: str, threads: int, seconds: float) -> float:
    stop = time.monotonic() + seconds
    counts = [0] * threads

    def worker(i: int) -> None:
        s = XenAPI.Session(url)
        s.xenapi.login_with_password("root", "xenroot", "1.0", "bench")
        pool = s.xenapi.pool.get_all()[0]
        n = 0
        while time.monotonic() < stop:
            s.xenapi.pool.get_master(pool)
            n += 1
        counts[i] = n

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    start = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts) / (time.monotonic() - start)


def measure(hosts: int, vms_per_host: int, repeat: int, seconds: float) -> dict[str, float]:
    """One run: every figure in milliseconds or calls per second."""
    out: dict[str, float] = {}
    with Farm.generate(pools=1, hosts=hosts, vms_per_host=vms_per_host, speed=1000) as farm:
        pool = farm.pools[0]
        session = XenAPI.Session(pool.master.url)
        session.xenapi.login_with_password("root", "xenroot", "1.0", "bench")
        x = session.xenapi
        out["vm_rows"] = len(pool.db.tables["VM"])
        for cls in ("VM", "host", "SR"):
            api = getattr(x, cls)
            pool.db._xml.clear()  # cold: drop the cached record XML first
            out[f"{cls}_cold_ms"] = _median(api.get_all_records, 1) * 1e3
            out[f"{cls}_warm_ms"] = _median(api.get_all_records, repeat) * 1e3

            def encode(cls: str = cls) -> None:
                pool.db._xml.clear()
                pool.db.all_records_xml(cls)

            out[f"{cls}_encode_cold_ms"] = _median(encode, repeat) * 1e3
            out[f"{cls}_encode_warm_ms"] = _median(
                functools.partial(pool.db.all_records_xml, cls), repeat) * 1e3
            out[f"{cls}_rows"] = len(pool.db.tables[cls])
        for threads in (1, 8):
            out[f"getter_{threads}"] = _calls_per_second(pool.master.url, threads, seconds)
        session.xenapi.session.logout()
    return out


def _spread(values: list[float], fmt: str = "{:.1f}") -> str:
    mid = fmt.format(statistics.median(values))
    if len(values) < 2:
        return mid
    return f"{mid} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--vms-per-host", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0, help="per calls/second measurement")
    ap.add_argument("--runs", type=int, default=3,
                    help="whole measurements; each figure is the median, with (min–max)")
    args = ap.parse_args(argv)

    runs = [measure(args.hosts, args.vms_per_host, args.repeat, args.seconds)
            for _ in range(args.runs)]
    print(f"farm: {args.hosts} hosts, {int(runs[0]['vm_rows'])} VM rows (templates and "
          f"control domains included); {args.runs} run(s): median (min–max)")
    print(f"{'call':<22}{'objects':>8}  {'cold ms':<26}{'warm ms':<26}{'server encode ms (warm)'}")
    for cls in ("VM", "host", "SR"):
        col = {k: [r[f"{cls}_{k}"] for r in runs]
               for k in ("cold_ms", "warm_ms", "encode_warm_ms")}
        print(f"{cls + '.get_all_records':<22}{int(runs[0][cls + '_rows']):>8}  "
              f"{_spread(col['cold_ms']):<26}{_spread(col['warm_ms']):<26}"
              f"{_spread(col['encode_warm_ms'])}")
    for threads in (1, 8):
        print(f"pool.get_master, {threads} client thread(s): "
              f"{_spread([r[f'getter_{threads}'] for r in runs], '{:,.0f}')} calls/s")


if __name__ == "__main__":
    main()
