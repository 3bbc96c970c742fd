"""Rolling reboot: dynvm's plan against the plain greedy plan on the same pool.

`python -m bench.maintenance_bench` prints, for one simulated pool (4 hosts,
60 running VMs: 48 foreign guests and 12 dynvm VMs, of which some leases end
within the drain window and some are warm-pool VMs), the migrations, the GiB
moved and the total simulated time of each plan with 1 and 5 parallel
migrations. Durations: 2 s + 1 s per GiB per live migration, 120 s per host
reboot (the simulator's modelled reboot time), leases waited for at most the
drain window.
"""

from __future__ import annotations

import argparse

from bench.maintenance_pool import maintenance_pool
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
    args = ap.parse_args()
    hosts, vms = pool_records(lease_ends=args.lease_ends)
    timing = Timing(migrate_fixed=2.0, migrate_per_gib=1.0, reboot=120.0)
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


if __name__ == "__main__":
    main()
