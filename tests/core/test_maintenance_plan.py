"""The rolling-reboot planner on plain records (no hypervisor needed)."""

from __future__ import annotations

import pytest

from dynvm.core.maintenance.plan import (
    GIB,
    PlanHost,
    PlanVm,
    describe,
    plan_plain,
    plan_reboot,
    simulated_secs,
)


def pool(n_hosts: int = 4, host_gib: int = 64, vms_per_host: int = 15,
         sizes: tuple[int, ...] = (2, 4)) -> tuple[list[PlanHost], list[PlanVm]]:
    hosts, vms = [], []
    for h in range(n_hosts):
        used = 0
        for k in range(vms_per_host):
            mem = sizes[k % len(sizes)] * GIB
            used += mem
            vms.append(PlanVm(f"vm-{h}-{k}", f"vm{h}{k:02d}", f"h{h}", mem))
        hosts.append(PlanHost(f"h{h}", f"host{h}", host_gib * GIB - used, host_gib * GIB,
                              is_master=(h == 2)))
    return hosts, vms


def test_master_first_and_every_vm_fits_at_every_step() -> None:
    hosts, vms = pool()
    plan = plan_reboot(hosts, vms, strategy="migrate")
    assert plan.ok, plan.problems
    assert [s.name for s in plan.hosts] == ["host2", "host0", "host1", "host3"]
    for m in plan.migrations:
        assert all(f >= 0 for f in m.free_after.values())
    # Every VM ends up somewhere, once: replaying the plan from the start.
    where = {v.uuid: v.host for v in vms}
    for m in plan.migrations:
        assert where[m.vm] == m.src
        where[m.vm] = m.dst
    assert len(where) == 60


def test_master_vms_move_twice_others_at_most_once() -> None:
    hosts, vms = pool()
    plan = plan_reboot(hosts, vms, strategy="migrate")
    moves = plan.moves_per_vm()
    for v in vms:
        if v.host == "h2":
            assert moves[v.uuid] == 2, v.name
        else:
            assert moves.get(v.uuid, 0) == 1, v.name
    plain = plan_plain(hosts, vms)
    assert plain.ok
    # Without leases to exploit, the greedy plan can at best equal it.
    assert len(plain.migrations) >= len(plan.migrations)
    assert plain.bytes_moved >= plan.bytes_moved


def test_not_n_plus_1_is_refused_naming_host_and_memory() -> None:
    hosts, vms = pool(vms_per_host=15, sizes=(4, 5))  # 67.5 GiB a host: more than 3 hosts' room
    hosts = [PlanHost(h.uuid, h.name, max(h.memory_free, 0), 80 * GIB, h.is_master)
             for h in pool(host_gib=80, vms_per_host=15, sizes=(4, 5))[0]]
    plan = plan_reboot(hosts, vms, strategy="migrate")
    assert not plan.ok
    text = " ".join(plan.problems)
    assert "not N+1" in text and "lacks" in text and "GiB" in text
    assert any(s in text for s in ("host0", "host1", "host2", "host3"))
    assert any(line.startswith("refused:") for line in describe(plan))


def test_unmovable_vm_is_named_with_its_reason() -> None:
    hosts, vms = pool()
    vms[3] = PlanVm(vms[3].uuid, "localdisk", vms[3].host, vms[3].memory,
                    blocker="disk on local SR 'Local storage' (no storage motion)")
    plan = plan_reboot(hosts, vms)
    assert not plan.ok
    assert "localdisk" in plan.problems[0] and "local SR" in plan.problems[0]


def test_leases_ending_in_window_wait_warm_vms_are_destroyed() -> None:
    hosts, vms = pool()
    now = 1000.0
    marked = []
    for i, v in enumerate(vms):
        if i % 5 == 0:
            marked.append(PlanVm(v.uuid, v.name, v.host, v.memory, lease_expires=now + 60))
        elif i % 5 == 1:
            marked.append(PlanVm(v.uuid, v.name, v.host, v.memory, lease_expires=now + 9000))
        elif i % 5 == 2:
            marked.append(PlanVm(v.uuid, v.name, v.host, v.memory, lease_expires=None, warm=True))
        else:
            marked.append(v)
    auto = plan_reboot(hosts, marked, strategy="auto", drain_window=600, now=now)
    assert auto.ok
    waited = {u for s in auto.hosts for u in s.wait_for}
    destroyed = {u for s in auto.hosts for u in s.destroy}
    moved = set(auto.moves_per_vm())
    assert waited == {v.uuid for i, v in enumerate(marked) if i % 5 == 0}
    assert destroyed == {v.uuid for i, v in enumerate(marked) if i % 5 == 2}
    assert not (moved & (waited | destroyed))
    migrate = plan_reboot(hosts, marked, strategy="migrate", drain_window=600, now=now)
    assert len(migrate.migrations) > len(auto.migrations)
    assert not {u for s in migrate.hosts for u in s.wait_for}
    # The plain plan knows nothing of leases: it moves everything.
    assert len(plan_plain(hosts, marked).migrations) > len(migrate.migrations)


def test_resume_skips_hosts_done() -> None:
    hosts, vms = pool()
    plan = plan_reboot(hosts, vms, done=["h2", "h0"])
    assert [s.name for s in plan.hosts] == ["host1", "host3"]


def test_parallel_migrations_shorten_the_simulated_time() -> None:
    hosts, vms = pool()
    plan = plan_reboot(hosts, vms)
    assert simulated_secs(plan, 5) < simulated_secs(plan, 1)


def test_bad_strategy() -> None:
    with pytest.raises(ValueError):
        plan_reboot([], [], strategy="nope")


def test_vms_of_a_fleet_group_never_share_a_host_at_any_step() -> None:
    hosts, vms = pool(n_hosts=4, vms_per_host=3)
    # Three replicas of one service, one per host but the last.
    vms += [PlanVm(f"r{h}", f"replica{h}", f"h{h}", 2 * GIB, group="svc") for h in range(3)]
    plan = plan_reboot(hosts, vms, strategy="migrate")
    assert plan.ok, plan.problems
    where = {v.uuid: v.host for v in vms}
    for m in plan.migrations:
        where[m.vm] = m.dst
        replicas = [where[f"r{h}"] for h in range(3)]
        assert len(set(replicas)) == 3, (m, replicas)
    # Four replicas on four hosts: whichever host reboots, its replica has nowhere to go.
    full = plan_reboot(hosts, [*vms, PlanVm("r3", "replica3", "h3", 2 * GIB, group="svc")],
                       strategy="migrate")
    assert not full.ok
    assert full.problems[0] == ("VM replica2 on host2 cannot move: every other host with room "
                                "for it runs a VM of its group svc, and VMs of one group never "
                                "share a host")
