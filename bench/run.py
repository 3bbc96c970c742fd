"""`make bench`: dynvm's performance where its users feel it, with and without its speed-ups.

Starts simulated farms with realistic timings (Linux clone 5 s and boot 30 s,
Windows clone 10 s and boot 60 s, 2 ms per XenAPI call), run `--speed` times
faster than life, and dynvm under gunicorn; then runs every scenario twice:
with the event-fed inventory and a warm pool ("on"), and with the inventory
cache and warm pools switched off ("off", which reads XenServer on every
request as the seed did). Prints one table.

Times of cold requests are shown in simulated seconds (wall time x speed),
so they read as they would against real hosts; warm checkouts and the
read-only routes are shown in real milliseconds (nothing there is simulated).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.harness import load, percentile
from dynvm.config import load_config
from dynvm.core.store import LEASE_READY
from dynvm.sim import Farm, Timing
from dynvm.store.factory import open_store
from testbed.inis import farm_ini
from testbed.serving import served, wait_until

WARM_OS = "centos"
COLD_OS = "centos7"  # no warm pool for it, so its requests are always built


def realistic(speed: float) -> Timing:
    return Timing(speed=speed, call_latency=0.002 * speed,
                  clone_secs={"linux": 5.0, "windows": 10.0},
                  boot_secs={"linux": 30.0, "windows": 60.0},
                  ip_secs={"linux": 2.0, "windows": 5.0})


def write_ini(path: Path, farm: Farm, mode: str, pool_ready: int) -> Path:
    ini = farm_ini(farm, path.parent, network_timeout_secs=400)
    ini.set_hosts({"host.timeout.call.secs": 120})
    ini.set("common", {"vm.parallel.per.host": 4, "inventory.cache": mode == "on"})
    if mode == "on" and pool_ready:
        ini.set(f"pool {WARM_OS}", {"ready": pool_ready, "ready.ttl.minutes": 600})
    return ini.write(path)


def timed_get(url: str, timeout: float = 900) -> tuple[float, requests.Response]:
    t0 = time.perf_counter()
    r = requests.get(url, timeout=timeout)
    return time.perf_counter() - t0, r


def provisioning(mode: str, speed: float, checkouts: int, work: Path) -> dict:
    """Warm checkouts and cold requests on a 4-host farm."""
    farm = Farm.generate(pools=2, hosts=2, timing=realistic(speed)).start()
    ini = write_ini(work / f"prov-{mode}" / "dynvm.ini", farm, mode, pool_ready=4)
    out: dict = {}
    try:
        with served(ini, workers=2, log=ini.parent / "serve.log") as (base, _):
            store = open_store(load_config(ini).store)
            requests.get(f"{base}/getavailablecount/{WARM_OS}", timeout=60)

            def ready() -> int:
                return len(store.leases.find(state=LEASE_READY, os=WARM_OS))

            if mode == "on":
                wait_until(lambda: ready() >= 4, timeout=600, what="the warm pool to fill")
            warm_times, served_warm = [], 0
            for i in range(checkouts):
                if mode == "on":
                    wait_until(lambda: ready() >= 1, timeout=600, what="a ready VM")
                secs, r = timed_get(f"{base}/getservers/warm{i}?os={WARM_OS}&format=detailed")
                if r.status_code != 200:
                    raise RuntimeError(f"warm checkout failed: {r.status_code} {r.text}")
                doc = next(d for d in store.history.recent() if d.get("name") == f"warm{i}"
                           and d.get("state") == "available")
                served_warm += bool(doc.get("from_warm_pool"))
                warm_times.append(secs if doc.get("from_warm_pool") else secs * speed)
                requests.get(f"{base}/releaseservers/warm{i}", timeout=300)
            out["warm_p50"] = statistics.median(warm_times)
            out["warm_p95"] = percentile(warm_times, 95)
            out["warm_served_from_pool"] = f"{served_warm}/{checkouts}"

            cold: dict[int, list[float]] = {1: [], 10: []}
            for rnd in range(2):
                for count in (1, 10):
                    name = f"cold{count}r{rnd}x"
                    secs, r = timed_get(f"{base}/getservers/{name}?os={COLD_OS}&count={count}")
                    if r.status_code != 200:
                        raise RuntimeError(f"cold count {count} failed: {r.status_code} {r.text}")
                    cold[count].append(secs * speed)
                    requests.get(f"{base}/releaseservers/{name}?count={count}", timeout=300)
            out["cold1"] = statistics.median(cold[1])
            out["cold10"] = statistics.median(cold[10])
            out["cold_ratio"] = out["cold10"] / out["cold1"]
            store.close()
    finally:
        farm.stop()
    return out


def reads(mode: str, hosts: int, vms: int, repeat: int, clients: int, seconds: float,
          work: Path) -> dict:
    """/showall and /getavailablecount on a big pool: XenAPI calls, latency, throughput."""
    farm = Farm.generate(pools=1, hosts=hosts, vms_per_host=vms,
                         timing=realistic(1.0)).start()
    ini = write_ini(work / f"reads-{mode}" / "dynvm.ini", farm, mode, pool_ready=0)
    out: dict = {}
    try:
        with served(ini, workers=2, log=ini.parent / "serve.log") as (base, _):
            for route in ("showall", "getavailablecount/centos"):
                for _ in range(5):  # until every worker has loaded its view (never, when off)
                    farm.reset_call_counts()
                    for _ in range(6):
                        requests.get(f"{base}/{route}", timeout=120)
                    if xenapi_calls(farm) == 0:
                        break
                farm.reset_call_counts()
                times = []
                for _ in range(repeat):
                    secs, r = timed_get(f"{base}/{route}", timeout=120)
                    assert r.status_code == 200, r.text
                    times.append(secs * 1000)
                key = route.split("/")[0]
                out[f"{key}_calls"] = xenapi_calls(farm) / repeat
                out[f"{key}_p50"] = statistics.median(times)
            out["rps"] = load(f"{base}/getavailablecount/centos", clients, seconds)
    finally:
        farm.stop()
    return out


def xenapi_calls(farm: Farm) -> int:
    """Calls served since the last reset, less the inventory's own event.from feed."""
    return sum(n for per in farm.call_counts().values() for m, n in per.items()
               if not m.startswith("event"))


def fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"
    if unit == "":
        return f"{value:.0f}" if value >= 10 else f"{value:.2f}" if value < 2 else f"{value:.1f}"
    return f"{value:.1f} {unit}"


def spread(values: list[float], unit: str) -> str:
    """Median of the runs, with their range when there were several."""
    mid = statistics.median(values)
    if len(values) < 2:
        return fmt(mid, unit)
    return f"{fmt(mid, unit)} ({fmt(min(values), unit)}–{fmt(max(values), unit)})"


def flatten(run: dict) -> dict[str, float]:
    out = {k: float(v) for k, v in run.items() if isinstance(v, int | float)}
    out["rps"] = float(run["rps"]["rps"])
    out["p99_ms"] = float(run["rps"]["p99_ms"]) / 1000  # seconds, like the other latencies
    out["load_errors"] = float(run["rps"]["errors"])
    out["showall_p50"] = run["showall_p50"] / 1000
    out["getavailablecount_p50"] = run["getavailablecount_p50"] / 1000
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speed", type=float, default=20.0, help="simulated seconds per real second")
    ap.add_argument("--checkouts", type=int, default=12)
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--vms-per-host", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=3,
                    help="repeat everything; each figure is the median, with (min–max)")
    ap.add_argument("--modes", default="on,off", help="on, off or both")
    args = ap.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m in ("on", "off")]

    runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    pool_share: dict[str, list[str]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="dynvm-bench-") as tmp:
        for n in range(args.runs):
            for mode in modes:
                work = Path(tmp) / f"run{n}"
                print(f"[run {n + 1}/{args.runs}, {mode}] provisioning scenarios...",
                      file=sys.stderr, flush=True)
                res = provisioning(mode, args.speed, args.checkouts, work)
                print(f"[run {n + 1}/{args.runs}, {mode}] read scenarios on {args.hosts} x "
                      f"{args.vms_per_host}...", file=sys.stderr, flush=True)
                res.update(reads(mode, args.hosts, args.vms_per_host, args.repeat,
                                 args.clients, args.seconds, work))
                pool_share[mode].append(res["warm_served_from_pool"])
                runs[mode].append(flatten(res))

    def cell(mode: str, key: str, unit: str) -> str:
        return spread([r[key] for r in runs[mode]], unit) if runs.get(mode) else "-"

    rows = [
        ("getservers count 1, warm pool, p50 (real)", "warm_p50", "ms", "<= 100 ms"),
        ("getservers count 1, warm pool, p95 (real)", "warm_p95", "ms", ""),
        ("getservers count 1, cold (simulated time)", "cold1", "s", ""),
        ("getservers count 10, cold (simulated time)", "cold10", "s", ""),
        ("  cold count 10 / count 1", "cold_ratio", "", "<= 1.3"),
        (f"/showall XenAPI calls per request ({args.hosts}x{args.vms_per_host})",
         "showall_calls", "", "0"),
        ("/showall p50", "showall_p50", "ms", "<= 20 ms"),
        ("/getavailablecount XenAPI calls per request", "getavailablecount_calls", "", "0"),
        ("/getavailablecount p50", "getavailablecount_p50", "ms", "<= 20 ms"),
        (f"/getavailablecount req/s, {args.clients} clients", "rps", "", ">= 500"),
        ("/getavailablecount p99 under that load", "p99_ms", "ms", "<= 100 ms"),
        ("  load requests that failed", "load_errors", "", "0"),
    ]
    table = [(name, *(cell(m, key, unit) for m in ("on", "off")), target)
             for name, key, unit, target in rows]
    table.insert(2, ("  checkouts served from the pool",
                     ", ".join(pool_share.get("on", [])) or "-",
                     ", ".join(pool_share.get("off", [])) or "-", ""))
    w = max(len(r[0]) for r in table)
    wa = max(10, *(len(r[1]) for r in table))
    wb = max(10, *(len(r[2]) for r in table))
    print(f"dynvm bench (speed x{args.speed:g}; {args.runs} run(s): median (min–max); "
          f"'off' = inventory cache and warm pools off)")
    print(f"| {'scenario':<{w}} | {'on':>{wa}} | {'off':>{wb}} | {'target':>9} |")
    print(f"|{'-' * (w + 2)}|{'-' * (wa + 2)}|{'-' * (wb + 2)}|{'-' * 11}|")
    for name, a, b, target in table:
        print(f"| {name:<{w}} | {a:>{wa}} | {b:>{wb}} | {target:>9} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
