"""`python -m bench.scale`: dynvm on farms of 1,000, 4,000 and 10,000 VMs, and under churn.

Each size gets a simulated farm in a process of its own (pools of hosts
running 50 VMs each, hosts big enough to leave room for new VMs; realistic
timings at `--speed`) and a store with `--history` history documents, both
made once and used by every run of that size (`--fresh-farms`: a new farm and
store per run, which costs the farm's start and the history's writing each
time); each run starts its own `dynvm serve` with two workers, on a copy of
that store. Per size and run it measures:

- serve start -> first 200 of `/showall`;
- RSS of each worker (the largest) once every route was answered, and of any
  other process `dynvm serve` started (the shared inventory);
- `kill -HUP` under load: the longest answer while the workers are replaced,
  and how many requests failed;
- `/` p50, `/ui/api/vms` p50 and its body, `/showall` p50 uncached (two
  spellings taking turns, so no answer is reused);
- `/getavailablecount` requests/s and p99 from 32 clients;
- XenAPI calls made by those reads (the inventory's own event feed aside);
- a churn run: VMs built and released through dynvm while other VMs are shut
  down and started behind its back, then `/showall` compared with what
  `VM.get_all_records` says, on fresh connections (every worker).

Each figure is the median of `--runs` runs with their range. The machine's
load average is printed with the table: these figures depend on it. A run
that fails is reported and the others go on; what it measured before it
failed is kept. The total time of the sweep is printed with the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import XenAPI

from bench.dashboard import seed_history
from bench.harness import load
from dynvm.xen.records import guest_addresses
from testbed.inis import Ini
from testbed.serving import children, served, wait_until, workers

VMS_PER_HOST = 50
HOST_CPUS = 128  # 50 guests of 2 vCPUs leave room for three 8-vCPU VMs per host
CHURN_CLIENTS = 4
CYCLED_GUESTS = 40  # the farm's own guests the churn shuts down and starts again
HUP_CLIENTS = 4
SIM_START_SECS = 300.0


def layout(vms: int) -> tuple[int, int]:
    """(pools, hosts per pool) for about `vms` running VMs, 50 per host."""
    pools = 2 if vms < 2000 else 4
    return pools, max(1, round(vms / (pools * VMS_PER_HOST)))


class SimProcess:
    """A simulated farm in its own process (its CPU apart from the measuring threads)."""

    def __init__(self, vms: int, speed: float, work: Path) -> None:
        pools, hosts = layout(vms)
        self.vms = pools * hosts * VMS_PER_HOST
        ini_out = work / "sim.ini"
        self.log = work / "sim.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dynvm.sim.runner", "--pools", str(pools),
                 "--hosts", str(hosts), "--vms-per-host", str(VMS_PER_HOST),
                 "--host-cpus", str(HOST_CPUS), "--speed", str(speed),
                 "--ini-out", str(ini_out)],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            wait_until(lambda: ini_out.exists() or self.proc.poll() is not None,
                       timeout=SIM_START_SECS, what="the simulator", interval=0.2)
            if self.proc.poll() is not None:
                raise RuntimeError(f"the simulator exited: {self.log.read_text()[-2000:]}")
            self.sections = ini_out.read_text()
            self.control = next(line.split(": ", 1)[1].strip()
                                for line in self.log.read_text().splitlines()
                                if line.startswith("# control endpoint:"))
            # 2 ms per XenAPI call in real time, as `make bench` models it.
            requests.post(f"{self.control}/timing", json={"call_latency": 0.002 * speed},
                          timeout=30).raise_for_status()
        except BaseException:
            self.stop()
            raise
        self.masters = [keys["host.name"] for keys in Ini.parse(self.sections).sections.values()]

    def calls(self) -> int:
        """XenAPI calls since the last reset, the inventory's event.from feed aside."""
        counts = requests.get(f"{self.control}/counts", timeout=30).json()
        return sum(n for per in counts.values() for m, n in per.items()
                   if not m.startswith("event"))

    def reset_calls(self) -> None:
        requests.post(f"{self.control}/counts/reset", timeout=30).raise_for_status()

    def session(self, pool: int) -> XenAPI.Session:
        s = XenAPI.Session(self.masters[pool])
        s.xenapi.login_with_password("root", "xenroot", "1.0", "bench")
        return s

    def expected_showall(self) -> dict[str, list[dict[str, str]]]:
        """/showall as `VM.get_all_records` (and guest metrics) say it should read."""
        out: dict[str, list[dict[str, str]]] = {}
        for i in range(len(self.masters)):
            s = self.session(i)
            try:
                vms = s.xenapi.VM.get_all_records()
                gms = s.xenapi.VM_guest_metrics.get_all_records()
            finally:
                s.xenapi.session.logout()
            rows = [{"name": v["name_label"], "power_state": v["power_state"],
                     "vcpus": str(v["VCPUs_max"]), "memory_static_max": str(v["memory_static_max"]),
                     "networkinfo": ",".join(guest_addresses(
                         (gms.get(v["guest_metrics"]) or {}).get("networks"))),
                     "name_description": v["name_description"]}
                    for v in vms.values() if v["power_state"] == "Running"
                    and not v["is_a_template"] and not v["is_control_domain"]]
            out[str(i + 1)] = sorted(rows, key=lambda r: r["name"])
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(session: requests.Session, url: str, n: int) -> tuple[list[float], int]:
    """n sequential GETs: latencies (ms) and the last body's size."""
    times, size = [], 0
    for _ in range(n):
        t0 = time.perf_counter()
        r = session.get(url, timeout=120)
        times.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
        size = len(r.content)
    return times, size


class Clients:
    """Threads calling `work(i, n)` in a loop until stopped; answers timed, failures kept."""

    def __init__(self, count: int, work: Callable[[int, int], object]) -> None:
        self.work = work
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.times: list[tuple[float, float]] = []  # (start, seconds)
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(count)]

    def _run(self, i: int) -> None:
        n = 0
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                self.work(i, n)
                ok = ""
            except Exception as exc:  # every failure is counted, none ends the run
                ok = repr(exc)[:300]
            with self.lock:
                self.times.append((t0, time.monotonic() - t0))
                if ok:
                    self.failures.append(ok)
            n += 1

    def __enter__(self) -> Clients:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=600)


def get_ok(url: str, timeout: float = 120) -> requests.Response:
    r = requests.get(url, timeout=timeout, headers={"Connection": "close"})
    if r.status_code != 200:
        raise RuntimeError(f"{url}: {r.status_code} {r.text[:200]}")
    return r


class Warmed:
    """How many workers logged their warm-up so far (reads only what the log added:
    the access log grows by a line per request, and this is asked ten times a second)."""

    def __init__(self, log: Path) -> None:
        self.log, self.offset, self.seen, self.tail = log, 0, 0, b""

    def __call__(self) -> int:
        with open(self.log, "rb") as f:
            f.seek(self.offset)
            chunk = self.tail + f.read()
        self.offset += len(chunk) - len(self.tail)
        cut = chunk.rfind(b"\n") + 1
        self.seen += chunk[:cut].count(b"worker warmed up")
        self.tail = chunk[cut:]
        return self.seen


def hup_stall(base: str, proc: subprocess.Popen, warmed: Warmed) -> tuple[float, int]:
    """Longest answer (s) while HUP replaces the workers, and failed answers."""
    before_warm = warmed()
    before = workers(proc.pid)
    with Clients(HUP_CLIENTS, lambda i, n: get_ok(f"{base}/getavailablecount/centos")) as c:
        wait_until(lambda: len(c.times) >= 20, timeout=120, what="load before HUP")
        hup_at = time.monotonic()
        os.kill(proc.pid, 1)  # SIGHUP
        wait_until(lambda: not (workers(proc.pid) & before)
                   and warmed() >= before_warm + len(before),
                   timeout=600, what="the workers to be replaced after HUP", interval=0.1)
        settled = time.monotonic()
        wait_until(lambda: any(t0 > settled + 1.0 for t0, _ in c.times), timeout=120,
                   what="answers after the reload")
    during = [secs for t0, secs in c.times if t0 + secs >= hup_at]
    return max(during, default=0.0), len(c.failures)


def churn(sim: SimProcess, base: str, secs: float) -> tuple[bool, float]:
    """Build, release and power-cycle VMs for `secs`; then whether /showall matches
    `VM.get_all_records` (on fresh connections, so every worker answers), and how long
    it took to match once the farm was quiet."""
    def build(i: int, n: int) -> None:
        name = f"churn{i}x{n}x"
        get_ok(f"{base}/getservers/{name}?os=centos&count=2", timeout=600)
        get_ok(f"{base}/releaseservers/{name}?count=2", timeout=600)

    rnd = random.Random(1)
    foreign = []  # (pool, ref) of the farm's own guests, shut down and started again
    for i in range(len(sim.masters)):
        s = sim.session(i)
        try:
            foreign += [(i, ref) for ref, v in s.xenapi.VM.get_all_records().items()
                        if v["name_label"].startswith("ci-") and v["power_state"] == "Running"]
        finally:
            s.xenapi.session.logout()

    # A few of them, over and over: a guest started again takes a lease from the DHCP
    # range (its first address was a fixed one outside it) and keeps it while it runs,
    # so cycling hundreds of different guests would use up the range dynvm's builds take
    # their addresses from, and those builds would time out waiting for one.
    foreign = rnd.sample(foreign, min(CYCLED_GUESTS, len(foreign)))

    def power_cycle(i: int, n: int) -> None:
        pool, ref = rnd.choice(foreign)
        s = sim.session(pool)
        try:
            if s.xenapi.VM.get_power_state(ref) == "Running":
                s.xenapi.VM.hard_shutdown(ref)
                s.xenapi.VM.start(ref, False, False)
        finally:
            s.xenapi.session.logout()

    with Clients(CHURN_CLIENTS, build) as builders, Clients(1, power_cycle) as cycler:
        time.sleep(secs)  # the churn's length is the scenario itself
    failures = builders.failures + cycler.failures
    if failures:
        print(f"  churn: {len(failures)} failed calls, e.g. {failures[0]}", file=sys.stderr)

    def quiet() -> dict[str, Any] | None:
        first = sim.expected_showall()
        time.sleep(1.0)  # the farm is quiet when a second read a moment later agrees
        return first if sim.expected_showall() == first else None

    expected = wait_until(quiet, timeout=120, what="the farm to be quiet", interval=0)
    t0 = time.monotonic()
    try:
        wait_until(lambda: all(json.loads(get_ok(f"{base}/showall").text) == expected
                               for _ in range(4)), timeout=30,
                   what="/showall to match VM.get_all_records", interval=0.1)
    except AssertionError:
        return False, float("nan")
    return True, time.monotonic() - t0


class Farm:
    """One size's simulated farm and its store with the history seeded, for its runs."""

    def __init__(self, size: int, args: argparse.Namespace, work: Path) -> None:
        work.mkdir(parents=True)
        self.work = work
        self.sim = SimProcess(size, args.speed, work)
        try:
            self.store = work / "store"
            seed_history(self.ini(self.store), args.history)
        except BaseException:
            self.sim.stop()
            raise

    def ini(self, store: Path) -> Path:
        """dynvm's INI for this farm, with its SQLite store under `store`."""
        return (Ini({"common": {"vm.network.timeout.secs": 60}}).sqlite_store(store)
                .merge(Ini.parse(self.sim.sections))).write(store.parent / "dynvm.ini")

    def run_ini(self, work: Path) -> Path:
        """An INI for one run, on a copy of the seeded store."""
        shutil.copytree(self.store, work / "store")
        return self.ini(work / "store")

    def stop(self) -> None:
        self.sim.stop()


def one_run(farm: Farm, args: argparse.Namespace, work: Path, out: dict[str, float]) -> None:
    """Measure one run into `out` (what was measured stays there if a step fails)."""
    work.mkdir(parents=True)
    sim = farm.sim
    out["vms"] = sim.vms
    ini = farm.run_ini(work)
    log = work / "serve.log"
    started = time.monotonic()
    with served(ini, workers=args.workers, log=log, ready_secs=600) as (base, proc):
        wait_until(lambda: requests.get(f"{base}/showall", timeout=120).status_code == 200,
                   timeout=600, what="a first 200 of /showall", interval=0.05)
        out["first_200"] = time.monotonic() - started
        warmed = Warmed(log)
        wait_until(lambda: warmed() >= args.workers, timeout=600, what="every worker to warm up")
        s = requests.Session()
        for path in ("/", "/ui/api/vms", "/showall", "/getavailablecount/centos"):
            s.get(base + path, timeout=120)  # the routes and the connection, once
        sim.reset_calls()
        n = args.requests
        out["page_p50"] = statistics.median(timed(s, f"{base}/", n)[0])
        vms_times, vms_size = timed(s, f"{base}/ui/api/vms", n)
        out["vms_p50"], out["vms_kb"] = statistics.median(vms_times), vms_size / 1024
        uncached = []
        for k in range(n):
            uncached += timed(s, f"{base}/showall" + ("?ignorelabels=true" if k % 2 else ""),
                              1)[0]
        out["showall_p50"] = statistics.median(uncached)
        out["read_calls"] = sim.calls()
        figures = load(f"{base}/getavailablecount/centos", 32, args.seconds)
        out["rps"], out["rps_p99"] = figures["rps"], figures["p99_ms"]
        out["rps_errors"] = figures["errors"]
        for path in ("/", "/ui/api/vms", "/showall"):
            get_ok(base + path)  # every worker answered each route once at least
        rss = {pid: rss_mb(pid) for pid in workers(proc.pid)}
        out["worker_rss"] = max(rss.values())
        others = children(proc.pid) - set(rss)
        out["other_rss"] = sum(rss_mb(pid) for pid in others) if others else 0.0
        out["hup_stall"], out["hup_failed"] = hup_stall(base, proc, warmed)
        matched, settle = churn(sim, base, args.churn_secs)
        out["churn_match"], out["churn_settle"] = float(matched), settle
        sim.reset_calls()
        for path in ("/showall", "/getavailablecount/centos", "/", "/ui/api/vms"):
            for _ in range(5):
                get_ok(base + path)
        out["read_calls"] += sim.calls()


ROWS = (  # key, label, unit, goal
    ("first_200", "serve start -> first 200", "s", ""),
    ("worker_rss", "RSS of each worker (largest)", "MB", "<= 100 MB at 10,000"),
    ("other_rss", "RSS of the other processes dynvm serve started", "MB", ""),
    ("hup_stall", "longest answer after `kill -HUP`", "s", "<= 100 ms"),
    ("hup_failed", "requests failed across the HUP", "", "0"),
    ("page_p50", "`/` p50", "ms", "<= 30 ms at 10,000"),
    ("vms_p50", "`/ui/api/vms` p50", "ms", ""),
    ("vms_kb", "`/ui/api/vms` body", "KB", ""),
    ("showall_p50", "`/showall` uncached p50", "ms", ""),
    ("rps", "`/getavailablecount` req/s, 32 clients", "", ">= 2,000"),
    ("rps_p99", "`/getavailablecount` p99 under that load", "ms", "<= 50 ms"),
    ("rps_errors", "`/getavailablecount` failed under that load", "", "0"),
    ("read_calls", "XenAPI calls made by reads", "", "0"),
    ("churn_match", "`/showall` == `VM.get_all_records` after churn (runs)", "", "all"),
    ("churn_settle", "time for `/showall` to match once quiet", "s", ""),
)


def fmt(value: float, unit: str) -> str:
    if value != value:  # nan
        return "-"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"
    if unit in ("ms", "MB", "KB"):
        return f"{value:,.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}"
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.2f}"


def cell(values: list[float], key: str, unit: str) -> str:
    real = [v for v in values if v == v]  # nan: a run that failed before this step
    if key == "churn_match":
        return f"{int(sum(real))} of {len(real)}"
    if not real:
        return "-"
    mid = statistics.median(real)
    if len(real) < 2:
        return fmt(mid, unit)
    return f"{fmt(mid, unit)} ({fmt(min(real), unit)}–{fmt(max(real), unit)})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,4000,10000", help="farm sizes in VMs, comma-separated")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--speed", type=float, default=20.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--history", type=int, default=10000, help="history documents in the store")
    ap.add_argument("--requests", type=int, default=40, help="sequential fetches per route")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of the throughput load")
    ap.add_argument("--churn-secs", type=float, default=30.0)
    ap.add_argument("--fresh-farms", action="store_true",
                    help="a new farm and store for every run, not one per size")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    results: dict[int, list[dict[str, float]]] = {s: [] for s in sizes}
    failed: list[str] = []
    loads: list[float] = []
    spent: dict[int, float] = {}
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dynvm-bench-scale-") as tmp:
        for size in sizes:
            t0 = time.monotonic()
            sweep(size, args, Path(tmp) / str(size), results[size], failed, loads)
            spent[size] = time.monotonic() - t0
    total = time.monotonic() - began
    head = [f"{results[s][0].get('vms', s):,.0f} VMs" if results[s] else f"{s:,} VMs"
            for s in sizes]
    print(f"dynvm scale bench: {args.workers} workers, simulator at speed {args.speed:g}, "
          f"{args.history:,} history documents; {args.runs} run(s): median (min–max); "
          f"load average {min(loads, default=0):.1f}–{max(loads, default=0):.1f} "
          f"on {os.cpu_count()} CPUs; took {total / 60:.1f} min ("
          + ", ".join(f"{size:,} VMs {spent[size] / 60:.1f} min" for size in sizes) + ")")
    table = [(label, *(cell([r.get(key, math.nan) for r in results[s]], key, unit)
                        for s in sizes), goal)
             for key, label, unit, goal in ROWS]
    widths = [max(len(row[i]) for row in [("", *head, "goal"), *table])
              for i in range(len(sizes) + 2)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(("", *head, "goal"), widths,
                                                         strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in table:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    for line in failed:
        print(f"failed: {line}")
    return 1 if failed else 0


def sweep(size: int, args: argparse.Namespace, work: Path, results: list[dict[str, float]],
          failed: list[str], loads: list[float]) -> None:
    """Every run of one size; a failed run is reported, what it measured kept."""
    farm: Farm | None = None
    try:
        for run in range(args.runs):
            print(f"[{size} VMs, run {run + 1}/{args.runs}]", file=sys.stderr, flush=True)
            loads.append(os.getloadavg()[0])
            out: dict[str, float] = {}
            results.append(out)
            t0 = time.monotonic()
            try:
                if farm is None:
                    farm = Farm(size, args, work / f"farm{run}")
                one_run(farm, args, work / f"run{run}", out)
            except Exception as exc:  # reported; the next run goes on
                traceback.print_exc(file=sys.stderr)
                failed.append(f"{size} VMs run {run + 1}: {exc!r}"[:300])
            finally:
                if farm is not None and (args.fresh_farms or run == args.runs - 1):
                    farm.stop()
                    farm = None
            loads.append(os.getloadavg()[0])
            print(f"  {time.monotonic() - t0:.0f} s: {out}", file=sys.stderr, flush=True)
    finally:
        if farm is not None:
            farm.stop()


if __name__ == "__main__":
    sys.exit(main())
