"""VBD and VIF hot-plug, CD eject and the free device numbers, through the
official client, with XAPI's error cases (xen-api's xapi_vbd_helpers /
xapi_vif_helpers rules)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from dynvm.sim import Farm

from .conftest import fast_timing, login, wait_for


def fails(call: Any, *args: Any) -> list[str]:
    with pytest.raises(XenAPI.Failure) as exc:
        call(*args)
    return exc.value.details


def guest(x: Any, windows: bool) -> str:
    """A running generated guest (its PV drivers reported) of the OS kind asked."""
    for vm, rec in x.VM.get_all_records().items():
        if rec["power_state"] == "Running" and not rec["is_control_domain"] and (
                rec["domain_type"] == "hvm") == windows:
            return vm
    raise AssertionError("no such guest")


def new_disk(x: Any, vm: str, userdevice: str = "autodetect", **vbd: Any) -> str:
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    vdi = x.VDI.create({"name_label": "extra", "SR": sr, "virtual_size": str(1 << 30),
                        "type": "user", "sharable": False, "read_only": False,
                        "other_config": {}})
    return x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": userdevice, "bootable": False,
                         "mode": "RW", "type": "Disk", "empty": False, "other_config": {},
                         "qos_algorithm_type": "", "qos_algorithm_params": {}, **vbd})


def new_cd(x: Any, vm: str, with_iso: bool = True) -> str:
    iso = ""
    if with_iso:
        sr = x.SR.get_by_name_label("ISO library")[0]
        iso = x.VDI.create({"name_label": "tools.iso", "SR": sr, "virtual_size": "1000",
                            "type": "user", "sharable": True, "read_only": True,
                            "other_config": {}})
    return x.VBD.create({"VM": vm, "VDI": iso or "OpaqueRef:NULL", "userdevice": "3",
                         "bootable": False, "mode": "RO", "type": "CD", "empty": not with_iso,
                         "other_config": {}, "qos_algorithm_type": "",
                         "qos_algorithm_params": {}})


def new_vif(x: Any, vm: str, device: str) -> str:
    net = x.network.get_by_name_label("Pool-wide network associated with eth0")[0]
    return x.VIF.create({"device": device, "network": net, "VM": vm, "MAC": "", "MTU": "1500",
                         "other_config": {}, "qos_algorithm_type": "",
                         "qos_algorithm_params": {}})


@pytest.fixture
def slow_farm() -> Iterator[Farm]:
    """Guests that never finish booting: no guest metrics, so no PV drivers."""
    timing = fast_timing(boot_secs={"linux": 1e6, "windows": 1e6})
    with Farm.generate(pools=1, hosts=1, vms_per_host=0, timing=timing) as f:
        yield f


def started_from_template(x: Any, template_name: str) -> str:
    tpl = x.VM.get_by_name_label(template_name)[0]
    vm = x.VM.clone(tpl, "booting")
    x.VM.remove_from_other_config(vm, "disks")
    x.VM.provision(vm)
    x.VM.start(vm, False, False)
    return vm


def test_vbd_plug_and_unplug_on_a_running_guest(x: Any) -> None:
    vm = guest(x, windows=False)
    vbd = new_disk(x, vm)
    assert x.VBD.get_userdevice(vbd) == "1"
    assert x.VBD.get_currently_attached(vbd) is False
    assert "plug" in x.VBD.get_allowed_operations(vbd)
    assert fails(x.VBD.unplug, vbd) == ["DEVICE_ALREADY_DETACHED", vbd]

    x.VBD.plug(vbd)
    rec = x.VBD.get_record(vbd)
    assert rec["currently_attached"] is True and rec["device"] == "xvdb"
    assert "plug" not in rec["allowed_operations"] and "unplug" in rec["allowed_operations"]
    assert fails(x.VBD.plug, vbd) == ["DEVICE_ALREADY_ATTACHED", vbd]
    # A plugged disk cannot be destroyed, its VDI not either.
    assert fails(x.VBD.destroy, vbd)[0] == "OPERATION_NOT_ALLOWED"

    x.VBD.unplug(vbd)
    assert x.VBD.get_currently_attached(vbd) is False
    x.VBD.destroy(vbd)


def test_vbd_plug_needs_a_running_vm_and_an_unpluggable_disk_to_unplug(x: Any) -> None:
    vm = guest(x, windows=False)
    boot_disk = x.VM.get_VBDs(vm)[0]
    assert fails(x.VBD.unplug, boot_disk) == ["VBD_NOT_UNPLUGGABLE", boot_disk]

    x.VM.hard_shutdown(vm)
    vbd = new_disk(x, vm)
    assert fails(x.VBD.plug, vbd) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    assert fails(x.VBD.unplug, vbd) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    assert "plug" not in x.VBD.get_allowed_operations(vbd)
    assert "attach" in x.VBD.get_allowed_operations(vbd)


def test_vbd_hotplug_into_an_hvm_guest_needs_its_pv_drivers(slow_farm: Farm) -> None:
    x = login(slow_farm.pools[0].master.url).xenapi
    win = started_from_template(x, "tmpl-win16dc - PATCHED (1)")
    vbd = new_disk(x, win)
    assert fails(x.VBD.plug, vbd) == ["VM_MISSING_PV_DRIVERS", win]
    assert "plug" not in x.VBD.get_allowed_operations(vbd)
    # A PV guest takes the disk while still booting.
    linux = started_from_template(x, "tmpl-cnt7.9")
    pv_disk = new_disk(x, linux)
    x.VBD.plug(pv_disk)
    assert x.VBD.get_currently_attached(pv_disk) is True


def test_hvm_guests_disks_allow_plug_once_its_drivers_are_up() -> None:
    timing = fast_timing(boot_secs={"linux": 1e6, "windows": 0.0})
    with Farm.generate(pools=1, hosts=1, vms_per_host=0, timing=timing) as farm:
        x = login(farm.pools[0].master.url).xenapi
        tpl = x.VM.get_by_name_label("tmpl-win16dc - PATCHED (1)")[0]
        win = x.VM.clone(tpl, "win")
        x.VM.remove_from_other_config(win, "disks")
        x.VM.provision(win)
        x.VM.start(win, True, False)  # paused: the guest has not booted yet
        vbd = new_disk(x, win)
        assert fails(x.VBD.plug, vbd) == ["VM_BAD_POWER_STATE", win, "running", "paused"]
        assert "plug" not in x.VBD.get_allowed_operations(vbd)
        x.VM.unpause(win)
        wait_for(lambda: "plug" in x.VBD.get_allowed_operations(vbd), 10)
        x.VBD.plug(vbd)


def test_hvm_guest_with_drivers_takes_disks_but_not_cd_drives(x: Any) -> None:
    win = guest(x, windows=True)
    vbd = new_disk(x, win)
    x.VBD.plug(vbd)
    assert x.VBD.get_currently_attached(vbd) is True
    cd = new_cd(x, win)
    assert fails(x.VBD.plug, cd) == [
        "OPERATION_NOT_ALLOWED",
        "HVM CDROMs cannot be hotplugged/unplugged, only inserted or ejected"]


def test_vbd_eject_and_insert(x: Any) -> None:
    vm = guest(x, windows=False)
    cd = new_cd(x, vm)
    iso = x.VBD.get_VDI(cd)
    assert "eject" in x.VBD.get_allowed_operations(cd)
    x.VBD.eject(cd)
    rec = x.VBD.get_record(cd)
    assert rec["empty"] is True and rec["VDI"] == "OpaqueRef:NULL"
    assert "eject" not in rec["allowed_operations"] and "insert" in rec["allowed_operations"]
    assert fails(x.VBD.eject, cd) == ["VBD_IS_EMPTY", cd]
    x.VBD.insert(cd, iso)
    assert x.VBD.get_VDI(cd) == iso and x.VBD.get_empty(cd) is False
    assert fails(x.VBD.insert, cd, iso) == ["VBD_NOT_EMPTY", cd]

    disk = x.VM.get_VBDs(vm)[0]
    assert fails(x.VBD.eject, disk) == ["VBD_NOT_REMOVABLE_MEDIA", disk]

    # A halted VM's drive ejects too; a suspended VM's does not.
    x.VM.hard_shutdown(vm)
    x.VBD.eject(cd)
    x.VBD.insert(cd, iso)
    x.VM.start(vm, False, False)
    x.VM.suspend(vm)
    assert fails(x.VBD.eject, cd) == ["VM_BAD_POWER_STATE", vm, "halted, running", "suspended"]


def test_vif_plug_and_unplug(x: Any) -> None:
    vm = guest(x, windows=False)
    vif = new_vif(x, vm, "1")
    assert x.VIF.get_currently_attached(vif) is False
    assert fails(x.VIF.unplug, vif) == ["DEVICE_ALREADY_DETACHED", vif]
    x.VIF.plug(vif)
    assert x.VIF.get_currently_attached(vif) is True
    assert x.VIF.get_allowed_operations(vif) == ["attach", "unplug"]
    assert fails(x.VIF.plug, vif) == ["DEVICE_ALREADY_ATTACHED", vif]
    x.VIF.unplug(vif)
    assert x.VIF.get_currently_attached(vif) is False
    x.VIF.destroy(vif)

    x.VM.hard_shutdown(vm)
    vif = new_vif(x, vm, "2")
    assert fails(x.VIF.plug, vif) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    assert fails(x.VIF.unplug, vif) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    assert x.VIF.get_allowed_operations(vif) == ["attach"]


def test_vif_hotplug_into_an_hvm_guest_needs_its_pv_drivers(slow_farm: Farm) -> None:
    x = login(slow_farm.pools[0].master.url).xenapi
    win = started_from_template(x, "tmpl-win16dc - PATCHED (1)")
    vif = new_vif(x, win, "0")
    assert fails(x.VIF.plug, vif) == ["VM_MISSING_PV_DRIVERS", win]


def test_allowed_vbd_devices(x: Any) -> None:
    vm = guest(x, windows=False)
    free = x.VM.get_allowed_VBD_devices(vm)
    assert free == [str(n) for n in range(1, 255)]
    new_disk(x, vm, userdevice="3")
    assert "3" not in x.VM.get_allowed_VBD_devices(vm)
    assert len(x.VM.get_allowed_VBD_devices(vm)) == 253
    dom0 = next(v for v, r in x.VM.get_all_records().items() if r["is_control_domain"])
    assert x.VM.get_allowed_VBD_devices(dom0) == [str(n) for n in range(256)]
    assert fails(x.VM.get_allowed_VBD_devices, "OpaqueRef:NULL") == [
        "HANDLE_INVALID", "VM", "OpaqueRef:NULL"]


def test_allowed_vif_devices(x: Any) -> None:
    vm = guest(x, windows=False)
    assert x.VM.get_allowed_VIF_devices(vm) == ["1", "2", "3", "4", "5", "6"]
    new_vif(x, vm, "4")
    assert x.VM.get_allowed_VIF_devices(vm) == ["1", "2", "3", "5", "6"]
