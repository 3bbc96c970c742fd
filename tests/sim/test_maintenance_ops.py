"""What host maintenance relies on: pool HA, timed live migration, host
reboot rules and modelled reboot time, master succession. Through the
official XenAPI client (raw envelopes only where a host refuses sessions)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from dynvm.sim import Farm, Timing

from .conftest import fast_timing, login, raw_call, wait_for
from .test_conformance_ops import details, refused

GIB = 1 << 30
NULL = "OpaqueRef:NULL"


@pytest.fixture
def farm() -> Iterator[Farm]:
    """Guests on shared storage: XAPI live-migrates only those."""
    with Farm.generate(pools=1, hosts=2, vms_per_host=2, timing=fast_timing(),
                       guest_storage="shared") as f:
        yield f


def control(farm: Farm, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(farm.control_url + path, data=data,
                                 method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def guests(x: Any, host: str) -> list[str]:
    return [v for v in x.host.get_resident_VMs(host) if not x.VM.get_is_control_domain(v)]


def free_mem(x: Any, host: str) -> int:
    return int(x.host_metrics.get_memory_free(x.host.get_metrics(host)))


# ---------------------------------------------------------------------- HA
def test_enable_ha_records_configuration_and_statefile(farm: Farm, x: Any) -> None:
    pool = x.pool.get_all()[0]
    (ha_sr,) = x.SR.get_by_name_label("HA heartbeat")
    x.pool.enable_ha([ha_sr], {"timeout": "180"})
    rec = x.pool.get_record(pool)
    assert rec["ha_enabled"] is True
    assert rec["ha_configuration"] == {"timeout": "180"}
    (statefile,) = rec["ha_statefiles"]
    assert (x.VDI.get_type(statefile), x.VDI.get_SR(statefile)) == ("ha_statefile", ha_sr)
    assert details(x.pool.enable_ha, [ha_sr], {}) == ["HA_IS_ENABLED"]

    x.pool.disable_ha()
    rec = x.pool.get_record(pool)
    assert (rec["ha_enabled"], rec["ha_statefiles"]) == (False, [])
    assert rec["ha_configuration"] == {"timeout": "180"}  # xapi leaves it as it was
    assert details(x.pool.disable_ha) == ["HA_NOT_ENABLED"]

    vdis = len(x.VDI.get_all())
    x.pool.enable_ha([], {})  # no SR named: the first one every host reaches
    assert x.pool.get_ha_statefiles(pool) == [statefile]  # reused, not a second one
    assert len(x.VDI.get_all()) == vdis
    assert x.pool.get_ha_configuration(pool) == {}


def test_enable_ha_refuses_bad_srs_and_offline_hosts(farm: Farm, x: Any) -> None:
    pool = x.pool.get_all()[0]
    local = x.pool.get_default_SR(pool)
    iso = next(s for s, r in x.SR.get_all_records().items() if r["content_type"] == "iso")
    bogus = "OpaqueRef:00000000-0000-0000-0000-000000000000"
    assert details(x.pool.enable_ha, [bogus], {}) == ["HANDLE_INVALID", "SR", bogus]
    assert details(x.pool.enable_ha, [local], {}) == ["SR_HAS_NO_PBDS", local]
    assert details(x.pool.enable_ha, [iso], {}) == ["SR_OPERATION_NOT_SUPPORTED", iso]
    member = farm.pools[0].hosts[1]
    for vm in guests(x, member.ref):
        x.VM.hard_shutdown(vm)
    x.host.disable(member.ref)
    control(farm, "/timing", {"host_reboot_secs": 1e9})
    x.host.reboot(member.ref)
    assert details(x.pool.enable_ha, [], {}) == ["HOST_OFFLINE", member.ref]
    assert x.pool.get_ha_enabled(pool) is False


def test_ha_host_failures_to_tolerate(farm: Farm, x: Any) -> None:
    pool = x.pool.get_all()[0]
    assert details(x.pool.set_ha_host_failures_to_tolerate, pool, -1) == [
        "INVALID_VALUE", "ha_host_failures_to_tolerate", "-1"]
    x.pool.set_ha_host_failures_to_tolerate(pool, 1)
    x.pool.enable_ha(x.SR.get_by_name_label("HA heartbeat"), {"timeout": "60"})
    assert int(x.pool.get_ha_plan_exists_for(pool)) == 1
    assert details(x.pool.set_ha_host_failures_to_tolerate, pool, 2) == [
        "HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN"]
    assert int(x.pool.get_ha_host_failures_to_tolerate(pool)) == 1


def test_disable_that_breaks_the_ha_plan_is_refused(farm: Farm, x: Any) -> None:
    pool = x.pool.get_all()[0]
    x.pool.set_ha_host_failures_to_tolerate(pool, 1)
    x.pool.enable_ha(x.SR.get_by_name_label("HA heartbeat"), {})
    member = farm.pools[0].hosts[1].ref
    assert details(x.host.disable, member) == ["HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN"]
    x.pool.set_ha_host_failures_to_tolerate(pool, 0)
    x.host.disable(member)
    assert x.host.get_enabled(member) is False


# --------------------------------------------------------------- migration
def test_migration_time_grows_with_memory() -> None:
    t = Timing(speed=2.0, migrate_base_secs=2.0, migrate_secs_per_gib=8.0)
    assert t.migrate_secs(GIB) == pytest.approx(5.0)
    assert t.migrate_secs(4 * GIB) == pytest.approx(17.0)
    # Up to migrate_link_streams (4) side by side at full speed, then they share.
    assert t.migrate_secs(GIB, streams=4) == pytest.approx(5.0)
    assert t.migrate_secs(GIB, streams=8) == pytest.approx(9.0)


def test_live_migration_keeps_the_vm_running_until_it_lands(farm: Farm, x: Any) -> None:
    src, dst = (h.ref for h in farm.pools[0].hosts)
    vm = guests(x, src)[0]
    need = int(x.VM.get_memory_static_max(vm))
    f_src, f_dst = free_mem(x, src), free_mem(x, dst)
    # A migration that cannot finish during the test: its in-flight state is stable.
    assert control(farm, "/timing", {"migrate_secs_per_gib": 1e9})[0] == 200
    task = x.Async.VM.pool_migrate(vm, dst, {"live": "true"})
    wait_for(lambda: x.VM.get_current_operations(vm) == {task: "pool_migrate"})
    assert x.VM.get_power_state(vm) == "Running"
    assert x.VM.get_resident_on(vm) == src
    assert x.VM.get_scheduled_to_be_resident_on(vm) == dst
    assert (free_mem(x, src), free_mem(x, dst)) == (f_src, f_dst - need)  # target reserved
    busy = ["OTHER_OPERATION_IN_PROGRESS", "VM", vm, "pool_migrate", task]
    assert details(x.VM.pool_migrate, vm, dst, {}) == busy
    assert details(x.VM.clean_shutdown, vm) == busy
    x.task.cancel(task)
    wait_for(lambda: x.task.get_status(task) != "pending")
    assert x.task.get_status(task) == "cancelled"
    assert (x.VM.get_resident_on(vm), x.VM.get_power_state(vm)) == (src, "Running")
    assert x.VM.get_current_operations(vm) == {}
    assert (free_mem(x, src), free_mem(x, dst)) == (f_src, f_dst)

    control(farm, "/timing", {"migrate_secs_per_gib": 8.0})
    task = x.Async.VM.pool_migrate(vm, dst, {"live": "true"})
    states = set()
    while x.task.get_status(task) == "pending":
        states.add(x.VM.get_power_state(vm))
    assert x.task.get_status(task) == "success", x.task.get_error_info(task)
    assert states <= {"Running"}
    assert x.VM.get_resident_on(vm) == dst
    assert x.VM.get_scheduled_to_be_resident_on(vm) == NULL
    assert (free_mem(x, src), free_mem(x, dst)) == (f_src + need, f_dst - need)


def test_hard_shutdown_interrupts_a_migration(farm: Farm, x: Any) -> None:
    src, dst = (h.ref for h in farm.pools[0].hosts)
    vm = guests(x, src)[0]
    f_src, f_dst = free_mem(x, src), free_mem(x, dst)
    need = int(x.VM.get_memory_static_max(vm))
    control(farm, "/timing", {"migrate_secs_per_gib": 1e9})
    task = x.Async.VM.pool_migrate(vm, dst, {})
    wait_for(lambda: x.VM.get_current_operations(vm) == {task: "pool_migrate"})
    x.VM.hard_shutdown(vm)  # xapi lets a hard shutdown through
    x.task.cancel(task)
    wait_for(lambda: x.task.get_status(task) != "pending")
    assert x.VM.get_power_state(vm) == "Halted"
    assert (free_mem(x, src), free_mem(x, dst)) == (f_src + need, f_dst)


def test_local_disks_do_not_live_migrate() -> None:
    with Farm.generate(pools=1, hosts=2, vms_per_host=1, timing=fast_timing()) as farm:
        x = login(farm.pools[0].master.url).xenapi
        src, dst = (h.ref for h in farm.pools[0].hosts)
        vm = guests(x, src)[0]
        sr = x.VDI.get_SR(x.VBD.get_VDI(x.VM.get_VBDs(vm)[0]))
        assert details(x.VM.pool_migrate, vm, dst, {"live": "true"}) == ["VM_REQUIRES_SR", vm, sr]
        assert x.host.get_vms_which_prevent_evacuation(src) == {vm: ["VM_REQUIRES_SR", vm, sr]}
        x.VM.hard_shutdown(vm)
        assert details(x.VM.start_on, vm, dst, False, False) == ["VM_REQUIRES_SR", vm, sr]
        x.VM.start(vm, False, False)  # placed where its disk is
        assert x.VM.get_resident_on(vm) == src


# ------------------------------------------------------------ host reboot
def test_reboot_rules_and_modelled_reboot_time(farm: Farm, x: Any) -> None:
    member = farm.pools[0].hosts[1]
    master = farm.pools[0].master.ref
    assert details(x.host.reboot, member.ref) == ["HOST_NOT_DISABLED"]
    x.host.disable(member.ref)
    running = guests(x, member.ref)
    x.host.evacuate(member.ref)
    assert guests(x, member.ref) == [] and all(
        x.VM.get_resident_on(v) == master for v in running)
    status, doc = control(farm, "/timing", {"host_reboot_secs": 1e9})
    assert status == 200 and doc["host_reboot_secs"] == 1e9
    booted = x.host.get_other_config(member.ref)
    assert float(booted["boot_time"]) > 0 and float(booted["agent_start_time"]) > 0
    x.host.reboot(member.ref)
    assert x.host_metrics.get_live(x.host.get_metrics(member.ref)) is False
    wait_for(lambda: refused(member.url), timeout=10)
    assert x.host.get_enabled(member.ref) is False
    for call in (x.host.enable, x.host.disable, x.host.reboot):  # xapi cannot reach it
        assert details(call, member.ref) == ["HOST_OFFLINE", member.ref]
    # The reboot under way ends as soon as the (shortened) time is up.
    control(farm, "/timing", {"host_reboot_secs": 0})
    wait_for(lambda: x.host.get_enabled(member.ref), timeout=10)
    assert x.host_metrics.get_live(x.host.get_metrics(member.ref)) is True
    wait_for(lambda: not refused(member.url), timeout=10)
    # xapi stamps every start (dbsync): a client knows the host rebooted even
    # if it never saw it down.
    again = x.host.get_other_config(member.ref)
    assert float(again["boot_time"]) > float(booted["boot_time"])
    assert float(again["agent_start_time"]) > float(booted["agent_start_time"])


def test_evacuate_migrates_in_parallel_batches(farm: Farm, x: Any) -> None:
    member = farm.pools[0].hosts[1]
    moving = guests(x, member.ref)
    assert len(moving) == 2
    control(farm, "/timing", {"migrate_secs_per_gib": 1e9})
    x.host.disable(member.ref)
    task = x.Async.host.evacuate(member.ref)
    wait_for(lambda: x.host.get_current_operations(member.ref) == {task: "evacuate"})
    wait_for(lambda: all(list(x.VM.get_current_operations(v).values()) == ["pool_migrate"]
                         for v in moving))  # both at once: one batch
    x.task.cancel(task)
    wait_for(lambda: x.task.get_status(task) != "pending")
    assert x.host.get_current_operations(member.ref) == {}
    assert all(x.VM.get_resident_on(v) == member.ref for v in moving)
    control(farm, "/timing", {"migrate_secs_per_gib": 8})
    x.host.evacuate(member.ref, NULL, 1)  # one at a time
    assert guests(x, member.ref) == []


def test_no_reboot_while_the_host_shuts_down(farm: Farm, x: Any) -> None:
    member = farm.pools[0].hosts[1]
    control(farm, "/timing", {"migrate_secs_per_gib": 1e9})  # its guests take "forever" to leave
    x.host.disable(member.ref)
    task = x.Async.host.shutdown(member.ref)
    wait_for(lambda: x.host.get_current_operations(member.ref) == {task: "shutdown"})
    assert details(x.host.reboot, member.ref) == [
        "OTHER_OPERATION_IN_PROGRESS", "host", member.ref, "shutdown", task]
    x.task.cancel(task)
    wait_for(lambda: x.task.get_status(task) != "pending")
    assert x.host.get_current_operations(member.ref) == {}
    assert x.host_metrics.get_live(x.host.get_metrics(member.ref)) is True


def test_disable_without_auto_enable_survives_the_reboot(farm: Farm, x: Any) -> None:
    member = farm.pools[0].hosts[1]
    for vm in guests(x, member.ref):
        x.VM.hard_shutdown(vm)
    x.host.disable(member.ref, False)
    x.host.reboot(member.ref)
    wait_for(lambda: x.host_metrics.get_live(x.host.get_metrics(member.ref)), timeout=10)
    assert x.host.get_enabled(member.ref) is False
    x.host.enable(member.ref)
    assert x.host.get_enabled(member.ref) is True


def test_timing_endpoint_rejects_bad_fields(farm: Farm) -> None:
    assert control(farm, "/timing", {"nope": 1})[0] == 400
    assert control(farm, "/timing", {"host_reboot_secs": -1})[0] == 400
    assert control(farm, "/timing", {"speed": 0})[0] == 400
    assert control(farm, "/timing")[1]["speed"] == farm.timing.speed


def _empty_pool_master_reboot(ha: bool) -> None:
    with Farm.generate(pools=1, hosts=3, timing=fast_timing()) as farm:
        pool = farm.pools[0]
        old = pool.master
        x = login(old.url).xenapi
        if ha:
            x.pool.enable_ha(x.SR.get_by_name_label("HA heartbeat"), {"timeout": "180"})
        control(farm, "/timing", {"host_reboot_secs": 1e9})
        x.host.disable(old.ref)
        x.host.reboot(old.ref)
        wait_for(lambda: refused(old.url), timeout=10)
        member = pool.hosts[1]
        answer = raw_call(member.url, "session.login_with_password", "root", "xenroot")
        if not ha:
            # No HA, no election: members keep naming the master that is away.
            assert answer["ErrorDescription"] == ["HOST_IS_SLAVE", old.address]
            return
        assert answer["Status"] == "Success"  # the successor answers
        successor = pool.master
        assert successor is member
        y = login(member.url).xenapi
        assert y.pool.get_master(y.pool.get_all()[0]) == member.ref
        assert raw_call(pool.hosts[2].url, "session.login_with_password", "root", "xenroot")[
            "ErrorDescription"] == ["HOST_IS_SLAVE", member.address]
        control(farm, "/timing", {"host_reboot_secs": 0})
        wait_for(lambda: not refused(old.url), timeout=10)
        assert raw_call(old.url, "session.login_with_password", "root", "xenroot")[
            "ErrorDescription"] == ["HOST_IS_SLAVE", member.address]


def test_master_reboot_without_ha_leaves_members_pointing_at_it() -> None:
    _empty_pool_master_reboot(ha=False)


def test_master_reboot_with_ha_hands_over_to_a_live_member() -> None:
    _empty_pool_master_reboot(ha=True)


def test_sessions_are_lost_when_the_master_hands_over() -> None:
    with Farm.generate(pools=1, hosts=2, timing=fast_timing()) as farm:
        pool = farm.pools[0]
        s = login(pool.master.url)
        x = s.xenapi
        x.pool.enable_ha(x.SR.get_by_name_label("HA heartbeat"), {})
        x.host.disable(pool.master.ref)
        x.host.reboot(pool.master.ref)
        old_session = s._session
        assert raw_call(pool.hosts[1].url, "host.get_all", old_session)[
            "ErrorDescription"][0] == "SESSION_INVALID"
        y = login(pool.hosts[1].url).xenapi
        assert y.pool.get_ha_enabled(y.pool.get_all()[0]) is True
