"""VM.suspend and VM.resume through the official client: the memory image
is a suspend VDI that takes space on the suspend SR until resume (or a hard
shutdown) removes it, and XAPI's error cases."""

from __future__ import annotations

from typing import Any

from dynvm.sim import Farm
from dynvm.sim.vmsuspend import suspend_image_bytes

from .conftest import fast_timing, login
from .test_device_ops import fails, guest, started_from_template

MIB = 1 << 20


def sr_used(x: Any, sr: str) -> tuple[int, int]:
    rec = x.SR.get_record(sr)
    return int(rec["physical_utilisation"]), int(rec["virtual_allocation"])


def host_free(x: Any, host: str) -> int:
    return int(x.host_metrics.get_memory_free(x.host.get_metrics(host)))


def test_suspend_writes_an_image_that_counts_on_the_sr_and_resume_removes_it(x: Any) -> None:
    vm = guest(x, windows=False)
    rec = x.VM.get_record(vm)
    host = rec["resident_on"]
    sr = x.host.get_suspend_image_sr(host)
    used, free = sr_used(x, sr), host_free(x, host)
    ip = x.VM_guest_metrics.get_networks(rec["guest_metrics"])["0/ip"]

    x.VM.suspend(vm)
    rec = x.VM.get_record(vm)
    assert rec["power_state"] == "Suspended"
    assert rec["resident_on"] == "OpaqueRef:NULL" and rec["domid"] == "-1"
    image = x.VDI.get_record(rec["suspend_VDI"])
    size = suspend_image_bytes(int(rec["memory_static_max"]))
    assert size == int(int(rec["memory_static_max"]) * 1.2 * 1.05) + 100 * MIB
    assert (image["type"], image["name_label"], image["SR"]) == ("suspend", "Suspend image", sr)
    assert int(image["virtual_size"]) == size
    assert sr_used(x, sr) == (used[0] + size, used[1] + size)
    assert host_free(x, host) == free + int(rec["memory_static_max"])
    assert not any(x.VBD.get_currently_attached(v) for v in rec["VBDs"])

    x.VM.resume(vm, False, False)
    rec = x.VM.get_record(vm)
    assert rec["power_state"] == "Running" and rec["suspend_VDI"] == "OpaqueRef:NULL"
    assert image["uuid"] not in {r["uuid"] for r in x.VDI.get_all_records().values()}
    assert sr_used(x, sr) == used
    assert all(x.VBD.get_currently_attached(v) for v in rec["VBDs"])
    # The guest carries on with the address it had.
    assert x.VM_guest_metrics.get_networks(rec["guest_metrics"])["0/ip"] == ip


def test_hard_shutdown_of_a_suspended_vm_drops_its_image(x: Any) -> None:
    vm = guest(x, windows=False)
    sr = x.host.get_suspend_image_sr(x.VM.get_resident_on(vm))
    used = sr_used(x, sr)
    x.VM.suspend(vm)
    image = x.VM.get_suspend_VDI(vm)
    assert fails(x.VM.start, vm, False, False) == ["VM_BAD_POWER_STATE", vm, "halted", "suspended"]
    x.VM.hard_shutdown(vm)
    assert x.VM.get_power_state(vm) == "Halted"
    assert x.VM.get_suspend_VDI(vm) == "OpaqueRef:NULL"
    assert fails(x.VDI.get_record, image) == ["HANDLE_INVALID", "VDI", image]
    assert sr_used(x, sr) == used


def test_suspend_and_resume_power_state_errors(x: Any) -> None:
    vm = guest(x, windows=False)
    assert fails(x.VM.resume, vm, False, False) == [
        "VM_BAD_POWER_STATE", vm, "suspended", "running"]
    x.VM.hard_shutdown(vm)
    assert fails(x.VM.suspend, vm) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    template = x.VM.get_by_name_label("tmpl-cnt7.9")[0]
    assert fails(x.VM.suspend, template) == ["VM_BAD_POWER_STATE", template, "running", "halted"]


def test_suspend_refuses_an_immobile_vm(x: Any) -> None:
    vm = guest(x, windows=False)
    x.VM.add_to_platform(vm, "nomigrate", "true")
    assert fails(x.VM.suspend, vm) == ["VM_IS_IMMOBILE", vm]


def test_suspend_needs_an_hvm_guests_drivers_or_its_suspend_feature() -> None:
    timing = fast_timing(boot_secs={"linux": 1e6, "windows": 1e6})
    with Farm.generate(pools=1, hosts=1, vms_per_host=0, timing=timing) as farm:
        x = login(farm.pools[0].master.url).xenapi
        win = started_from_template(x, "tmpl-win16dc - PATCHED (1)")
        assert fails(x.VM.suspend, win) == ["VM_LACKS_FEATURE", win]
        # A PV guest needs no driver to be suspended, even while it boots.
        linux = started_from_template(x, "tmpl-cnt7.9")
        x.VM.suspend(linux)
        assert x.VM.get_power_state(linux) == "Suspended"


def test_suspend_needs_a_suspend_sr_its_host_reaches(x: Any) -> None:
    vm = guest(x, windows=False)
    host = x.VM.get_resident_on(vm)
    pool = x.pool.get_all()[0]
    other = next(h for h in x.host.get_all() if h != host)
    # Another host's local SR: this host has no PBD to it.
    x.pool.set_suspend_image_SR(pool, x.host.get_suspend_image_sr(other))
    x.host.set_suspend_image_sr(host, "OpaqueRef:NULL")
    assert fails(x.VM.suspend, vm) == ["VM_NO_SUSPEND_SR", vm]
    # The VM's own suspend_SR comes first.
    ha_sr = x.SR.get_by_name_label("HA heartbeat")[0]
    x.VM.set_suspend_SR(vm, ha_sr)
    # ... and a 1 GiB SR has no room for a 4 GiB guest's image (the SM's SRNoSpace).
    assert fails(x.VM.suspend, vm) == [
        "SR_BACKEND_FAILURE_44", "", "There is insufficient space", ""]
    assert x.VM.get_power_state(vm) == "Running"


def test_resume_needs_memory_on_the_host(x: Any) -> None:
    vm = guest(x, windows=False)
    host = x.VM.get_resident_on(vm)
    x.VM.suspend(vm)
    for h in x.host.get_all():
        if h != host:
            x.host.disable(h)
    metrics = x.host.get_metrics(host)
    free = host_free(x, host)
    hog = x.VM.get_by_name_label("tmpl-cnt7.9")[0]
    needed = str(int(x.VM.get_memory_static_max(vm)))
    # Leave less than the VM needs: a halted clone sized to eat the rest.
    big = x.VM.clone(hog, "hog")
    x.VM.remove_from_other_config(big, "disks")
    x.VM.provision(big)
    eat = str(free - int(needed) + MIB)
    x.VM.set_memory_limits(big, eat, eat, eat, eat)
    x.VM.start_on(big, host, False, False)
    left = int(x.host_metrics.get_memory_free(metrics))
    assert fails(x.VM.resume_on, vm, host, False, False) == [
        "HOST_NOT_ENOUGH_FREE_MEMORY", needed, str(left)]
    assert x.VM.get_power_state(vm) == "Suspended"


def test_resume_on_needs_the_disks_and_the_image_on_the_target(x: Any) -> None:
    vm = guest(x, windows=False)
    host = x.VM.get_resident_on(vm)
    other = next(h for h in x.host.get_all() if h != host)
    x.VM.suspend(vm)
    disk_sr = x.VDI.get_SR(x.VBD.get_VDI(x.VM.get_VBDs(vm)[0]))
    assert fails(x.VM.resume_on, vm, other, False, False) == ["VM_REQUIRES_SR", vm, disk_sr]


def test_resume_on_another_host_and_paused() -> None:
    with Farm.generate(pools=1, hosts=2, vms_per_host=1, timing=fast_timing(),
                       guest_storage="shared") as farm:
        x = login(farm.pools[0].master.url).xenapi
        vm = guest(x, windows=False)
        shared = x.SR.get_by_name_label("Shared storage")[0]
        x.pool.set_suspend_image_SR(x.pool.get_all()[0], shared)
        host = x.VM.get_resident_on(vm)
        other = next(h for h in x.host.get_all() if h != host)
        x.VM.suspend(vm)
        assert x.VDI.get_SR(x.VM.get_suspend_VDI(vm)) == shared
        x.VM.resume_on(vm, other, True, False)
        assert x.VM.get_power_state(vm) == "Paused"
        assert x.VM.get_resident_on(vm) == other
        x.VM.unpause(vm)
        assert x.VM.get_power_state(vm) == "Running"
