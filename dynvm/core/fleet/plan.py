"""The fleet plan: what would make the farm match the fleet directory, and why.

A pure function of the declared fleet and the farm as read once
(`FarmState`), so `dynvm fleet plan` prints exactly what `apply` then does,
and the dashboard shows the same findings. The whole plan is made before
anything is done, with room and anti-affinity counted step by step in the
order apply takes them (destroy, stop, migrate, resize, start, create): a plan with
any problem is refused as a whole, before any XenAPI write.

A fleet VM exists once: when its tags are found on more VMs (a copy made in
XenCenter carries them), the one its store record names is kept (else a
running one) and the other running copies are stopped, never destroyed.

A file moved to another `xenhostN/` folder moves its VM to that pool with
its disks (XAPI's cross-pool migration, "storage motion"): live when it runs,
onto a member with room and apart from its group, then started there if it was
halted and says `autostart=true`. A VM XAPI shows in two pools under one uuid
is being moved by XAPI: nothing is done about it until that is over.

What the plan never does: touch a VM it cannot prove is the fleet's (same
name, no fleet tag of this deployment: reported), shrink a disk, rebuild a VM
whose OS changed, destroy a VM whose file was removed without `prune`, or
restart a running VM without `restart`.

Over 400 lines because the planner is one pass whose every decision takes and
gives back room in the same `Room`; split, its parts would pass that state around.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any

from dynvm.config import Fleet, FleetVm
from dynvm.core.fleet.farm import FarmState, Member, Seen
from dynvm.core.fleet.room import Need, Room, need_of
from dynvm.core.lifecycle import FleetDrift as Drift
from dynvm.core.lifecycle import FleetState

_MOVING = "being moved between pools by XAPI (seen in both)"


@dataclass(frozen=True)
class Options:
    prune: bool = False  # destroy fleet VMs whose file was removed
    restart: bool = False  # restart running VMs whose size changed


class Kind(enum.StrEnum):
    """What apply does, in the order it does it (room freed before it is taken)."""

    DESTROY = "destroy"
    STOP = "stop"  # a second running copy of a fleet VM
    MIGRATE = "migrate"
    RESIZE = "resize"
    START = "start"
    CREATE = "create"


@dataclass(frozen=True)
class Action:
    kind: Kind
    name: str
    pool: int
    member: str = ""  # target member uuid (create, start, migrate) or where it runs
    where: str = ""  # that member, for people
    vm_uuid: str = ""  # the VM acted on; for a create, the one its record names (missing)
    src: str = ""  # migrate: where it runs now
    why: str = ""
    restart: bool = False  # resize of a running VM: shut down, resized, started
    declared: FleetVm | None = None
    to_pool: int | None = None  # migrate to another pool (storage motion): its N

    def line(self) -> str:
        d = self.declared
        if self.kind == Kind.CREATE and d is not None:
            return (f"create  {self.name} on {self.where} ({d.os}, {d.vcpus} vCPUs, "
                    f"{d.memory_gib} GiB, {d.disk_gib} GiB disk)")
        if self.kind == Kind.MIGRATE and self.to_pool is not None:
            return (f"migrate {self.name} from xenhost{self.pool} to xenhost{self.to_pool} "
                    f"(storage motion): {self.src} -> {self.where} ({self.why})")
        if self.kind == Kind.MIGRATE:
            return f"migrate {self.name} {self.src} -> {self.where} ({self.why})"
        return f"{self.kind.value:<7} {self.name} on {self.where} ({self.why})"


@dataclass(frozen=True)
class Finding:
    name: str
    declared: str  # "xenhost1", "xenhost1/<member>", "any"; "" when its file was removed
    runs: str  # where it is, "" when it does not exist
    power: str
    state: Drift
    why: str = ""
    vm_uuid: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "declared": self.declared, "runs": self.runs,
                "power": self.power, "state": self.state.value, "why": self.why,
                "vm_uuid": self.vm_uuid}


@dataclass
class FleetPlan:
    actions: list[Action] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # reported; nothing is done about them
    problems: list[str] = field(default_factory=list)  # why it is refused (empty: it can run)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def count(self, kind: Kind) -> int:
        return sum(1 for a in self.actions if a.kind == kind)

    def describe(self) -> list[str]:
        """The plan as lines of text for the CLI and the log."""
        lines = ["fleet plan: " + ", ".join(f"{self.count(k)} to {k.value}" for k in Kind)]
        lines += [f"  {a.line()}" for a in self.actions]
        lines += [f"noted: {n}" for n in self.notes]
        lines += [f"refused: {p}" for p in self.problems]
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": list(self.problems), "notes": list(self.notes),
                "actions": [{"kind": a.kind.value, "name": a.name, "where": a.where,
                             "from": a.src, "why": a.why, "restart": a.restart,
                             "to_pool": a.to_pool}
                            for a in self.actions],
                "vms": [f.to_dict() for f in self.findings]}


def plan_fleet(fleet: Fleet, farm: FarmState, options: Options | None = None) -> FleetPlan:
    """What apply would do to make the farm match `fleet`, and what it reports."""
    return _Planner(fleet, farm, options or Options()).run()


def _constraint(vm: FleetVm) -> tuple[int, int, float, str]:
    """Most constrained first: a member named, then a pool, then anywhere; groups first."""
    return (0 if vm.member else 1 if vm.host_ref is not None else 2, 0 if vm.group else 1,
            -vm.memory_gib, vm.name)


class _Planner:
    def __init__(self, fleet: Fleet, farm: FarmState, options: Options) -> None:
        self.fleet, self.farm, self.opts = fleet, farm, options
        self.room = Room(farm, {n: v.group for n, v in fleet.vms.items()})
        self.plan = FleetPlan()
        self.ours: dict[str, list[Seen]] = {}
        self.others: dict[str, list[Seen]] = {}
        for vm in farm.seen:
            (self.ours if vm.ours else self.others).setdefault(vm.name, []).append(vm)
        uuids: dict[str, set[int]] = {}
        for vm in farm.seen:
            uuids.setdefault(vm.uuid, set()).add(vm.pool)
        self.moving = {u for u, pools in uuids.items() if len(pools) > 1}  # XAPI moves them
        self._creates: list[FleetVm] = []
        self._starts: list[tuple[FleetVm, Seen]] = []
        self._said: dict[str, list[str]] = {}  # VM name -> what was said about it

    def run(self) -> FleetPlan:
        for name in sorted(set(self.ours) - set(self.fleet.vms)):
            self._removed(name)
        for vm in sorted(self.fleet.vms.values(), key=_constraint):
            self._declared(vm)
        for vm, seen in self._starts:  # what exists first: its member is its own
            self._start(vm, seen)
        for vm in self._creates:
            self._create(vm)
        order = list(Kind)
        self.plan.actions.sort(key=lambda a: order.index(a.kind))
        self.plan.findings.sort(key=lambda f: f.name)
        return self.plan

    # -- reporting ---------------------------------------------------------------------
    def _act(self, action: Action) -> None:
        self.plan.actions.append(action)
        self._said.setdefault(action.name, []).append(action.line().split(None, 1)[0]
                                                      + f": {action.why or action.where}")

    def _note(self, name: str, what: str) -> None:
        self.plan.notes.append(f"{name}: {what}")
        self._said.setdefault(name, []).append(what)

    def _problem(self, name: str, what: str) -> None:
        self.plan.problems.append(f"{name}: {what}")
        self._said.setdefault(name, []).append(what)

    def _find(self, name: str, declared: str, seen: Seen | None, state: Drift,
              why: str = "") -> None:
        self.plan.findings.append(Finding(
            name, declared, self.farm.where(seen) if seen else "", seen.power if seen else "",
            state, why, seen.uuid if seen else ""))

    # -- VMs whose file was removed ----------------------------------------------------------
    def _removed(self, name: str) -> None:
        for seen in self.ours[name]:
            if seen.uuid in self.moving:
                self._find(name, "", seen, Drift.BUILDING, _MOVING)
                break
            if seen.building and self._claimed(name):
                self._find(name, "", seen, Drift.BUILDING, self._claim_note(name))
                continue
            if self.opts.prune:
                self._act(Action(Kind.DESTROY, name, seen.pool, seen.member,
                                 self.farm.where(seen), seen.uuid, why="its file was removed"))
                if seen.running:
                    self.room.give(seen.member, Need(seen.vcpus, seen.memory_gib))
            else:
                self._note(name, "its file was removed: kept (apply --prune destroys it)")
            self._find(name, "", seen, Drift.KEPT,
                       "its file was removed" + ("" if self.opts.prune else
                                                 "; apply --prune destroys it"))

    # -- declared VMs --------------------------------------------------------------------------
    def _claimed(self, name: str) -> bool:
        entry = self.farm.entries.get(name)
        return entry is not None and entry.claimed(self.farm.now)

    def _claim_note(self, name: str) -> str:
        entry = self.farm.entries[name]
        return f"being {entry.state.replace('ing', 'ed')} by {entry.holder}"

    def _declared(self, vm: FleetVm) -> None:
        said = len(self._said.get(vm.name, []))
        moving = next((s for s in self.ours.get(vm.name, []) if s.uuid in self.moving), None)
        if moving is not None:
            self._find(vm.name, vm.declared, moving, Drift.BUILDING, _MOVING)
            return
        found = self._copies(vm)
        seen = found[0] if found else None
        if seen is not None and seen.building:
            if self._claimed(vm.name):
                self._find(vm.name, vm.declared, seen, Drift.BUILDING, self._claim_note(vm.name))
                return
            self._act(Action(Kind.DESTROY, vm.name, seen.pool, seen.member,
                             self.farm.where(seen), seen.uuid,
                             why="left half built by a build that stopped", declared=vm))
            if seen.running:
                self.room.give(seen.member, Need(seen.vcpus, seen.memory_gib))
            seen = None
        if seen is None:
            self._absent(vm)
        else:
            self._present(vm, seen, said)

    def _copies(self, vm: FleetVm) -> list[Seen]:
        """The VMs tagged as `vm`'s name, the one to keep first (the one its record names, else a
        running one); the other running copies are stopped: a fleet VM runs once."""
        name = vm.name
        entry = self.farm.entries.get(name)
        recorded = entry.vm_uuid if entry is not None else ""
        found = sorted(self.ours.get(name, []),
                       key=lambda s: (s.uuid != recorded, s.building, not s.running, s.uuid))
        if len(found) < 2:
            return found
        self._note(name, f"exists {len(found)} times ({', '.join(s.uuid for s in found)}): "
                         f"dynvm keeps {found[0].uuid}; the other copies are never destroyed "
                         f"(remove them by hand)")
        for copy in found[1:]:
            if copy.running and not copy.building:
                self._act(Action(Kind.STOP, name, copy.pool, copy.member,
                                 self.farm.where(copy), copy.uuid,
                                 why=f"a second copy of it ({found[0].uuid} is kept)"))
                alone = copy.member != found[0].member  # its group's place is free there
                self.room.give(copy.member, Need(copy.vcpus, copy.memory_gib),
                               vm.group if alone else None)
        return found

    def _absent(self, vm: FleetVm) -> None:
        entry = self.farm.entries.get(vm.name)
        if self._claimed(vm.name):
            self._find(vm.name, vm.declared, None, Drift.BUILDING, self._claim_note(vm.name))
            return
        others = self.others.get(vm.name, [])
        if others:
            where = ", ".join(f"{self.farm.where(o)} ({o.uuid})" for o in others)
            self._note(vm.name, f"a VM of that name dynvm did not make for the fleet runs on "
                                f"{where}: reported, never touched; not created while it exists")
            self._find(vm.name, vm.declared, None, Drift.BLOCKED,
                       f"a VM of that name not made for the fleet exists ({where})")
            return
        if self.farm.down:
            down = ", ".join(f"xenhost{r}" for r in self.farm.down)
            self._note(vm.name, f"not created: {down} does not answer, and it may run there")
            self._find(vm.name, vm.declared, None, Drift.BLOCKED, f"{down} does not answer")
            return
        self._creates.append(vm)
        missing = entry is not None
        self._find(vm.name, vm.declared, None, Drift.MISSING if missing else Drift.ABSENT,
                   "built for the fleet once, now gone" if missing else "not built yet")

    def _present(self, vm: FleetVm, seen: Seen, said: int) -> None:
        """`said`: how much was said about it before (its finding's why is the rest)."""
        if vm.host_ref is not None and seen.pool != vm.host_ref:
            moved = self._move(vm, seen)
            if moved is None:
                self._settle_finding(vm, seen, said)
                return
            seen = moved
        if seen.os and seen.os != vm.os:
            self._note(vm.name, f"built as {seen.os}, the file says {vm.os}: a fleet VM is "
                                f"never rebuilt (remove its file, apply --prune, add it again)")
        home = self._home(vm, seen)
        if home is not None and seen.running and seen.member != home.uuid:
            self._migrate(vm, seen, home)
        self._resize(vm, seen, home.uuid if home is not None and seen.running else seen.member)
        if not seen.running:
            if vm.autostart:
                self._starts.append((vm, seen))
            elif len(self._said.get(vm.name, [])) == said:
                self._find(vm.name, vm.declared, seen, Drift.STOPPED, "halted; autostart=false")
                return
        self._settle_finding(vm, seen, said)

    def _settle_finding(self, vm: FleetVm, seen: Seen, said: int) -> None:
        """OK, or drifted with what was said about it (starts are said later: halted)."""
        what = self._said.get(vm.name, [])[said:]
        if not seen.running and vm.autostart:
            what = [*what, "halted"]
        self._find(vm.name, vm.declared, seen, Drift.DRIFTED if what else Drift.OK,
                   "; ".join(what))

    def _home(self, vm: FleetVm, seen: Seen) -> Member | None:
        """The member the file pins it to (host=), None when it names none (or no such one)."""
        if vm.member is None:
            return None
        members = [m for m in self.farm.members if m.pool == seen.pool]
        home = next((m for m in members if m.name == vm.member), None)
        if home is None:
            self._problem(vm.name, f"xenhost{seen.pool} has no member host named {vm.member} "
                                   f"(members: {', '.join(m.name for m in members)})")
        return home

    def _migrate(self, vm: FleetVm, seen: Seen, home: Member) -> None:
        src = self.farm.where(seen)
        if seen.homes is not None and home.uuid not in seen.homes:
            self._note(vm.name, f"runs on {src}, declared on {home.where}: it cannot move there "
                                f"live (its disks are on storage {home.name} does not reach)")
            return
        need = Need(seen.vcpus, seen.memory_gib)
        if not home.usable:
            self._problem(vm.name, f"cannot go back to {home.where}: the host is out of "
                                   f"placement (disabled, drained or in maintenance)")
            return
        other = self.room.holder(home.uuid, vm.group, vm.name)
        if other is not None:
            self._problem(vm.name, f"cannot go back to {home.where}: {other} of its group "
                                   f"{vm.group} runs there")
            return
        if not self.room.fits(home.uuid, need):
            self._problem(vm.name, f"cannot go back to {home.where}: no room for "
                                   f"{seen.vcpus} vCPUs, {seen.memory_gib:g} GiB there")
            return
        self.room.give(seen.member, need, vm.group)
        self.room.take(home.uuid, need, vm.group, vm.name)
        self._act(Action(Kind.MIGRATE, vm.name, seen.pool, home.uuid, home.where, seen.uuid,
                         src=src, why="back to its declared host", declared=vm))

    def _move(self, vm: FleetVm, seen: Seen) -> Seen | None:
        """To the pool of its folder, with its disks: `seen` as it will be there (None when it
        cannot move now: said why)."""
        src, to = self.farm.where(seen), vm.host_ref
        assert to is not None
        if seen.power not in ("Running", "Halted"):
            self._note(vm.name, f"{seen.power.lower()} on {src}, declared in {vm.folder}/: "
                                f"moved to xenhost{to} once it runs or is halted")
            return None
        if to in self.farm.down:
            self._note(vm.name, f"runs on {src}, declared in {vm.folder}/: not moved while "
                                f"xenhost{to} does not answer")
            return None
        disk = seen.disk_gib if seen.disk_gib is not None else float(vm.disk_gib)
        need = Need(seen.vcpus, seen.memory_gib, disk)
        if self._home(vm, dataclasses.replace(seen, pool=to)) is None and vm.member is not None:
            return None  # no such member there: said
        target, why = self.room.choose(self._candidates(vm, to), need, vm.group, vm.name)
        if target is None:
            self._problem(vm.name, f"cannot move from {src} to xenhost{to}: {why}")
            return None
        if seen.running:
            self.room.give(seen.member, Need(seen.vcpus, seen.memory_gib), vm.group)
            self.room.take(target.uuid, need, vm.group, vm.name)
        else:  # its disk now; its memory when it is started
            self.room.grow(target.uuid, Need(0, 0.0, disk))
        self._act(Action(Kind.MIGRATE, vm.name, seen.pool, target.uuid, target.where, seen.uuid,
                         src=src, why=f"its file is in {vm.folder}/", declared=vm, to_pool=to))
        return dataclasses.replace(seen, pool=to, member=target.uuid if seen.running else "",
                                   homes=frozenset({target.uuid}))

    def _resize(self, vm: FleetVm, seen: Seen, member: str) -> None:
        grow = seen.disk_gib is not None and vm.disk_gib > seen.disk_gib + 0.01
        if seen.disk_gib is not None and vm.disk_gib < seen.disk_gib - 0.01:
            self._note(vm.name, f"its disk is {seen.disk_gib:g} GiB, the file says "
                                f"{vm.disk_gib} GiB: a disk is never shrunk")
        sized = seen.vcpus == vm.vcpus and abs(seen.memory_gib - vm.memory_gib) < 0.01
        if sized and not grow:
            return
        changes = ", ".join(part for part in (
            "" if seen.vcpus == vm.vcpus else f"{vm.vcpus} vCPUs (now {seen.vcpus})",
            "" if abs(seen.memory_gib - vm.memory_gib) < 0.01
            else f"{vm.memory_gib} GiB (now {seen.memory_gib:g})",
            f"{vm.disk_gib} GiB disk (now {seen.disk_gib:g})" if grow else "") if part)
        if seen.running and not self.opts.restart:
            self._note(vm.name, f"{changes}: needs a restart (apply --exec --restart does it)")
            return
        delta = Need(max(vm.vcpus - seen.vcpus, 0), max(vm.memory_gib - seen.memory_gib, 0.0),
                     vm.disk_gib - (seen.disk_gib or 0.0) if grow else 0.0)
        if seen.running:
            if not self.room.fits(member, delta):
                self._problem(vm.name, f"{changes}: no room for it on its host")
                return
            self.room.grow(member, delta)
        member_m = self.farm.member(member)
        self._act(Action(Kind.RESIZE, vm.name, seen.pool, member,
                         member_m.where if member_m else self.farm.where(seen), seen.uuid,
                         why=changes + (", restarted" if seen.running else ""),
                         restart=seen.running, declared=vm))

    # -- placing what is built or started ---------------------------------------------------
    def _candidates(self, vm: FleetVm, pool: int | None) -> list[Member]:
        out = []
        for m in self.farm.members:
            if not m.usable or (pool is not None and m.pool != pool):
                continue
            if vm.member is not None and m.name != vm.member:
                continue
            if pool is None and (vm.labels and not vm.labels & m.labels
                                 or not vm.labels and m.labels):
                continue  # any/: labelled hosts only for VMs that ask for their labels
            out.append(m)
        return out

    def _create(self, vm: FleetVm) -> None:
        cands = [m for m in self._candidates(vm, vm.host_ref) if vm.os in m.serves]
        if vm.member is not None and not any(m.name == vm.member for m in self.farm.members
                                             if m.pool == vm.host_ref):
            members = [m.name for m in self.farm.members if m.pool == vm.host_ref]
            self._problem(vm.name, f"xenhost{vm.host_ref} has no member host named "
                                   f"{vm.member} (members: {', '.join(members)})")
            return
        need = need_of(vm, clone=True)
        target, why = self.room.choose(cands, need, vm.group, vm.name)
        if target is None:
            self._problem(vm.name, f"cannot be created on {vm.declared}: {why}")
            return
        self.room.take(target.uuid, need, vm.group, vm.name)
        entry = self.farm.entries.get(vm.name)
        gone = entry.vm_uuid if entry is not None and entry.state == FleetState.PRESENT else ""
        self._act(Action(Kind.CREATE, vm.name, target.pool, target.uuid, target.where,
                         vm_uuid=gone,  # the VM its record names, found missing
                         why="built once, now missing" if gone else "declared, not built",
                         declared=vm))

    def _start(self, vm: FleetVm, seen: Seen) -> None:
        cands = [m for m in self._candidates(vm, seen.pool)
                 if seen.homes is None or m.uuid in seen.homes]
        target, why = self.room.choose(cands, need_of(vm, clone=False), vm.group, vm.name)
        if target is None:
            self._problem(vm.name, f"halted, and cannot be started: {why}")
            return
        self.room.take(target.uuid, need_of(vm, clone=False), vm.group, vm.name)
        self._act(Action(Kind.START, vm.name, seen.pool, target.uuid, target.where, seen.uuid,
                         why="halted, autostart=true", declared=vm))
