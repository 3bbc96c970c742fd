"""Simulator throughput: `python -m bench.sim_bench`.

Measures, on a 20-host x 100-VM pool (about 2000 VMs), how long
`get_all_records` takes through the official XenAPI client for VM, host and
SR (cold: first call after a change; warm: record XML cached), how much of
that is the server's encoding, and how many simple getter calls per second
the simulator serves to 1 and 8 client threads.
"""

from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--vms-per-host", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0, help="per calls/second measurement")
    args = ap.parse_args(argv)

    with Farm.generate(pools=1, hosts=args.hosts, vms_per_host=args.vms_per_host,
                       speed=1000) as farm:
        pool = farm.pools[0]
        session = XenAPI.Session(pool.master.url)
        session.xenapi.login_with_password("root", "xenroot", "1.0", "bench")
        x = session.xenapi
        print(f"farm: {args.hosts} hosts, {len(pool.db.tables['VM'])} VM rows "
              f"(templates and control domains included)")
        print(f"{'call':<22}{'objects':>8}{'cold ms':>10}{'warm ms':>10}"
              f"{'server encode ms':>18}")
        for cls in ("VM", "host", "SR"):
            api = getattr(x, cls)
            # cold: drop the cached record XML first
            pool.db._xml.clear()
            cold = _median(api.get_all_records, 1)
            warm = _median(api.get_all_records, args.repeat)

            def encode(cls: str = cls) -> None:
                pool.db._xml.clear()
                pool.db.all_records_xml(cls)

            enc_cold = _median(encode, args.repeat)
            enc_warm = _median(lambda cls=cls: pool.db.all_records_xml(cls), args.repeat)
            n = len(pool.db.tables[cls])
            print(f"{cls + '.get_all_records':<22}{n:>8}{cold * 1e3:>10.1f}{warm * 1e3:>10.1f}"
                  f"{enc_warm * 1e3:>8.1f} ({enc_cold * 1e3:.1f} cold)")
        for threads in (1, 8):
            rate = _calls_per_second(pool.master.url, threads, args.seconds)
            print(f"pool.get_master, {threads} client thread(s): {rate:,.0f} calls/s")


if __name__ == "__main__":
    main()
