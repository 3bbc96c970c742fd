"""The rolling-reboot planner: which host when, and every migration with the memory it leaves.

Pure functions over plain records, so the same plan is printed by a dry run,
executed by the runner (re-planned at every host from the pool as it then
is) and compared with the plain greedy plan in the benchmark.

dynvm's plan, host by host (pool master first):

- warm-pool VMs are destroyed (the warm pool rebuilds them on hosts in service);
- dynvm VMs whose lease ends within the drain window are left to expire;
- a VM of a fleet anti-affinity group never moves to a host that runs another VM
  of its group (no host for it is a problem, as no room is);
- every other VM moves, biggest first, to a host already rebooted when one has
  room (so it never moves again), else to the host rebooted last that has
  room (by then the most rebooted room is there for it). The master's VMs necessarily move twice: no host is
  rebooted before it.

The plain plan evacuates everything to whichever other host has the most free
memory, as a script that knows nothing of leases or of the reboot order would.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

GIB = 1 << 30

STRATEGIES = ("migrate", "drain", "auto")


@dataclass(frozen=True)
class PlanHost:
    uuid: str
    name: str
    memory_free: int  # bytes, as host_metrics reports it now
    memory_total: int
    is_master: bool = False


@dataclass(frozen=True)
class PlanVm:
    uuid: str
    name: str
    host: str  # uuid of the host it runs on
    memory: int  # bytes it takes on whichever host runs it
    blocker: str = ""  # why it cannot live-migrate ("" when it can)
    lease_expires: float | None = None  # dynvm VMs only
    warm: bool = False  # a warm-pool VM nobody holds yet
    group: str = ""  # a fleet anti-affinity group: never on one host with another of it


@dataclass(frozen=True)
class Migration:
    vm: str  # uuid
    name: str
    src: str  # host uuid
    dst: str
    memory: int
    free_after: dict[str, int]  # host uuid -> free bytes once this migration is done


@dataclass
class HostStep:
    """Everything done to one host: evacuation by the plan, then its reboot."""

    host: str
    name: str
    migrations: list[Migration] = field(default_factory=list)
    destroy: list[str] = field(default_factory=list)  # warm VM uuids, rebuilt elsewhere
    wait_for: list[str] = field(default_factory=list)  # VM uuids whose lease ends in the window
    wait_until: float | None = None  # when the last of them expires (or the drain timeout)
    drain_first: bool = False  # --strategy drain: wait for leases, then migrate what is left


@dataclass
class Plan:
    kind: str  # "dynvm" | "plain"
    strategy: str
    hosts: list[HostStep]
    names: dict[str, str]  # host uuid -> name
    vm_names: dict[str, str]  # VM uuid -> name
    problems: list[str] = field(default_factory=list)  # why it cannot run (empty: it can)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def migrations(self) -> list[Migration]:
        return [m for step in self.hosts for m in step.migrations]

    @property
    def bytes_moved(self) -> int:
        return sum(m.memory for m in self.migrations)

    def moves_per_vm(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in self.migrations:
            out[m.vm] = out.get(m.vm, 0) + 1
        return out

    def to_dict(self) -> dict:
        return {
            "kind": self.kind, "strategy": self.strategy, "ok": self.ok,
            "problems": list(self.problems),
            "migrations": len(self.migrations), "gib_moved": round(self.bytes_moved / GIB, 2),
            "hosts": [{
                "host": s.name, "uuid": s.host,
                "destroy": [self.vm_names.get(v, v) for v in s.destroy],
                "wait_for": [self.vm_names.get(v, v) for v in s.wait_for],
                "migrations": [{"vm": m.name, "from": self.names.get(m.src, m.src),
                                "to": self.names.get(m.dst, m.dst),
                                "memory_gib": round(m.memory / GIB, 2),
                                "free_after_gib": {self.names.get(h, h): round(f / GIB, 2)
                                                   for h, f in sorted(m.free_after.items())}}
                               for m in s.migrations]}
                for s in self.hosts],
        }


def host_order(hosts: Sequence[PlanHost]) -> list[PlanHost]:
    """The pool master first (its reboot hands XAPI back first), then members by name."""
    return sorted(hosts, key=lambda h: (not h.is_master, h.name, h.uuid))


def gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def _stays(vm: PlanVm, strategy: str, now: float, drain_window: float) -> bool:
    """A dynvm VM left to end its lease on the host rather than moved."""
    if vm.lease_expires is None or strategy == "migrate":
        return False
    return vm.lease_expires <= now + drain_window


def plan_reboot(hosts: Sequence[PlanHost], vms: Iterable[PlanVm], *, strategy: str = "auto",
                drain_window: float = 0.0, now: float = 0.0,
                done: Iterable[str] = (), order: Sequence[str] | None = None) -> Plan:
    """dynvm's rolling-reboot plan.

    `done`: hosts already rebooted in this run; `order`: the run's host order
    (uuids) once it has started, as the master role moves while it runs.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}")
    return _plan("dynvm", strategy, hosts, list(vms), drain_window, now, set(done), smart=True,
                 order=order)


def plan_plain(hosts: Sequence[PlanHost], vms: Iterable[PlanVm]) -> Plan:
    """The plain plan: evacuate everything, greedy most-free-memory target, master first."""
    return _plan("plain", "migrate", hosts, list(vms), 0.0, 0.0, set(), smart=False)


def _plan(kind: str, strategy: str, hosts: Sequence[PlanHost], vms: list[PlanVm],
          drain_window: float, now: float, done: set[str], *, smart: bool,
          order: Sequence[str] | None = None) -> Plan:
    ordered = host_order(hosts)
    if order:
        rank = {u: i for i, u in enumerate(order)}
        ordered.sort(key=lambda h: rank.get(h.uuid, len(rank)))
    names = {h.uuid: h.name for h in ordered}
    position = {h.uuid: i for i, h in enumerate(ordered)}
    free = {h.uuid: h.memory_free for h in ordered}
    where = {v.uuid: v.host for v in vms}
    by_uuid = {v.uuid: v for v in vms}
    plan = Plan(kind, strategy, [], names, {v.uuid: v.name for v in vms})
    rebooted = set(done)
    for h in ordered:
        if h.uuid in done:
            continue
        step = HostStep(h.uuid, h.name)
        plan.hosts.append(step)
        resident = sorted((by_uuid[u] for u, at in where.items() if at == h.uuid),
                          key=lambda v: (-v.memory, v.name, v.uuid))
        to_move: list[PlanVm] = []
        for vm in resident:
            if smart and vm.warm:
                step.destroy.append(vm.uuid)
                free[h.uuid] += vm.memory
                del where[vm.uuid]
            elif smart and _stays(vm, strategy, now, drain_window):
                step.wait_for.append(vm.uuid)
                step.wait_until = max(step.wait_until or 0.0, vm.lease_expires or 0.0)
            elif vm.blocker:
                plan.problems.append(f"VM {vm.name} on {h.name} cannot be live-migrated: "
                                     f"{vm.blocker}")
            else:
                to_move.append(vm)
        if smart and strategy == "drain" and any(v.lease_expires is not None for v in to_move):
            # Leases that outlive the window may still be released early: wait it out first.
            step.drain_first = True
            step.wait_until = now + drain_window
        unplaced: list[PlanVm] = []
        for vm in to_move:
            others = [o for o in ordered if o.uuid != h.uuid]
            fits = [o for o in others if free[o.uuid] >= vm.memory]
            apart = [o for o in fits if not (smart and _holds_group(o.uuid, vm, where, by_uuid))]
            if fits and not apart:
                plan.problems.append(
                    f"VM {vm.name} on {h.name} cannot move: every other host with room for it "
                    f"runs a VM of its group {vm.group}, and VMs of one group never share a host")
                continue
            fits = apart
            if not fits:
                unplaced.append(vm)
                continue
            if smart:
                # A rebooted host (the VM never moves again), most free memory among them;
                # else the host rebooted last, when the most rebooted room awaits its VMs.
                target = max(fits, key=lambda o: (o.uuid in rebooted,
                                                  free[o.uuid] if o.uuid in rebooted
                                                  else position[o.uuid]))
            else:
                target = max(fits, key=lambda o: (free[o.uuid], o.name))
            free[target.uuid] -= vm.memory
            free[h.uuid] += vm.memory
            where[vm.uuid] = target.uuid
            step.migrations.append(Migration(vm.uuid, vm.name, h.uuid, target.uuid, vm.memory,
                                             dict(free)))
        if unplaced:
            need = sum(v.memory for v in unplaced)
            room = sum(free[o.uuid] for o in ordered if o.uuid != h.uuid)
            biggest = max(free[o.uuid] for o in ordered if o.uuid != h.uuid) if len(ordered) > 1 \
                else 0
            missing = max(need - room, max(v.memory for v in unplaced) - biggest, 0)
            plan.problems.append(
                f"not N+1: evacuating {h.name} lacks {gib(missing)} of free memory on the other "
                f"hosts ({len(unplaced)} VM(s), {gib(need)}, do not fit: "
                f"{', '.join(v.name for v in unplaced[:5])}"
                f"{' ...' if len(unplaced) > 5 else ''})")
        # The VMs left to expire are gone before the reboot.
        for u in step.wait_for:
            free[h.uuid] += by_uuid[u].memory
            where.pop(u, None)
        rebooted.add(h.uuid)
    return plan


def _holds_group(host: str, vm: PlanVm, where: dict[str, str],
                 by_uuid: dict[str, PlanVm]) -> bool:
    """Another VM of `vm`'s group is on `host` (where the plan has put it so far)."""
    return bool(vm.group) and any(by_uuid[u].group == vm.group for u, at in where.items()
                                  if at == host and u != vm.uuid)


@dataclass(frozen=True)
class Timing:
    """Modelled durations for comparing plans (seconds, real life)."""

    migrate_fixed: float = 2.0  # per migration
    migrate_per_gib: float = 1.0  # memory copy
    reboot: float = 300.0  # down and back, XAPI answering


def simulated_secs(plan: Plan, parallel: int, timing: Timing = Timing(), now: float = 0.0) -> float:
    """Total time of a plan, host after host: its migrations `parallel` at a time while the
    leases it waits for run out, then its reboot. Time passes: a lease that ended while
    earlier hosts rebooted is not waited for again."""
    clock = 0.0
    for step in plan.hosts:
        lanes = [0.0] * max(parallel, 1)
        for m in step.migrations:
            i = lanes.index(min(lanes))
            lanes[i] += timing.migrate_fixed + timing.migrate_per_gib * m.memory / GIB
        wait = max((step.wait_until or 0.0) - (now + clock), 0.0) \
            if step.wait_for or step.drain_first else 0.0
        busy = wait + max(lanes) if step.drain_first else max(max(lanes), wait)
        clock += busy + timing.reboot
    return clock


def describe(plan: Plan) -> list[str]:
    """The plan as lines of text for the CLI and the log."""
    lines = [f"{plan.kind} plan ({plan.strategy}): {len(plan.hosts)} host(s), "
             f"{len(plan.migrations)} migration(s), {gib(plan.bytes_moved)} moved"]
    for n, step in enumerate(plan.hosts, 1):
        lines.append(f"{n}. {step.name}: {len(step.migrations)} migration(s), "
                     f"{len(step.destroy)} warm VM(s) destroyed, "
                     f"{len(step.wait_for)} lease(s) left to end, then reboot")
        for v in step.destroy:
            lines.append(f"   destroy {plan.vm_names.get(v, v)} (warm pool rebuilds it)")
        for v in step.wait_for:
            lines.append(f"   wait    {plan.vm_names.get(v, v)} (lease ends within the window)")
        for m in step.migrations:
            left = ", ".join(f"{plan.names.get(h, h)} {f / GIB:.1f}"
                             for h, f in sorted(m.free_after.items(),
                                                key=lambda kv: plan.names.get(kv[0], kv[0])))
            lines.append(f"   migrate {m.name} {plan.names.get(m.src)} -> {plan.names.get(m.dst)} "
                         f"{gib(m.memory)}; free GiB: {left}")
    for p in plan.problems:
        lines.append(f"refused: {p}")
    return lines
