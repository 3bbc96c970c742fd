"""The fleet planner, a pure function: what apply would do, what it reports, what it refuses."""

from __future__ import annotations

from dynvm.config import Fleet, FleetVm
from dynvm.core.capacity import Free
from dynvm.core.fleet.farm import FarmState, Member, Seen
from dynvm.core.fleet.plan import Drift, Kind, Options, plan_fleet
from dynvm.core.records import FleetEntry


def member(pool: int, name: str, cpus: int = 32, mem: int = 64, disk: float = 500.0,
           **kw: object) -> Member:
    return Member(pool, f"u-{name}", name, Free(cpus, mem, disk, True),
                  serves=frozenset({"centos"}), **kw)  # type: ignore[arg-type]


def vm(name: str, pool: int | None = 1, **kw: object) -> FleetVm:
    base: dict[str, object] = {"os": "centos", "vcpus": 2, "memory_gib": 4, "disk_gib": 20}
    return FleetVm(name=name, host_ref=pool, **{**base, **kw})  # type: ignore[arg-type]


def seen(name: str, at: str, pool: int = 1, power: str = "Running", **kw: object) -> Seen:
    base: dict[str, object] = {"vcpus": 2, "memory_gib": 4.0, "os": "centos"}
    return Seen(name=name, uuid=f"vm-{name}-{at}", pool=pool,
                member=f"u-{at}" if power == "Running" else "", power=power,
                **{**base, **kw})  # type: ignore[arg-type]


def fleet(*vms: FleetVm) -> Fleet:
    return Fleet(path="/f", vms={v.name: v for v in vms})


def farm(*seen_vms: Seen, members: list[Member] | None = None, **kw: object) -> FarmState:
    ms = members if members is not None else [member(1, "a"), member(1, "b"), member(2, "c")]
    return FarmState(members=ms, seen=list(seen_vms), now=100.0, **kw)  # type: ignore[arg-type]


def kinds(plan) -> list[tuple[str, str, str]]:
    return [(a.kind.value, a.name, a.where) for a in plan.actions]


def test_an_empty_farm_gets_every_vm_spread_and_groups_apart() -> None:
    plan = plan_fleet(fleet(vm("db1", group="db"), vm("db2", group="db"), vm("web", pool=2),
                            vm("pin", member="b"), vm("cache", pool=None)), farm())
    assert plan.ok, plan.problems
    where = {a.name: a.where for a in plan.actions}
    assert all(a.kind == Kind.CREATE for a in plan.actions)
    assert where["pin"] == "xenhost1/b" and where["web"] == "xenhost2/c"
    assert {where["db1"], where["db2"]} == {"xenhost1/a", "xenhost1/b"}
    assert {f.name: f.state for f in plan.findings} == dict.fromkeys(
        ["cache", "db1", "db2", "pin", "web"], Drift.ABSENT)
    assert plan.describe()[0].startswith("fleet plan: 0 to destroy, 0 to stop, 0 to migrate")
    assert "5 to create" in plan.describe()[0]


def test_a_group_that_cannot_be_placed_apart_is_refused_whole() -> None:
    one = [member(1, "a"), member(2, "c")]
    plan = plan_fleet(fleet(vm("db1", group="db"), vm("db2", group="db"), vm("other")),
                      farm(members=one))
    assert not plan.ok
    assert plan.problems == ["db2: cannot be created on xenhost1: group db: every member it "
                             "may run on already runs a VM of the group (db1 on a)"]


def test_no_room_is_refused_with_what_is_missing() -> None:
    plan = plan_fleet(fleet(vm("big", vcpus=4, memory_gib=100)), farm())
    assert not plan.ok
    assert "big: cannot be created on xenhost1: no room: it needs 4 vCPUs, 100 GiB, 20 GiB " \
           "disk" in plan.problems[0]
    # The base copy needs room too, as capacity counts: 30 GiB free does not take 20.
    tight = plan_fleet(fleet(vm("x")), farm(members=[member(1, "a", disk=30.0)]))
    assert not tight.ok


def test_a_size_change_needs_a_restart_unless_the_vm_is_halted() -> None:
    f = fleet(vm("db1", vcpus=4, memory_gib=8))
    running = plan_fleet(f, farm(seen("db1", "a")))
    assert running.ok and running.actions == []
    assert running.notes == ["db1: 4 vCPUs (now 2), 8 GiB (now 4): needs a restart "
                             "(apply --exec --restart does it)"]
    assert running.findings[0].state == Drift.DRIFTED
    restart = plan_fleet(f, farm(seen("db1", "a")), Options(restart=True))
    assert kinds(restart) == [("resize", "db1", "xenhost1/a")]
    assert restart.actions[0].restart
    halted = plan_fleet(f, farm(seen("db1", "a", power="Halted")))
    assert kinds(halted) == [("resize", "db1", "xenhost1"), ("start", "db1", "xenhost1/a")]
    assert not halted.actions[0].restart
    full = plan_fleet(f, farm(seen("db1", "a"), members=[member(1, "a", cpus=1)]),
                      Options(restart=True))
    assert not full.ok and "no room for it on its host" in full.problems[0]


def test_disks_grow_but_never_shrink() -> None:
    grow = plan_fleet(fleet(vm("db1", disk_gib=40)),
                      farm(seen("db1", "a", power="Halted", disk_gib=20.0)))
    assert kinds(grow)[0] == ("resize", "db1", "xenhost1")
    assert grow.actions[0].why == "40 GiB disk (now 20)"
    shrink = plan_fleet(fleet(vm("db1", disk_gib=10)), farm(seen("db1", "a", disk_gib=20.0)))
    assert shrink.actions == [] and "a disk is never shrunk" in shrink.notes[0]


def test_a_pinned_vm_goes_back_to_its_host_when_it_can_move_live() -> None:
    f = fleet(vm("db1", member="a", group="db"), vm("db2", member="b", group="db"))
    plan = plan_fleet(f, farm(seen("db1", "b"), seen("db2", "b")))
    assert kinds(plan) == [("migrate", "db1", "xenhost1/a")]
    assert plan.actions[0].src == "xenhost1/b"
    assert {f.name: f.state for f in plan.findings} == {"db1": Drift.DRIFTED, "db2": Drift.OK}
    local = plan_fleet(f, farm(seen("db1", "b", homes=frozenset({"u-b"})), seen("db2", "b")))
    assert local.actions == [] and "it cannot move there live" in local.notes[0]
    blocked = plan_fleet(fleet(vm("db1", member="a", group="db"), vm("db3", group="db")),
                         farm(seen("db1", "b"), seen("db3", "a")))
    assert "cannot go back to xenhost1/a: db3 of its group db runs there" in blocked.problems[0]


def test_a_halted_vm_starts_where_its_disks_are_and_apart_from_its_group() -> None:
    f = fleet(vm("db1", group="db"), vm("db2", group="db"))
    plan = plan_fleet(f, farm(seen("db1", "a"), seen("db2", "x", power="Halted",
                                                     homes=frozenset({"u-a", "u-b"}))))
    assert kinds(plan) == [("start", "db2", "xenhost1/b")]
    stuck = plan_fleet(f, farm(seen("db1", "a"), seen("db2", "x", power="Halted",
                                                      homes=frozenset({"u-a"}))))
    assert not stuck.ok and "halted, and cannot be started: group db" in stuck.problems[0]
    off = plan_fleet(fleet(vm("db1", autostart=False)), farm(seen("db1", "x", power="Halted")))
    assert off.actions == [] and off.findings[0].state == Drift.STOPPED


def test_a_file_moved_to_another_pool_moves_its_vm_there_with_its_disks() -> None:
    plan = plan_fleet(fleet(vm("db1", pool=2)), farm(seen("db1", "a", disk_gib=30.0)))
    assert plan.ok, plan.problems
    assert [(a.kind, a.pool, a.to_pool, a.src, a.where) for a in plan.actions] == [
        (Kind.MIGRATE, 1, 2, "xenhost1/a", "xenhost2/c")]
    assert plan.actions[0].line() == ("migrate db1 from xenhost1 to xenhost2 (storage motion): "
                                      "xenhost1/a -> xenhost2/c (its file is in xenhost2/)")
    assert plan.findings[0].state == Drift.DRIFTED
    # Halted there: moved, then started where its disk went (autostart=true).
    halted = plan_fleet(fleet(vm("db1", pool=2)), farm(seen("db1", "a", power="Halted")))
    assert kinds(halted) == [("migrate", "db1", "xenhost2/c"), ("start", "db1", "xenhost2/c")]
    assert halted.actions[1].pool == 2
    # No room there for it (memory, or its disk on the member's SR): refused with the reason.
    full = [member(1, "a"), member(2, "c", mem=2)]
    refused = plan_fleet(fleet(vm("db1", pool=2)), farm(seen("db1", "a"), members=full))
    assert not refused.ok and refused.actions == []
    assert refused.problems[0].startswith("db1: cannot move from xenhost1/a to xenhost2: no room")
    small = [member(1, "a"), member(2, "c", disk=10.0)]
    assert not plan_fleet(fleet(vm("db1", pool=2)),
                          farm(seen("db1", "a", disk_gib=30.0), members=small)).ok
    # Its group's other VM holds the only member there: refused, nothing half done.
    grouped = plan_fleet(fleet(vm("db1", pool=2, group="db"), vm("db2", pool=2, group="db")),
                         farm(seen("db1", "a"), seen("db2", "c", pool=2)))
    assert not grouped.ok and "group db" in grouped.problems[0]
    # Pinned to a member the pool does not have: said, not moved.
    pinned = plan_fleet(fleet(vm("db1", pool=2, member="zz")), farm(seen("db1", "a")))
    assert "xenhost2 has no member host named zz" in pinned.problems[0]
    # The pool it goes to does not answer: reported, not moved.
    down = plan_fleet(fleet(vm("db1", pool=2)), farm(seen("db1", "a"), down=[2]))
    assert down.ok and down.actions == [] and "not moved while xenhost2 does not answer" \
        in down.notes[0]
    # Seen in both pools under one uuid (XAPI moving it): left alone, nothing stopped twice.
    moving = plan_fleet(fleet(vm("db1", pool=2)), farm(
        seen("db1", "a"), Seen(name="db1", uuid="vm-db1-a", pool=2, member="", power="Halted",
                               vcpus=2, memory_gib=4.0, os="centos")))
    assert moving.ok and moving.actions == [] and moving.notes == []
    assert moving.findings[0].state == Drift.BUILDING
    assert moving.findings[0].why == "being moved between pools by XAPI (seen in both)"


def test_a_removed_file_keeps_its_vm_unless_pruned() -> None:
    kept = plan_fleet(fleet(), farm(seen("old", "a")))
    assert kept.actions == []
    assert kept.notes == ["old: its file was removed: kept (apply --prune destroys it)"]
    assert kept.findings[0].state == Drift.KEPT and kept.findings[0].declared == ""
    pruned = plan_fleet(fleet(vm("new", member="a")), farm(seen("old", "a")), Options(prune=True))
    assert kinds(pruned) == [("destroy", "old", "xenhost1/a"), ("create", "new", "xenhost1/a")]


def test_a_same_named_vm_not_made_for_the_fleet_is_reported_and_blocks_the_build() -> None:
    plan = plan_fleet(fleet(vm("db1")), farm(seen("db1", "a", ours=False)))
    assert plan.ok and plan.actions == []
    assert "a VM of that name dynvm did not make for the fleet runs on xenhost1/a" \
        in plan.notes[0]
    assert plan.findings[0].state == Drift.BLOCKED
    # With --prune too: it is not the fleet's, so it is never destroyed.
    assert plan_fleet(fleet(), farm(seen("db1", "a", ours=False)), Options(prune=True)).actions \
        == []


def test_nothing_is_built_while_a_pool_does_not_answer() -> None:
    plan = plan_fleet(fleet(vm("db1")), farm(down=[2]))
    assert plan.actions == []
    assert plan.notes == ["db1: not created: xenhost2 does not answer, and it may run there"]


def test_half_built_vms_are_left_to_a_live_builder_and_replaced_after_a_dead_one() -> None:
    half = seen("db1", "a", building=True)
    claim = {"db1": FleetEntry(name="db1", holder="inst-1", until=200.0)}
    live = plan_fleet(fleet(vm("db1")), farm(half, entries=claim))
    assert live.actions == [] and live.findings[0].state == Drift.BUILDING
    assert live.findings[0].why == "being created by inst-1"
    lapsed = {"db1": FleetEntry(name="db1", holder="inst-1", until=50.0)}
    dead = plan_fleet(fleet(vm("db1")), farm(half, entries=lapsed))
    assert kinds(dead) == [("destroy", "db1", "xenhost1/a"), ("create", "db1", "xenhost1/a")]


def test_a_missing_vm_is_built_again_by_apply_and_said_missing() -> None:
    entries = {"db1": FleetEntry(name="db1", state="present", vm_uuid="gone")}
    plan = plan_fleet(fleet(vm("db1")), farm(entries=entries))
    assert kinds(plan) == [("create", "db1", "xenhost1/a")]
    assert plan.actions[0].why == "built once, now missing"
    assert plan.findings[0].state == Drift.MISSING


def test_any_folder_uses_unlabelled_hosts_or_the_labels_it_asks_for() -> None:
    ms = [member(1, "a", labels=frozenset({"perf"})), member(2, "c")]
    plain = plan_fleet(fleet(vm("x", pool=None)), farm(members=ms))
    perf = plan_fleet(fleet(vm("y", pool=None, labels=frozenset({"perf"}))), farm(members=ms))
    assert kinds(plain) == [("create", "x", "xenhost2/c")]
    assert kinds(perf) == [("create", "y", "xenhost1/a")]
    drained = plan_fleet(fleet(vm("z", pool=2)), farm(members=[member(2, "c", usable=False)]))
    assert not drained.ok and "no usable member host" in drained.problems[0]


def test_a_second_running_copy_is_stopped_and_the_recorded_one_kept() -> None:
    entries = {"db1": FleetEntry(name="db1", state="present", vm_uuid="vm-db1-b")}
    copy = seen("db1", "a")  # a copy made by hand carries the fleet's tags
    plan = plan_fleet(fleet(vm("db1", group="db"), vm("db2", group="db")),
                      farm(copy, seen("db1", "b"), seen("db1", "c", pool=1, power="Halted"),
                           entries=entries))
    assert plan.ok, plan.problems
    # The copy's place is free for db2, apart from db1 (kept on b).
    assert [(a.kind, a.name, a.vm_uuid, a.where) for a in plan.actions] == [
        (Kind.STOP, "db1", "vm-db1-a", "xenhost1/a"), (Kind.CREATE, "db2", "", "xenhost1/a")]
    assert "exists 3 times" in plan.notes[0] and "dynvm keeps vm-db1-b" in plan.notes[0]
    db1 = next(f for f in plan.findings if f.name == "db1")
    assert (db1.state, db1.vm_uuid) == (Drift.DRIFTED, "vm-db1-b")
    assert "stop: a second copy of it (vm-db1-b is kept)" in db1.why
    # Without a record, a running copy is kept rather than a halted one; nothing is started.
    norecord = plan_fleet(fleet(vm("db1")),
                          farm(seen("db1", "b"), seen("db1", "a", power="Halted")))
    assert norecord.actions == [] and "dynvm keeps vm-db1-b" in norecord.notes[0]
