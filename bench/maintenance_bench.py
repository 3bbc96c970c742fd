"""Rolling reboot: dynvm's plan against the plain greedy plan on the same pool.

`python -m bench.maintenance_bench` prints, for one simulated pool (4 hosts,
60 running VMs: 48 foreign guests and 12 dynvm VMs, of which some leases end
within the drain window and some are warm-pool VMs), the migrations, the GiB
moved and the total simulated time of each plan with 1 and 5 parallel
migrations. Durations are the simulator's: 2 s + 8 s per GiB per live
migration, 120 s per host reboot; leases are waited for at most the drain
window. `--measure` also runs dynvm's plan for real on the simulator (all
VMs migrated, no leases ending) and prints the simulated time it took.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from dynvm.core.maintenance.plan import (
    GIB,
    Plan,
    PlanHost,
    PlanVm,
    Timing,
    plan_plain,
    plan_reboot,
    simulated_secs,
)
from testbed.inis import farm_ini
from testbed.pools import maintenance_pool

NOW = 1_000_000.0


def pool_records(dynvm_per_host: int = 3, lease_ends: float = 300.0
                 ) -> tuple[list[PlanHost], list[PlanVm]]:
    """The maintenance pool as planner records, with dynvm VMs added on every host."""
    t = maintenance_pool()
    master = next(iter(t["pool"].values()))["master"]
    hosts, vms = [], []
    for ref, h in t["host"].items():
        m = t["host_metrics"][h["metrics"]]
        free = int(m["memory_free"])
        for k in range(dynvm_per_host):
            mem = 4 * GIB
            free -= mem
            # One lease ends within the window, one is a warm-pool VM, the rest live long.
            expires = NOW + lease_ends if k == 0 else NOW + 12 * 3600
            vms.append(PlanVm(f"{h['uuid']}-d{k}", f"job-{h['name_label']}-{k}", h["uuid"], mem,
                              lease_expires=None if k == 1 else expires, warm=k == 1))
        hosts.append(PlanHost(h["uuid"], h["name_label"], free, int(m["memory_total"]),
                              is_master=ref == master))
    uuid_of = {ref: h["uuid"] for ref, h in t["host"].items()}
    for v in t["VM"].values():
        if v["is_a_template"] or v["is_control_domain"] or v["power_state"] != "Running":
            continue
        vms.append(PlanVm(v["uuid"], v["name_label"], uuid_of[v["resident_on"]],
                          int(v["memory_static_max"])))
    return hosts, vms


def row(label: str, plan: Plan, timing: Timing) -> str:
    moves = plan.moves_per_vm()
    twice = sum(1 for n in moves.values() if n >= 2)
    return (f"| {label} | {len(plan.migrations)} | {plan.bytes_moved / GIB:.0f} | {twice} | "
            f"{simulated_secs(plan, 1, timing, NOW) / 60:.1f} | "
            f"{simulated_secs(plan, 5, timing, NOW) / 60:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drain-window", type=float, default=600.0)
    ap.add_argument("--lease-ends", type=float, default=300.0,
                    help="seconds until the short leases (one per host) end")
    ap.add_argument("--measure", action="store_true",
                    help="also run dynvm's plan on the simulator and time it")
    ap.add_argument("--speed", type=float, default=100.0, help="simulator speed for --measure")
    args = ap.parse_args()
    hosts, vms = pool_records(lease_ends=args.lease_ends)
    timing = Timing(migrate_fixed=2.0, migrate_per_gib=8.0, reboot=120.0)
    total = sum(v.memory for v in vms) / GIB
    print(f"pool: {len(hosts)} hosts, {len(vms)} running VMs, {total:.0f} GiB of guests; "
          f"drain window {args.drain_window:.0f} s, short leases end in {args.lease_ends:.0f} s")
    print("| plan | migrations | GiB moved | VMs moved twice | minutes, --parallel 1 | "
          "minutes, --parallel 5 |")
    print("|---|---|---|---|---|---|")
    plans = [
        ("dynvm, --strategy auto", plan_reboot(hosts, vms, strategy="auto",
                                               drain_window=args.drain_window, now=NOW)),
        ("dynvm, --strategy migrate", plan_reboot(hosts, vms, strategy="migrate", now=NOW)),
        ("plain greedy (evacuate all, most free memory)", plan_plain(hosts, vms)),
    ]
    for label, plan in plans:
        if not plan.ok:
            raise SystemExit(f"{label}: {plan.problems}")
        print(row(label, plan, timing))
    if args.measure:
        speed = args.speed
        measured = [measure(parallel, speed) for parallel in (1, 5)]
        n, gib_moved = measured[0][1], measured[0][2]
        print(f"| dynvm, --strategy migrate, run on the simulator at speed {speed:.0f} "
              f"(the 12 dynvm VMs on long leases) | {n} | {gib_moved:.0f} | - | "
              f"{measured[0][0] / 60:.1f} | {measured[1][0] / 60:.1f} |")


def measure(parallel: int, speed: float) -> tuple[float, int, float]:
    """A real rolling reboot on the simulator: (simulated seconds, migrations, GiB moved)."""
    from dynvm.core.background import Timings
    from dynvm.core.services import Options, ServersRequest
    from dynvm.runtime.bootstrap import build_service
    from dynvm.sim import Farm
    from testbed.pools import SHARED_SR

    tmp = Path(tempfile.mkdtemp(prefix="dynvm-maint-bench-"))
    farm = Farm([("pool1", maintenance_pool())], speed=speed).start()
    try:
        ini = farm_ini(farm, tmp, storage_name=SHARED_SR).write(tmp / "dynvm.ini")
        svc = build_service(str(ini), timings=Timings(tick=0.1, leader_ttl=2.0,
                                                      heartbeat_ttl=2.0, reconcile_every=0.5))
        try:
            svc.legacy.get_servers(ServersRequest(name="bench", count=12))
            started = time.monotonic()
            plan = svc.maintenance.rolling_reboot(1, Options(execute=True, strategy="migrate",
                                                  parallel=parallel, poll=0.01))
            wall = time.monotonic() - started
        finally:
            svc.close()
        return wall * speed, len(plan.migrations), plan.bytes_moved / GIB
    finally:
        farm.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
