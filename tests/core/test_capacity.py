"""The seed's capacity formula, on plain views (no hypervisor involved)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from dynvm.config import HostConfig, OsSpec
from dynvm.core.capacity import GIB, free_on, slots_on, unseen
from dynvm.core.placement import Candidate, eligible_hosts, spread
from dynvm.core.ports import HostView, PoolView, VmView
from dynvm.core.store import Reservation

CENTOS = OsSpec("centos", "tmpl-cnt7.7", 8, 4, 35)
WINDOWS = OsSpec("windows", "tmpl-win", 12, 6, 71)


def host_cfg(ref: int = 1, labels: frozenset[str] = frozenset(), **kw) -> HostConfig:
    return HostConfig(ref=ref, name=f"h{ref}", url=f"http://h{ref}", user="root", password="x",
                      storage_name="Local storage", labels=labels,
                      os={"centos": CENTOS, "windows": WINDOWS}, **kw)


def member(cpus: int = 48, mem_gib: int = 256, sr_gib: int = 2000, used_gib: int = 0,
           enabled: bool = True) -> HostView:
    return HostView(uuid="m1", ref="OpaqueRef:m1", name_label="m1", address="127.0.0.1",
                    enabled=enabled, cpu_count=cpus, memory_free=mem_gib * GIB,
                    memory_total=mem_gib * GIB,
                    srs={"Local storage": (sr_gib * GIB, used_gib * GIB)})


def vm(uuid: str, vcpus: int = 8, state: str = "Running", os: str = "centos") -> VmView:
    return VmView(ref=f"OpaqueRef:{uuid}", uuid=uuid, name_label=uuid, name_description="",
                  power_state=state, vcpus_max=vcpus, memory_static_max=4 * GIB,
                  resident_on="m1", is_template=False, is_control_domain=False,
                  other_config={"dynvm_os": os}, ips=())


def view(h: HostView, vms: Sequence[VmView] = ()) -> PoolView:
    return PoolView(host_ref=1, hosts=(h,), vms={v.uuid: v for v in vms},
                    templates={"tmpl-cnt7.7": "OpaqueRef:t1", "tmpl-win": "OpaqueRef:t2"},
                    age_secs=0.0)


def resv(rid: str, vm_uuid: str | None = None, os: str = "centos") -> Reservation:
    now = time.time()
    return Reservation(id=rid, host_key="1/m1", request_id="r", os=os, vcpus=8, memory_gib=4,
                       disk_gib=35, created=now, expires=now + 60, vm_uuid=vm_uuid)


def test_formula_takes_the_smallest_of_cpu_memory_and_disk() -> None:
    h = member(cpus=48, mem_gib=256, sr_gib=2000)
    # by_cpu = 48 // 8 = 6; by_mem = 256 // 4 = 64; by_disk = floor(1800 / 35) - 1 = 50
    assert slots_on(view(h), h, host_cfg(), "centos", []) == 6
    h = member(cpus=480, mem_gib=20, sr_gib=2000)
    assert slots_on(view(h), h, host_cfg(), "centos", []) == 5  # 20 // 4
    h = member(cpus=480, mem_gib=2560, sr_gib=200)
    # 200 GiB less 10 % = 180 -> 180 // 35 = 5, less one for the base copy
    assert slots_on(view(h), h, host_cfg(), "centos", []) == 4


def test_running_vms_use_cpus_and_windows_sizes_apply() -> None:
    h = member(cpus=48)
    assert slots_on(view(h, [vm("a"), vm("b", vcpus=16)]), h, host_cfg(), "centos", []) == 3
    assert slots_on(view(h), h, host_cfg(), "windows", []) == 4  # 48 // 12
    halted = vm("c", state="Halted")
    assert slots_on(view(h, [halted]), h, host_cfg(), "centos", []) == 6


def test_reservations_count_until_the_view_shows_the_vm_running() -> None:
    h = member(cpus=48)
    pending = [resv("r1"), resv("r2", vm_uuid="a")]
    assert slots_on(view(h), h, host_cfg(), "centos", pending) == 4
    # VM "a" now runs: its CPUs are in the view, its reservation no longer counts
    v = view(h, [vm("a")])
    assert [r.id for r in unseen(pending, v.load_on("m1").shown)] == ["r1"]
    assert slots_on(v, h, host_cfg(), "centos", pending) == 4
    # a VM tagged with its reservation is matched before the store knows its uuid
    tagged = replace(vm("b"), other_config={"dynvm_reservation": "r1"})
    v = view(h, [vm("a"), tagged])
    assert unseen(pending, v.load_on("m1").shown) == []
    assert slots_on(v, h, host_cfg(), "centos", pending) == 4


def test_a_settling_reservation_of_a_vm_migrated_away_no_longer_counts_here() -> None:
    """A VM built here and live-migrated to another member before its reservation
    settled is counted there (the view has it), so it must not also hold room here."""
    h = member(cpus=480, mem_gib=20)
    other = HostView(**{**member().__dict__, "uuid": "m2", "ref": "OpaqueRef:m2",
                        "name_label": "m2"})
    moved = replace(vm("a"), resident_on="m2")
    v = PoolView(host_ref=1, hosts=(h, other), vms={"a": moved},
                 templates={"tmpl-cnt7.7": "OpaqueRef:t1"}, age_secs=0.0)
    settling = replace(resv("r1", vm_uuid="a"), settle_until=time.time() + 30)
    assert slots_on(v, h, host_cfg(), "centos", [settling]) == 5  # 20 // 4: nothing held here
    # Room held for a migration still to come (not settled) stays counted on its target.
    held = resv("r2", vm_uuid="a")
    assert slots_on(v, h, host_cfg(), "centos", [held]) == 4
    # A settling VM that runs nowhere yet (its start not yet in the view) still counts.
    elsewhere = PoolView(host_ref=1, hosts=(h, other), vms={}, templates=v.templates,
                         age_secs=0.0)
    assert slots_on(elsewhere, h, host_cfg(), "centos", [settling]) == 4


def test_caps_labels_disabled_hosts_and_missing_templates() -> None:
    h = member(cpus=480, mem_gib=2560)
    capped = host_cfg(vms_max={"centos": 3})
    assert slots_on(view(h, [vm("a")]), h, capped, "centos", [resv("r1")]) == 1
    assert slots_on(view(member(enabled=False)), member(enabled=False), host_cfg(),
                    "centos", []) == 0
    no_tmpl = PoolView(host_ref=1, hosts=(h,), vms={}, templates={}, age_secs=0)
    assert slots_on(no_tmpl, h, host_cfg(), "centos", []) == 0
    assert slots_on(view(h), h, host_cfg(), "suse15", []) == 0


def test_no_sr_of_the_configured_name_means_no_room() -> None:
    h = HostView(uuid="m1", ref="r", name_label="m1", address="", enabled=True, cpu_count=48,
                 memory_free=256 * GIB, memory_total=256 * GIB, srs={"other": (1 << 50, 0)})
    assert free_on(h, 0, "Local storage", []).has_sr is False
    assert slots_on(view(h), h, host_cfg(), "centos", []) == 0


def test_request_sizes_override_the_os_sizes() -> None:
    h = member(cpus=48)
    assert slots_on(view(h), h, host_cfg(), "centos", [], sizes=(16, 4)) == 3


def test_spread_evens_out_over_hosts() -> None:
    def cand(slots: int) -> Candidate:
        return Candidate(host_cfg(), view(member()), member(), slots)

    plan = spread([cand(10), cand(10), cand(1)], 5)
    assert sorted(plan.values()) == [1, 2, 2]
    assert sum(spread([cand(2), cand(1)], 10).values()) == 3


def test_labels_choose_hosts_like_the_seed() -> None:
    from dynvm.config import Config

    cfg = Config(hosts={1: host_cfg(1), 2: host_cfg(2, frozenset({"perf"})),
                        3: host_cfg(3, frozenset({"perf", "windows"}))})
    refs = lambda hs: [h.ref for h in hs]  # noqa: E731
    assert refs(eligible_hosts(cfg, "centos", frozenset(), False)) == [1]
    assert refs(eligible_hosts(cfg, "centos", frozenset({"perf"}), False)) == [2, 3]
    assert refs(eligible_hosts(cfg, "centos", frozenset(), True)) == [1, 2, 3]
    assert refs(eligible_hosts(cfg, "centos", frozenset(), False, xhostref=3)) == [3]
    assert refs(eligible_hosts(cfg, "suse15", frozenset(), True)) == []
