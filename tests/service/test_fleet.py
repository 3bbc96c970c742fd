"""The fleet as code, through the simulator: plan, apply, edits, moves, removals, a host
reboot, a group that cannot be placed apart, and two instances running the leader's duty.

One farm for the module: pool1 ([xenhost1]) keeps guests on shared storage, so
they can live-migrate; pool2 ([xenhost2]) keeps them on each host's own disk.
The scenario's steps build on each other, so they run in one test on one
dynvm; the other tests use stores of their own on the same farm.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from click.testing import CliRunner

from dynvm.cli import main
from dynvm.core.errors import FleetRefused
from dynvm.core.fleet.plan import Drift, Kind
from dynvm.core.maintenance.runner import Options as RebootOptions
from dynvm.core.ports import TAG_DEPLOYMENT, TAG_FLEET, HostUnreachable
from dynvm.core.services import Applied, Dynvm, FleetPlan
from dynvm.runtime.bootstrap import build_service
from dynvm.sim import Farm
from dynvm.sim.farmgen import generate_pool
from testbed.inis import Ini
from testbed.serving import wait_until
from tests.service.conftest import FAST, SPEED, write_ini
from tests.service.test_maintenance_exec import Watcher
from tests.support.clock import SteppedClock

SHARED = "Shared storage"
WRITES = ("VM.clone", "VM.provision", "VM.start", "VM.start_on", "VM.destroy",
          "VM.hard_shutdown", "VM.clean_shutdown", "VM.pool_migrate", "VM.migrate_send",
          "host.migrate_receive", "VM.set_VCPUs_max",
          "VM.set_memory_limits", "VDI.resize", "VM.set_other_config")


@pytest.fixture(scope="module")
def farm() -> Iterator[Farm]:
    f = Farm([("pool1", generate_pool("pool1", 2, 0, pool_index=0, guest_storage="shared")),
              ("pool2", generate_pool("pool2", 2, 0, pool_index=1))], speed=SPEED).start()
    try:
        yield f
    finally:
        f.stop()


class FleetDir:
    """The fleet directory of a test: one `<name>.ini` per VM."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def put(self, rel: str, **keys: object) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("[vm]\n" + "".join(f"{k}={v}\n" for k, v in keys.items()))

    def move(self, rel: str, to: str) -> None:
        (self.root / to).parent.mkdir(parents=True, exist_ok=True)
        (self.root / rel).rename(self.root / to)

    def remove(self, rel: str) -> None:
        (self.root / rel).unlink()


def fleet_ini(tmp: Path, farm: Farm) -> Path:
    hosts = Ini.of_farm(farm, storage_name=SHARED).set("xenhost2", {
        "host.storage.name": "Local storage"})
    return write_ini(tmp, farm, hosts=hosts, extra=f"[fleet]\npath={tmp / 'fleet'}\n")


@pytest.fixture
def dynvm_with_fleet(tmp_path: Path, farm: Farm) -> Iterator[tuple[Dynvm, FleetDir]]:
    svc = build_service(str(fleet_ini(tmp_path, farm)), timings=FAST)
    svc.background.ensure_started()  # the leader's duties run, as in a serving worker
    fleet = FleetDir(tmp_path / "fleet")
    try:
        yield svc, fleet
    finally:
        _destroy_fleet(svc, farm)
        svc.close()


def _destroy_fleet(svc: Dynvm, farm: Farm) -> None:
    """What a test built for its fleet is gone afterwards, disks included (the farm is
    shared): through dynvm's own teardown of a VM."""
    own = svc.ctx.deployment()
    for hc in svc.config().hosts.values():
        pool = svc.ctx.pool(hc)
        for vm in list(svc.ctx.view(hc).vms.values()):
            if vm.other_config.get(TAG_DEPLOYMENT) == own:
                pool.destroy(vm.uuid)


def _session(farm: Farm, pool: int) -> XenAPI.Session:
    s = XenAPI.Session(farm.pools[pool].master.url)
    s.xenapi.login_with_password("root", "xenroot", "1.0", "fleet-tests")
    return s


def plan(svc: Dynvm, *, prune: bool = False, restart: bool = False) -> FleetPlan:
    return svc.fleet.plan(prune=prune, restart=restart)


def do_apply(svc: Dynvm, *, prune: bool = False, restart: bool = False) -> Applied:
    return svc.fleet.apply(prune=prune, restart=restart)


def fleet_vms(farm: Farm) -> dict[str, list[dict[str, Any]]]:
    """The farm's fleet VMs by declared name, with where they run (host name_label)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for i in range(len(farm.pools)):
        s = _session(farm, i)
        try:
            hosts = {ref: h["name_label"] for ref, h in s.xenapi.host.get_all_records().items()}
            for rec in s.xenapi.VM.get_all_records().values():
                name = rec["other_config"].get(TAG_FLEET)
                if name and not rec["is_a_template"]:
                    out.setdefault(name, []).append({**rec, "host": hosts.get(rec["resident_on"],
                                                                             "")})
        finally:
            s.xenapi.session.logout()
    return out


def _disk_srs(farm: Farm, pool: int, vm_uuid: str) -> list[str]:
    """The names of the SRs the VM's disks are on, in that pool."""
    s = _session(farm, pool)
    try:
        vm = s.xenapi.VM.get_by_uuid(vm_uuid)
        return [s.xenapi.SR.get_name_label(s.xenapi.VDI.get_SR(s.xenapi.VBD.get_VDI(b)))
                for b in s.xenapi.VM.get_VBDs(vm) if s.xenapi.VBD.get_type(b) == "Disk"]
    finally:
        s.xenapi.session.logout()


def writes(farm: Farm) -> int:
    """XenAPI calls that change something, over the whole farm (Async. forms included)."""
    return sum(n for methods in farm.call_counts().values() for m, n in methods.items()
               if m.removeprefix("Async.") in WRITES)


def calls(farm: Farm, method: str) -> int:
    return sum(n for methods in farm.call_counts().values() for m, n in methods.items()
               if m.removeprefix("Async.") == method)


def test_the_fleet_planned_applied_edited_moved_removed_and_kept_running(
        dynvm_with_fleet: tuple[Dynvm, FleetDir], farm: Farm) -> None:
    svc, fleet = dynvm_with_fleet
    small = {"os": "centos", "vcpus": 2, "memory": 2, "disk": 40}
    fleet.put("xenhost1/db1.ini", host="xenhost1-1", group="db", owner="team-db", **small)
    fleet.put("xenhost1/db2.ini", group="db", **small)
    fleet.put("xenhost1/web.ini", host="xenhost1-1", **small)
    fleet.put("xenhost2/agent.ini", host="xenhost2-2", **small)
    fleet.put("any/cache.ini", pools="qe-static,nightly", **small)

    # -- plan on an empty farm: everything to create, groups apart, nothing written --------
    farm.reset_call_counts()
    first = plan(svc)
    assert first.ok, first.problems
    assert sorted((a.kind.value, a.name, a.where) for a in first.actions) == [
        ("create", "agent", "xenhost2/xenhost2-2"), ("create", "cache", "xenhost2/xenhost2-1"),
        ("create", "db1", "xenhost1/xenhost1-1"), ("create", "db2", "xenhost1/xenhost1-2"),
        ("create", "web", "xenhost1/xenhost1-1")]
    assert writes(farm) == 0 and fleet_vms(farm) == {}

    # -- apply: built where planned, tagged as the fleet's, recorded -----------------------
    progress: list[dict[str, Any]] = []  # what `apply --exec` shows as it goes
    done = svc.fleet.apply(on_progress=progress.append)
    assert done.failed == [] and len(done.done) == 5
    assert [p["doing"].split()[:2] for p in progress[:-1]] == [
        ["create", a.name] for a in first.actions]
    assert [p["done"] for p in progress] == [0, 1, 2, 3, 4, 5]
    assert progress[-1] == {"step": 5, "total": 5, "doing": "", "done": 5, "failed": 0}
    vms = fleet_vms(farm)
    assert {n: [v["host"] for v in vs] for n, vs in vms.items()} == {
        "agent": ["xenhost2-2"], "cache": ["xenhost2-1"], "db1": ["xenhost1-1"],
        "db2": ["xenhost1-2"], "web": ["xenhost1-1"]}
    assert all(v[0]["power_state"] == "Running" and v[0]["VCPUs_max"] == "2" for v in vms.values())
    assert vms["db1"][0]["other_config"][TAG_DEPLOYMENT] == svc.ctx.deployment()
    assert [e.name for e in svc.ctx.store.fleet.find()] == sorted(vms)
    # pools=: its static-pool document, as the seed writes one, keyed by its address.
    cache_ip = svc.ctx.store.fleet.get("cache").ip
    assert svc.ctx.static_pools is not None and cache_ip
    doc = svc.ctx.static_pools.get(cache_ip)
    assert doc is not None and (doc["poolId"], doc["state"], doc["os"]) == (
        ["qe-static", "nightly"], "available", "centos")
    again = plan(svc)
    assert again.actions == [], again.actions
    assert {f.state for f in again.findings} == {Drift.OK}, again.findings
    # The lease world never sees them: reconciliation passes, nothing is leased or expired.
    passes = svc.background.reconcile_passes
    wait_until(lambda: svc.background.reconcile_passes >= passes + 2, timeout=30,
               what="two reconciliation passes")
    assert svc.ctx.store.leases.find() == []
    assert {n: vs[0]["uuid"] for n, vs in fleet_vms(farm).items()} == \
        {n: vs[0]["uuid"] for n, vs in vms.items()}

    # -- a size change: the plan says it needs a restart; --restart does it ------------------
    fleet.put("xenhost1/db2.ini", group="db", **{**small, "vcpus": 4})
    edited = plan(svc)
    assert edited.actions == []
    assert edited.notes == ["db2: 4 vCPUs (now 2): needs a restart (apply --exec --restart "
                            "does it)"]
    assert do_apply(svc).done == []
    assert fleet_vms(farm)["db2"][0]["VCPUs_max"] == "2"
    restarted = do_apply(svc, restart=True)
    assert restarted.failed == [] and restarted.done == ["resized db2: 4 vCPUs (now 2), restarted"]
    db2 = fleet_vms(farm)["db2"][0]
    assert (db2["VCPUs_max"], db2["power_state"], db2["host"]) == ("4", "Running", "xenhost1-2")

    # -- pinned to the other member of its pool: migrated live, back where declared ----------
    fleet.put("xenhost1/web.ini", host="xenhost1-2", **small)
    moved = plan(svc)
    assert [(a.kind, a.name, a.src, a.where) for a in moved.actions] == [
        (Kind.MIGRATE, "web", "xenhost1/xenhost1-1", "xenhost1/xenhost1-2")]
    web = fleet_vms(farm)["web"][0]["uuid"]
    assert do_apply(svc).failed == []
    assert [(v["uuid"], v["host"]) for v in fleet_vms(farm)["web"]] == [(web, "xenhost1-2")]
    # -- a file moved to another pool's folder: the VM moves there with its disks ------------
    agent = fleet_vms(farm)["agent"][0]
    fleet.move("xenhost2/agent.ini", "xenhost1/agent.ini")
    pinned = plan(svc)  # still host=xenhost2-2: no such member in xenhost1
    assert not pinned.ok and pinned.problems == [
        "agent: xenhost1 has no member host named xenhost2-2 (members: xenhost1-1, xenhost1-2)"]
    farm.reset_call_counts()
    with pytest.raises(FleetRefused):
        do_apply(svc)
    assert writes(farm) == 0
    fleet.put("xenhost1/agent.ini", host="xenhost1-2", **small)
    across = plan(svc)
    assert across.ok and [a.line() for a in across.actions] == [
        "migrate agent from xenhost2 to xenhost1 (storage motion): xenhost2/xenhost2-2 -> "
        "xenhost1/xenhost1-2 (its file is in xenhost1/)"]
    progress.clear()
    moved_over = svc.fleet.apply(on_progress=progress.append)
    assert moved_over.failed == [] and moved_over.done == [
        "migrated agent from xenhost2 to xenhost1: xenhost2/xenhost2-2 -> xenhost1/xenhost1-2"]
    assert progress[0]["doing"] == across.actions[0].line() and progress[-1]["done"] == 1
    there = fleet_vms(farm)["agent"]
    assert [(v["uuid"], v["host"], v["power_state"]) for v in there] == [
        (agent["uuid"], "xenhost1-2", "Running")]  # once, itself, running, in the other pool
    assert there[0]["other_config"] == agent["other_config"]  # still provably dynvm's
    assert _disk_srs(farm, 0, agent["uuid"]) == [SHARED]
    assert svc.ctx.store.fleet.get("agent").host_ref == 1
    settled = plan(svc)
    assert settled.actions == [] and {f.name: (f.state, f.runs) for f in settled.findings}[
        "agent"] == (Drift.OK, "xenhost1/xenhost1-2")
    # ... and back to its pool's local disks.
    fleet.remove("xenhost1/agent.ini")
    fleet.put("xenhost2/agent.ini", host="xenhost2-2", **small)
    back = do_apply(svc)
    assert back.failed == [] and back.done == [
        "migrated agent from xenhost1 to xenhost2: xenhost1/xenhost1-2 -> xenhost2/xenhost2-2"]
    assert [(v["uuid"], v["host"]) for v in fleet_vms(farm)["agent"]] == [
        (agent["uuid"], "xenhost2-2")]
    assert _disk_srs(farm, 1, agent["uuid"]) == ["Local storage"]

    # -- a file removed: kept without --prune, destroyed with it -----------------------------
    fleet.remove("any/cache.ini")
    assert plan(svc).notes == ["cache: its file was removed: kept (apply --prune destroys it)"]
    assert do_apply(svc).done == [] and "cache" in fleet_vms(farm)
    pruned = do_apply(svc, prune=True)
    assert pruned.done == ["destroyed cache on xenhost2/xenhost2-1 (its file was removed)"]
    assert "cache" not in fleet_vms(farm) and svc.ctx.store.fleet.get("cache") is None
    assert svc.ctx.static_pools.get(cache_ip) is None  # its document went with it

    # -- a host rebooted: its fleet VM (local disk: it cannot move) is started again, once ---
    agent = fleet_vms(farm)["agent"][0]
    farm.reset_call_counts()
    s = _session(farm, 1)
    try:
        host = s.xenapi.host.get_by_name_label("xenhost2-2")[0]
        s.xenapi.host.disable(host)
        s.xenapi.host.reboot(host)
    finally:
        s.xenapi.session.logout()
    wait_until(lambda: fleet_vms(farm)["agent"][0]["power_state"] == "Halted", timeout=30,
               what="the agent halted by the reboot")
    wait_until(lambda: fleet_vms(farm)["agent"][0]["power_state"] == "Running", timeout=60,
               what="the leader to start the agent again once its host is back")
    after = fleet_vms(farm)["agent"]
    assert [(v["uuid"], v["host"]) for v in after] == [(agent["uuid"], "xenhost2-2")]
    assert calls(farm, "VM.start_on") + calls(farm, "VM.start") == 1
    entry = svc.ctx.store.fleet.get("agent")
    assert entry is not None and entry.start["attempts"] == 1 and entry.start["error"] == ""
    final = plan(svc)
    assert final.actions == [] and final.notes == []


def test_fleet_vms_count_against_capacity_like_any_vm(tmp_path: Path, farm: Farm) -> None:
    fleet = FleetDir(tmp_path / "fleet")
    svc = build_service(str(fleet_ini(tmp_path, farm)), timings=FAST, background=False)
    try:
        hc = svc.config().hosts[1]
        before = svc.legacy.count([hc], "centos").count
        fleet.put("xenhost1/big.ini", host="xenhost1-2", os="centos", vcpus=2, memory=160,
                  disk=40)
        assert do_apply(svc).failed == []
        big = fleet_vms(farm)["big"][0]["uuid"]
        wait_until(lambda: big in svc.ctx.view(hc).vms, timeout=30,
                   what="the inventory to see the fleet VM")
        after = svc.legacy.count([hc], "centos").count
        assert 0 < after < before, (before, after)
    finally:
        _destroy_fleet(svc, farm)
        svc.close()


def test_a_group_that_cannot_be_placed_apart_is_refused_before_anything_is_done(
        dynvm_with_fleet: tuple[Dynvm, FleetDir], farm: Farm) -> None:
    svc, fleet = dynvm_with_fleet
    for n in (1, 2, 3):  # three replicas of one service, on a pool of two hosts
        fleet.put(f"xenhost2/replica{n}.ini", os="centos", vcpus=1, memory=1, disk=5,
                  group="replicas")
    fleet.put("xenhost2/other.ini", os="centos", vcpus=1, memory=1, disk=5)
    farm.reset_call_counts()
    with pytest.raises(FleetRefused) as refused:
        do_apply(svc)
    assert str(refused.value) == (
        "replica3: cannot be created on xenhost2: group replicas: every member it may run on "
        "already runs a VM of the group (replica1 on xenhost2-1, replica2 on xenhost2-2)")
    assert refused.value.plan is not None and refused.value.plan.count(Kind.CREATE) == 3
    assert writes(farm) == 0 and fleet_vms(farm) == {}
    assert svc.ctx.store.fleet.find() == []


def test_two_instances_running_the_leaders_duty_act_once(tmp_path: Path, farm: Farm) -> None:
    ini = fleet_ini(tmp_path, farm)
    fleet = FleetDir(tmp_path / "fleet")
    small = {"os": "centos", "vcpus": 1, "memory": 1, "disk": 5}
    fleet.put("xenhost2/keeper.ini", recreate="true", **small)
    fleet.put("xenhost2/sleeper.ini", **small)
    fleet.put("xenhost2/gone.ini", **small)  # recreate=false (the default): only reported
    one = build_service(str(ini), timings=FAST, background=False)
    two = build_service(str(ini), timings=FAST, background=False)
    try:
        assert do_apply(one).failed == []
        before = fleet_vms(farm)
        s = _session(farm, 1)
        try:  # two destroyed by hand, one shut down: the leader's duty repairs what it may
            for name in ("keeper", "gone"):
                ref = s.xenapi.VM.get_by_uuid(before[name][0]["uuid"])
                s.xenapi.VM.hard_shutdown(ref)
                s.xenapi.VM.destroy(ref)
            s.xenapi.VM.hard_shutdown(s.xenapi.VM.get_by_uuid(before["sleeper"][0]["uuid"]))
        finally:
            s.xenapi.session.logout()
        wait_until(lambda: _sees(one, before) and _sees(two, before), timeout=30,
                   what="both instances to see the VMs gone and halted")
        farm.reset_call_counts()
        barrier = threading.Barrier(2)
        stats: list[dict[str, int]] = []

        def duty(svc: Dynvm) -> None:
            barrier.wait()
            stats.append(svc.background.converger.run())
            stats.append(svc.background.converger.run())  # and again, on what it saw

        threads = [threading.Thread(target=duty, args=(svc,)) for svc in (one, two)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        after = fleet_vms(farm)
        assert len(after["keeper"]) == 1 and after["keeper"][0]["power_state"] == "Running"
        assert after["keeper"][0]["uuid"] != before["keeper"][0]["uuid"]
        assert [v["power_state"] for v in after["sleeper"]] == ["Running"]
        assert "gone" not in after
        gone = {v["name"]: v for v in one.fleet.status()["vms"]}["gone"]
        assert (gone["state"], gone["why"]) == ("missing", "built for the fleet once, now gone")
        assert calls(farm, "VM.clone") == 1  # built again once
        assert calls(farm, "VM.start_on") == 2  # that build's start, and the sleeper's
        assert sum(s.get("recreated", 0) for s in stats) == 1
        assert sum(s.get("started", 0) for s in stats) == 1
    finally:
        for svc in (one, two):
            _destroy_fleet(svc, farm)
            svc.close()


def test_a_same_named_vm_dynvm_did_not_make_is_reported_never_touched(
        tmp_path: Path, farm: Farm) -> None:
    fleet = FleetDir(tmp_path / "fleet")
    fleet.put("xenhost2/legacy.ini", os="centos", vcpus=1, memory=1, disk=5)
    s = _session(farm, 1)
    try:  # made by hand in XenCenter, long ago
        ref = s.xenapi.VM.clone(s.xenapi.VM.get_by_name_label("tmpl-cnt7.7")[0], "legacy")
        s.xenapi.VM.set_is_a_template(ref, False)
        legacy = s.xenapi.VM.get_uuid(ref)
    finally:
        s.xenapi.session.logout()
    svc = build_service(str(fleet_ini(tmp_path, farm)), timings=FAST, background=False)
    try:
        hc = svc.config().hosts[2]
        wait_until(lambda: legacy in svc.ctx.view(hc).vms, timeout=30,
                   what="the inventory to see the VM made by hand")
        farm.reset_call_counts()
        planned = plan(svc, prune=True)
        assert planned.ok and planned.actions == []
        assert planned.notes[0].startswith("legacy: a VM of that name dynvm did not make for "
                                           "the fleet runs on xenhost2 ")
        assert do_apply(svc, prune=True).done == []
        assert svc.background.converger.run().get("recreated", 0) == 0
        assert writes(farm) == 0
        shown = svc.fleet.status()["vms"]
        assert [(v["name"], v["state"]) for v in shown] == [("legacy", "blocked")]
        assert "not made for the fleet exists" in shown[0]["why"]
    finally:
        svc.close()
        s = _session(farm, 1)
        try:
            s.xenapi.VM.destroy(s.xenapi.VM.get_by_uuid(legacy))
        finally:
            s.xenapi.session.logout()


def test_a_vm_that_keeps_halting_is_started_with_back_off_then_reported(
        tmp_path: Path, farm: Farm, caplog: pytest.LogCaptureFixture) -> None:
    fleet = FleetDir(tmp_path / "fleet")
    fleet.put("xenhost1/flaky.ini", os="centos", vcpus=1, memory=1, disk=5)
    clock = SteppedClock()
    svc = build_service(str(fleet_ini(tmp_path, farm)), timings=FAST, background=False,
                        clock=clock)
    hc = svc.config().hosts[1]
    converge = svc.background.converger.run  # the leader's duty, one pass at a time
    try:
        assert do_apply(svc).failed == []
        flaky = fleet_vms(farm)["flaky"][0]["uuid"]

        def halted_by_hand() -> None:
            wait_until(lambda: svc.ctx.view(hc).vms[flaky].power_state == "Running",
                       timeout=30, what="the inventory to see it running")
            s = _session(farm, 0)
            try:
                s.xenapi.VM.hard_shutdown(s.xenapi.VM.get_by_uuid(flaky))
            finally:
                s.xenapi.session.logout()
            wait_until(lambda: svc.ctx.view(hc).vms[flaky].power_state == "Halted",
                       timeout=30, what="the inventory to see it halted")

        def starts() -> dict[str, Any]:
            entry = svc.ctx.store.fleet.get("flaky")
            assert entry is not None
            return dict(entry.start)

        halted_by_hand()
        assert converge()["started"] == 1 and starts()["attempts"] == 1
        halted_by_hand()  # halted again at once: left halted for 30 s
        assert converge()["started"] == 0
        assert fleet_vms(farm)["flaky"][0]["power_state"] == "Halted"
        clock.advance(30)
        assert converge()["started"] == 1 and starts()["attempts"] == 2
        halted_by_hand()
        second = starts()
        assert second["next"] - second["last"] == 60  # the back-off doubles
        # Up to 5 s before it ends: the clock also runs with real time, which the waits
        # for the inventory above took a share of.
        clock.advance(second["next"] - clock() - 5)
        assert converge()["started"] == 0
        clock.advance(5)
        with caplog.at_level("ERROR", logger="dynvm.fleet"):
            assert converge()["started"] == 1
        assert "flaky keeps failing to run: started 3 times, halted again each time" \
            in caplog.text
        def shown() -> dict[str, Any]:
            return {v["name"]: v for v in svc.fleet.status()["vms"]}["flaky"]

        wait_until(lambda: shown()["power"] == "Running", timeout=30,
                   what="the status to show it running")
        assert shown()["starts"]["attempts"] == 3
        assert [(v["uuid"], v["power_state"]) for v in fleet_vms(farm)["flaky"]] == [
            (flaky, "Running")]
    finally:
        _destroy_fleet(svc, farm)
        svc.close()


def test_a_move_to_another_pool_that_fails_midway_leaves_the_vm_once_and_the_leader_finishes_it(
        tmp_path: Path, farm: Farm, caplog: pytest.LogCaptureFixture) -> None:
    fleet = FleetDir(tmp_path / "fleet")
    small = {"os": "centos", "vcpus": 1, "memory": 1, "disk": 5}
    fleet.put("xenhost2/mover.ini", **small)
    clock = SteppedClock()
    svc = build_service(str(fleet_ini(tmp_path, farm)), timings=FAST, background=False,
                        clock=clock)
    converge = svc.background.converger.run  # the leader's duty, one pass at a time
    pool1 = farm.pools[0]
    pool1_hosts = {h.ref: dict(pool1.db.get("host", h.ref)["cpu_info"]) for h in pool1.hosts}

    def where() -> list[tuple[str, str, str]]:
        return [(v["uuid"], v["host"], v["power_state"]) for v in fleet_vms(farm)["mover"]]

    try:
        assert do_apply(svc).failed == []
        start = where()
        assert len(start) == 1 and start[0][1].startswith("xenhost2-")
        mover, src = start[0][0], f"xenhost2/{start[0][1]}"
        fleet.move("xenhost2/mover.ini", "xenhost1/mover.ini")

        # XAPI refuses a live move to hosts of another CPU vendor: reported, nothing moved.
        for ref, cpu in pool1_hosts.items():
            pool1.db.modify("host", ref, {"cpu_info": {**cpu, "vendor": "AuthenticAMD"}})
        refused = do_apply(svc)
        assert refused.done == [] and len(refused.failed) == 1
        assert refused.failed[0].startswith("migrate mover from xenhost2 to xenhost1: "
                                            "VM_INCOMPATIBLE_WITH_THIS_HOST")
        assert refused.failed[0].endswith(f"; it stays on {src}")
        for ref, cpu in pool1_hosts.items():
            pool1.db.modify("host", ref, {"cpu_info": cpu})
        assert where() == start

        # Midway (its disk copied), the pool it goes to stops answering: the move fails,
        # the VM is where it was, running, once; nothing is left in the other pool.
        disks_there = _vdis(farm, 0)
        hold = farm.hold("SR.scan")
        out: list[Applied] = []
        applying = threading.Thread(target=lambda: out.append(do_apply(svc)))
        applying.start()
        try:
            assert hold.reached.wait(60), "the move never reached its copy"
            assert where() == start  # once, during the move too
            assert _vdis(farm, 0) == disks_there + 1  # its disk's copy, being made
            farm.set_unreachable(pool1.master.name_label)
        finally:
            hold.release()
            applying.join(120)
        farm.set_unreachable(pool1.master.name_label, False)
        wait_until(lambda: _answers(svc, 1), timeout=30, what="dynvm to reach xenhost1 again")
        failed = out[0]
        assert failed.done == [] and len(failed.failed) == 1, failed.failed
        assert "CANNOT_CONTACT_HOST" in failed.failed[0]
        assert failed.failed[0].endswith(f"; it stays on {src}")
        assert where() == start
        entry = svc.ctx.store.fleet.get("mover")
        assert entry is not None and entry.host_ref == 2 and entry.vm_uuid == mover
        assert _vdis(farm, 0) == disks_there  # no copy of its disk left there

        # The leader: the move is due once declared there for a while, then done, once.
        assert converge()["moved"] == 0  # declared there from now on
        clock.advance(200)
        fleet.move("xenhost1/mover.ini", "xenhost2/mover.ini")  # second thoughts
        assert converge()["moved"] == 0
        assert "move" not in svc.ctx.store.fleet.get("mover").extra
        fleet.move("xenhost2/mover.ini", "xenhost1/mover.ini")
        assert converge()["moved"] == 0  # its time starts again
        clock.advance(295)  # 5 s short: the clock also runs with real time, as converges do
        assert converge()["moved"] == 0 and where() == start
        clock.advance(5)
        assert converge()["moved"] == 1
        after = where()
        assert len(after) == 1 and after[0][0] == mover and after[0][2] == "Running"
        assert after[0][1].startswith("xenhost1-")
        assert svc.ctx.store.fleet.get("mover").host_ref == 1
        assert converge() == {"started": 0, "stopped": 0, "recreated": 0, "moved": 0,
                              "failed": 0}
        assert plan(svc).actions == []
    finally:
        farm.clear_faults()
        if pool1.master.unreachable:
            farm.set_unreachable(pool1.master.name_label, False)
        for ref, cpu in pool1_hosts.items():
            pool1.db.modify("host", ref, {"cpu_info": cpu})
        wait_until(lambda: _answers(svc, 1), timeout=30, what="dynvm to reach xenhost1 again")
        _destroy_fleet(svc, farm)
        svc.close()


def _answers(svc: Dynvm, ref: int) -> bool:
    """dynvm reads the pool again (its event feed is back after the pool stopped answering)."""
    try:
        svc.ctx.view(svc.config().hosts[ref])
    except HostUnreachable:
        return False
    return True


def _vdis(farm: Farm, pool: int) -> int:
    """How many disks the pool holds."""
    s = _session(farm, pool)
    try:
        return len(s.xenapi.VDI.get_all())
    finally:
        s.xenapi.session.logout()


def test_a_copy_of_a_fleet_vm_is_stopped_never_destroyed(tmp_path: Path, farm: Farm) -> None:
    fleet = FleetDir(tmp_path / "fleet")
    fleet.put("xenhost1/solo.ini", os="centos", vcpus=1, memory=1, disk=5)
    svc = build_service(str(fleet_ini(tmp_path, farm)), timings=FAST, background=False)
    try:
        assert do_apply(svc).failed == []
        solo = fleet_vms(farm)["solo"][0]["uuid"]
        s = _session(farm, 0)
        try:  # copied by hand (XenCenter's copy keeps other_config: the fleet's tags)
            ref = s.xenapi.VM.get_by_uuid(solo)
            s.xenapi.VM.hard_shutdown(ref)
            copy = s.xenapi.VM.clone(ref, "solo")
            s.xenapi.VM.start(ref, False, False)
            s.xenapi.VM.start(copy, False, False)
            copied = s.xenapi.VM.get_uuid(copy)
        finally:
            s.xenapi.session.logout()
        def power() -> dict[str, str]:
            vms = svc.ctx.view(svc.config().hosts[1]).vms
            return {u: vms[u].power_state for u in (solo, copied) if u in vms}

        wait_until(lambda: power() == {solo: "Running", copied: "Running"}, timeout=30,
                   what="the inventory to see both copies running")
        planned = plan(svc)
        assert [(a.kind, a.vm_uuid) for a in planned.actions] == [(Kind.STOP, copied)]
        assert f"dynvm keeps {solo}" in planned.notes[0]
        farm.reset_call_counts()
        stats = svc.background.converger.run()  # the leader's duty stops it too
        assert stats["stopped"] == 1 and stats["failed"] == 0
        after = {v["uuid"]: v["power_state"] for v in fleet_vms(farm)["solo"]}
        assert after == {solo: "Running", copied: "Halted"}
        assert calls(farm, "VM.destroy") == 0
        wait_until(lambda: power() == {solo: "Running", copied: "Halted"}, timeout=30,
                   what="the inventory to see the copy halted")
        again = plan(svc, prune=True)
        assert again.actions == [] and "the other copies are never destroyed" in again.notes[0]
    finally:
        _destroy_fleet(svc, farm)
        svc.close()


def _sees(svc: Dynvm, before: dict[str, list[dict[str, Any]]]) -> bool:
    hc = svc.config().hosts[2]
    vms = svc.ctx.view(hc).vms
    return before["keeper"][0]["uuid"] not in vms and before["gone"][0]["uuid"] not in vms \
        and vms[before["sleeper"][0]["uuid"]].power_state == "Halted"


class GroupWatcher(Watcher):
    """Follows the pool's events; notes every moment two VMs of one group share a host."""

    def __init__(self, farm: Farm, group: set[str]) -> None:
        super().__init__(farm)
        self.group = group
        self.together: list[list[str]] = []

    def _apply(self, events: list[dict]) -> None:
        super()._apply(events)
        hosts = [h for u in self.group if (h := self._where.get(u))]
        if len(hosts) != len(set(hosts)):
            self.together.append(hosts)


def test_a_rolling_reboot_keeps_groups_apart_and_sends_pinned_vms_home(tmp_path: Path) -> None:
    farm = Farm([("pool1", generate_pool("pool1", 3, 0, guest_storage="shared"))],
                speed=1000.0).start()
    svc = build_service(str(write_ini(tmp_path, farm,
                                      hosts=Ini.of_farm(farm, storage_name=SHARED),
                                      extra=f"[fleet]\npath={tmp_path / 'fleet'}\n")),
                        timings=FAST)
    fleet = FleetDir(tmp_path / "fleet")
    small = {"os": "centos", "vcpus": 1, "memory": 2, "disk": 40}
    try:
        fleet.put("xenhost1/db1.ini", host="xenhost1-1", group="db", **small)
        fleet.put("xenhost1/db2.ini", host="xenhost1-2", group="db", **small)
        fleet.put("xenhost1/web.ini", host="xenhost1-1", **small)
        assert do_apply(svc).failed == []
        vms = {n: v[0] for n, v in fleet_vms(farm).items()}
        watcher = GroupWatcher(farm, {vms["db1"]["uuid"], vms["db2"]["uuid"]})
        watcher.start({v["uuid"]: n for n, v in vms.items()})
        try:
            run = svc.maintenance.rolling_reboot(1, RebootOptions(execute=True, poll=0.02))
        finally:
            watcher.stop()
        assert run.ok and watcher.errors == []
        assert sorted(watcher.reboots) == ["xenhost1-1", "xenhost1-2", "xenhost1-3"]
        assert watcher.together == [] and watcher.not_running == []
        # Every pinned VM is back on its declared host, and the fleet has nothing to do.
        assert {n: [(x["uuid"], x["host"]) for x in v] for n, v in fleet_vms(farm).items()} == {
            "db1": [(vms["db1"]["uuid"], "xenhost1-1")], "db2": [(vms["db2"]["uuid"],
                                                                  "xenhost1-2")],
            "web": [(vms["web"]["uuid"], "xenhost1-1")]}
        assert plan(svc).actions == []
        # A third replica on the third host: no host is left for a replica to go to.
        fleet.put("xenhost1/db3.ini", group="db", **small)
        assert do_apply(svc).failed == []
        refused = svc.maintenance.rolling_reboot(1, RebootOptions())
        assert not refused.ok
        assert "cannot move: every other host with room for it runs a VM of its group db" \
            in refused.problems[0]
    finally:
        _destroy_fleet(svc, farm)
        svc.close()
        farm.stop()


def test_the_fleet_commands_plan_apply_and_show_it(
        dynvm_with_fleet: tuple[Dynvm, FleetDir], farm: Farm, tmp_path: Path) -> None:
    svc, fleet = dynvm_with_fleet
    ini = str(tmp_path / "dynvmservice.ini")
    fleet.put("xenhost2/tool.ini", os="centos", vcpus=1, memory=1, disk=40, owner="ops")
    run = CliRunner().invoke
    planned = run(main, ["fleet", "plan", "--config", ini])
    assert planned.exit_code == 0, planned.output
    assert "create  tool on xenhost2/xenhost2-1 (centos, 1 vCPUs, 1 GiB, 40 GiB disk)" \
        in planned.output
    dry = run(main, ["fleet", "apply", "--config", ini])
    assert dry.exit_code == 0 and "dry run: nothing changed" in dry.output
    assert fleet_vms(farm) == {}
    applied = run(main, ["fleet", "apply", "--config", ini, "--exec"])
    assert applied.exit_code == 0, applied.output
    assert "done: created tool on xenhost2/xenhost2-1 at " in applied.output
    assert [v["host"] for v in fleet_vms(farm)["tool"]] == ["xenhost2-1"]
    status = json.loads(run(main, ["fleet", "status", "--config", ini, "--json"]).output)
    assert (status["declared"], status["running"], status["drifted"]) == (1, 1, 0)
    assert status["vms"][0]["runs"] == "xenhost2/xenhost2-1"
    hosts = json.loads(run(main, ["hosts", "--config", ini, "--json"]).output)
    members = {m["name"]: m["fleet"] for p in hosts for m in p["members"]}
    assert members["xenhost2-1"] == ["tool"] and members["xenhost2-2"] == []
    fleet.remove("xenhost2/tool.ini")
    table = run(main, ["hosts", "--config", ini])
    assert "tool" in table.output and "kept" in table.output
    # A plan that cannot be done is refused with exit status 2, and the reason.
    for n in (1, 2, 3):
        fleet.put(f"xenhost1/r{n}.ini", os="centos", vcpus=1, memory=1, disk=40, group="g")
    refused = run(main, ["fleet", "apply", "--config", ini, "--exec", "--prune"])
    assert refused.exit_code == 2
    assert "refused, nothing done: r3: cannot be created on xenhost1: group g" in refused.output
    assert "tool" in fleet_vms(farm)


def test_the_dashboard_shows_the_fleet_declared_running_and_drifted(
        dynvm_with_fleet: tuple[Dynvm, FleetDir], farm: Farm, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import dynvm.store.sqlite.db as sqlite_db
    from dynvm.api import create_app
    from tests.service.test_store_unreadable import Damage

    svc, fleet = dynvm_with_fleet
    client = create_app(service=svc).test_client()
    small = {"os": "centos", "vcpus": 1, "memory": 1, "disk": 40}
    fleet.put("xenhost1/pinned.ini", host="xenhost1-1", owner="ops", **small)
    fleet.put("xenhost2/spare.ini", **small)
    assert do_apply(svc).failed == []
    fleet.put("xenhost1/pinned.ini", host="xenhost1-2", owner="ops", **small)  # moved: drift
    fleet.put("any/later.ini", **small)  # declared, not built yet
    got = client.get("/ui/api/fleet").get_json()
    assert (got["configured"], got["declared"], got["running"], got["drifted"]) == \
        (True, 3, 2, 2)
    rows = {v["name"]: v for v in got["vms"]}
    assert (rows["pinned"]["declared"], rows["pinned"]["runs"], rows["pinned"]["state"]) == \
        ("xenhost1/xenhost1-2", "xenhost1/xenhost1-1", "drifted")
    assert rows["pinned"]["why"] == "migrate: back to its declared host"
    assert (rows["later"]["state"], rows["later"]["runs"]) == ("absent", "")
    assert rows["spare"]["state"] == "ok"
    page = client.get("/").text
    table = page[page.index('id="fleet-table"'):page.index("</table>", page.index("fleet-table"))]
    assert 'data-name="pinned" data-state="drifted"' in table
    assert "back to its declared host" in table and 'data-name="later" data-state="absent"' in table
    # In the VM table, a fleet VM is a fleet VM: not "untracked", and never expiring.
    vms = {v["name"]: v for v in client.get("/ui/api/vms").get_json()["vms"]}
    assert (vms["pinned"]["state"], vms["pinned"]["owner"], vms["pinned"]["expires"]) == \
        ("fleet", "ops", None)
    fragments = client.get("/ui/fragments").get_json()
    assert 'data-name="spare" data-state="ok"' in fragments["fleet"]
    # A directory that does not validate is said, with the file and line.
    fleet.put("any/broken.ini", os="nosuchos")
    broken = client.get("/ui/api/fleet").get_json()
    assert "any/broken.ini:2: [vm] os: no host serves nosuchos" in broken["error"]
    assert 'id="fleet-error"' in client.get("/").text
    fleet.remove("any/broken.ini")
    # A store that cannot be read: a 503 problem, and the section says it cannot be shown.
    monkeypatch.setattr(sqlite_db, "IDENTITY_CHECK_SECS", 0.0)  # the new file is seen at once
    with Damage(tmp_path / "dynvm.sqlite"):
        down = client.get("/ui/api/fleet")
        assert down.status_code == 503 and "store" in down.get_json()["detail"]
        assert 'id="fleet-unavailable"' in client.get("/").text
