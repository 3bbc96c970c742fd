"""`python -m bench.v1_requests`: how fast /api/v1 accepts a 10-VM request, and a build
watched step by step, against a simulated farm with realistic timings under gunicorn.

Prints the time to the 202 answer (real milliseconds: holding the room and
recording the request, nothing is simulated), then each VM's step as
`GET /api/v1/requests/{id}?wait=` reports it, then a cancel mid-build and
what it left behind on the farm (nothing, or the run fails).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests
import XenAPI

from bench.harness import percentile
from bench.run import realistic
from dynvm.core import tokens
from dynvm.sim import Farm
from dynvm.store.sqlite import SqliteStore
from testbed.inis import farm_ini
from testbed.serving import served, wait_until

COUNT = 10


def write_ini(work: Path, farm: Farm) -> Path:
    return farm_ini(farm, work, network_timeout_secs=400).write(work / "dynvm.ini")


def finished(s: requests.Session, location: str) -> bool:
    return s.get(location, timeout=60).json()["state"] != "running"


def farm_vms(farm: Farm) -> tuple[int, int]:
    """(dynvm VMs, VDIs) on the farm, read through XenAPI."""
    vms = vdis = 0
    for pool in farm.pools:
        s = XenAPI.Session(pool.master.url)
        s.xenapi.login_with_password("root", "xenroot", "1.0", "bench")
        try:
            vms += sum(1 for r in s.xenapi.VM.get_all_records().values()
                       if "dynvm_lease" in r["other_config"])
            vdis += len(s.xenapi.VDI.get_all())
        finally:
            s.xenapi.session.logout()
    return vms, vdis


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--speed", type=float, default=10.0, help="simulated time runs this much faster")
    ap.add_argument("--rounds", type=int, default=20, help="10-VM requests timed (each cancelled)")
    args = ap.parse_args(argv)
    farm = Farm.generate(pools=2, hosts=4, timing=realistic(args.speed)).start()
    try:
        with tempfile.TemporaryDirectory(prefix="dynvm-bench-v1-") as tmp:
            work = Path(tmp)
            ini = write_ini(work, farm)
            store = SqliteStore(str(work / "dynvm.sqlite"))
            secret, _ = tokens.create(store, "bench")
            store.close()
            h = {"Authorization": f"Bearer {secret}"}
            base_vdis = farm_vms(farm)[1]
            with served(ini, workers=2, log=work / "serve.log") as (base, _):
                s = requests.Session()
                s.headers.update(h)
                s.get(base + "/api/v1/capacity", timeout=60)  # inventories loaded
                times = []
                for _ in range(args.rounds):
                    t0 = time.perf_counter()
                    r = s.post(base + "/api/v1/requests", json={"os": "centos", "count": COUNT},
                               timeout=60)
                    times.append((time.perf_counter() - t0) * 1000)
                    assert r.status_code == 202, r.text
                    location = base + r.headers["Location"]
                    s.delete(location, timeout=60)
                    wait_until(functools.partial(finished, s, location), timeout=600,
                               what="the cancel")
                print(f"POST /api/v1/requests, {COUNT} VMs -> 202 ({args.rounds} rounds, "
                      f"2 workers): median {statistics.median(times):.1f} ms, "
                      f"p95 {percentile(times, 95):.1f} ms, max {max(times):.1f} ms")

                r = s.post(base + "/api/v1/requests", json={"os": "centos", "count": COUNT,
                                                            "name": "watch"}, timeout=60)
                loc = base + r.headers["Location"]
                t0 = time.monotonic()
                last: dict[str, str] = {}
                body = r.json()
                while True:
                    for vm in body["vms"]:
                        if last.get(vm["name"]) != vm["step"]:
                            last[vm["name"]] = vm["step"]
                            ip = f" {vm['ip']}" if vm["ip"] else ""
                            print(f"  +{(time.monotonic() - t0) * args.speed:6.1f} s (sim) "
                                  f"{vm['name']:<8} {vm['step']}{ip}")
                    if body["state"] != "running":
                        break
                    body = s.get(loc + "?wait=30", timeout=90).json()
                print(f"request {body['state']}: {sum(v['step'] == 'ready' for v in body['vms'])}"
                      f"/{COUNT} ready in {(time.monotonic() - t0) * args.speed:.1f} s (sim)")
                for vm in body["vms"]:
                    s.delete(f"{base}/api/v1/vms/{vm['name']}", timeout=120)

                r = s.post(base + "/api/v1/requests", json={"os": "centos", "count": COUNT,
                                                            "name": "cx"}, timeout=60)
                loc = base + r.headers["Location"]
                wait_until(lambda: any(v["step"] in ("starting", "waiting for IP")
                                       for v in s.get(loc, timeout=60).json()["vms"]),
                           timeout=600, what="the build to be under way")
                steps = sorted({v["step"] for v in s.get(loc, timeout=60).json()["vms"]})
                s.delete(loc, timeout=60)
                wait_until(lambda: s.get(loc, timeout=60).json()["state"] != "running",
                           timeout=600, what="the cancel")
                held = wait_until(lambda: (lambda v: v if v == (0, base_vdis) else None)(
                    farm_vms(farm)), timeout=120, what="the farm to be clean")
                store = SqliteStore(str(work / "dynvm.sqlite"))
                left = (len(store.leases.find()), len(store.reservations.live()))
                store.close()
                print(f"cancel mid-build (steps then: {', '.join(steps)}): "
                      f"{held[0]} VMs, {held[1] - base_vdis} extra VDIs, {left[0]} leases, "
                      f"{left[1]} reservations left")
                if left != (0, 0):
                    return 1
    finally:
        farm.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
