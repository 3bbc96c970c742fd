"""`python -m bench.reads_beside_builds`: /showall and /getavailablecount while many legacy
`getservers` wait for their builds, under gunicorn (2 workers, 8 threads each).

Starts a simulated farm of 1,000 VMs with realistic timings at speed 1 (a build
takes about 40 s), reads both routes for `--seconds` with nothing else going on
("idle"), then sends `--callers` cold `getservers` of one VM at once and, once the
builds are under way, reads both routes again for `--seconds` while the callers
wait ("busy"). One reader per route, each sending its next request when the
last is answered, from a process of its own (this one runs the simulator).
Prints p50/p95/max in real milliseconds (nothing in a read is simulated) and
how many reads there were; each figure is the median of `--runs` runs with
their range. A read that waits for a request thread shows up as seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from bench.harness import percentile
from bench.run import realistic, spread
from dynvm.sim import Farm
from testbed.inis import farm_ini
from testbed.serving import served, wait_until

OS = "centos"
ROUTES = ("/showall", f"/getavailablecount/{OS}")
WORKERS, THREADS = 2, 8


def starts(farm: Farm) -> int:
    """VM starts asked of the farm so far: a build that got this far is under way."""
    return sum(n for per_host in farm.call_counts().values() for m, n in per_host.items()
               if m.endswith("VM.start_on") or m.endswith("VM.start"))


def read_for(base: str, seconds: float) -> dict[str, list[float]]:
    """Latencies (s) of each route, read back to back for `seconds`, in a child process."""
    out = subprocess.run([sys.executable, "-m", "bench.reads_beside_builds", "--read-from",
                          base, "--seconds", str(seconds)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _reader(base: str, seconds: float) -> dict[str, list[float]]:
    stop = time.monotonic() + seconds
    times: dict[str, list[float]] = {r: [] for r in ROUTES}

    def read(route: str) -> None:
        s = requests.Session()
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            r = s.get(base + route, timeout=3600)
            took = time.perf_counter() - t0
            if r.status_code != 200:
                raise RuntimeError(f"{route}: {r.status_code} {r.text}")
            times[route].append(took)

    readers = [threading.Thread(target=read, args=(route,)) for route in ROUTES]
    for t in readers:
        t.start()
    for t in readers:
        t.join()
    return times


def summary(times: dict[str, list[float]], phase: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for route, values in times.items():
        key = f"{phase}_{route.split('/')[1]}"
        out[f"{key}_n"] = len(values)
        out[f"{key}_p50"] = statistics.median(values) if values else float("nan")
        out[f"{key}_p95"] = percentile(values, 95)
        out[f"{key}_max"] = max(values, default=float("nan"))
    return out


def one_run(args: argparse.Namespace, work: Path) -> dict[str, float]:
    farm = Farm.generate(pools=1, hosts=args.hosts, vms_per_host=args.vms_per_host,
                         timing=realistic(args.speed)).start()
    ini = farm_ini(farm, work, network_timeout_secs=900)
    # Small VMs, so that a farm full of guests still has room for every caller.
    ini.set_hosts({"host.timeout.call.secs": 120, f"{OS}.vcpus": 1, f"{OS}.memory": 1})
    ini.set("common", {"vm.parallel.per.host": max(args.callers, 1)})
    path = ini.write(work / "dynvm.ini")
    try:
        with served(path, workers=WORKERS, threads=THREADS,
                    log=work / "serve.log") as (base, _):
            for route in ROUTES:  # every worker has loaded its view of the farm
                for _ in range(4 * WORKERS):
                    requests.get(base + route, timeout=300)
            room = int(requests.get(f"{base}/getavailablecount/{OS}", timeout=60).text)
            if room < args.callers:
                raise SystemExit(f"the farm has room for {room} VMs, fewer than "
                                 f"{args.callers}: use more --hosts")
            out = summary(read_for(base, args.seconds), "idle")
            answers: dict[int, int] = {}

            def get(i: int) -> None:
                r = requests.get(f"{base}/getservers/rbb{i}?os={OS}&ignorelabels=true",
                                 timeout=3600)
                answers[i] = r.status_code

            callers = [threading.Thread(target=get, args=(i,), daemon=True)
                       for i in range(args.callers)]
            before = starts(farm)
            for t in callers:
                t.start()
            # Every caller that has a request thread has its build under way.
            wait_until(lambda: starts(farm) - before >= min(args.callers, WORKERS * THREADS),
                       timeout=600, what="the builds to start")
            out.update(summary(read_for(base, args.seconds), "busy"))
            out["waiting_at_end"] = args.callers - len(answers)
            for t in callers:
                t.join()
            out["ok"] = sum(code == 200 for code in answers.values())
            for i in range(args.callers):
                requests.get(f"{base}/releaseservers/rbb{i}", timeout=600)
    finally:
        farm.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--callers", type=int, default=50, help="getservers waiting at once")
    ap.add_argument("--seconds", type=float, default=15.0, help="how long each phase reads")
    ap.add_argument("--hosts", type=int, default=25)
    ap.add_argument("--vms-per-host", type=int, default=40)
    ap.add_argument("--speed", type=float, default=1.0,
                    help="simulated seconds per real second (builds must outlast the reads)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--read-from", metavar="URL", help=argparse.SUPPRESS)  # the child reader
    args = ap.parse_args(argv)
    if args.read_from:
        print(json.dumps(_reader(args.read_from, args.seconds)))
        return 0
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="dynvm-bench-") as tmp:
        for n in range(args.runs):
            print(f"[run {n + 1}/{args.runs}] {args.callers} getservers on "
                  f"{args.hosts} x {args.vms_per_host}...", file=sys.stderr, flush=True)
            work = Path(tmp) / f"run{n}"
            work.mkdir()
            runs.append(one_run(args, work))

    def cell(key: str, unit: str) -> str:
        return spread([r[key] for r in runs], unit)

    print(f"reads while {args.callers} legacy getservers wait on builds ({WORKERS} workers x "
          f"{THREADS} threads, {args.hosts} x {args.vms_per_host} VMs, each phase "
          f"{args.seconds:g} s; {args.runs} run(s): median (min–max))")
    print("| route | phase | p50 | p95 | max | reads | target |")
    print("|---|---|---|---|---|---|---|")
    for route in ROUTES:
        for phase in ("idle", "busy"):
            key = f"{phase}_{route.split('/')[1]}"
            target = "p95 <= 50 ms" if phase == "busy" else ""
            print(f"| {route} | {phase} | {cell(f'{key}_p50', 'ms')} | "
                  f"{cell(f'{key}_p95', 'ms')} | {cell(f'{key}_max', 'ms')} | "
                  f"{cell(f'{key}_n', '')} | {target} |")
    print("load average at the end (1, 5, 15 min): "
          + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
    print(f"getservers still waiting when the busy reads ended: "
          f"{', '.join(str(int(r['waiting_at_end'])) for r in runs)} of {args.callers}; "
          f"answered 200: {', '.join(str(int(r['ok'])) for r in runs)} of {args.callers}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
