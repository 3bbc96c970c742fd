"""XAPI's allowed-operation rules for VM, VDI, VBD and VIF operations, one test
per rule, through the official XenAPI client. Where a state cannot be reached
through the API (an unmanaged VDI, an unplugged PBD), the test sets it up in
the farm's database first: the check under test still runs over the wire."""

from __future__ import annotations

from typing import Any

from dynvm.sim import Farm

from .conftest import fast_timing, login, wait_for
from .test_conformance_ops import details, new_vm

NULL = "OpaqueRef:NULL"


def local_sr(x: Any, host: str) -> str:
    return next(s for s, r in x.SR.get_all_records().items()
                if r["name_label"] == "Local storage"
                and any(x.PBD.get_host(p) == host for p in r["PBDs"]))


def vm_with_disk(farm: Farm, x: Any, name: str) -> tuple[str, str, str]:
    host = farm.pools[0].master.ref
    sr = local_sr(x, host)
    vm = new_vm(x, name, sr=x.SR.get_uuid(sr))
    return vm, x.VBD.get_VDI(x.VM.get_VBDs(vm)[0]), sr


def setup(farm: Farm, cls: str, ref: str, **fields: Any) -> None:
    """Put a record in a state the API cannot reach."""
    farm.pools[0].db.modify(cls, ref, fields)


# --------------------------------------------------------------------- VDI
def test_vm_uninstall_as_xe_does_it(farm: Farm, x: Any) -> None:
    """`xe vm-uninstall`: hard shutdown, VDI.destroy of each disk, VM.destroy."""
    vm, _, sr = vm_with_disk(farm, x, "uninstall-me")
    counts = {c: len(getattr(x, c).get_all()) for c in ("VM", "VBD", "VDI", "VIF", "VM_metrics")}
    used = int(x.SR.get_physical_utilisation(sr))
    x.VM.start_on(vm, farm.pools[0].master.ref, False, False)
    vbds, vifs = x.VM.get_VBDs(vm), x.VM.get_VIFs(vm)
    disks = [x.VBD.get_VDI(b) for b in vbds if x.VBD.get_type(b) == "Disk"]
    sizes = sum(int(x.VDI.get_physical_utilisation(d)) for d in disks)
    x.VM.hard_shutdown(vm)
    for vdi in disks:
        x.VDI.destroy(vdi)
    assert x.VM.get_VBDs(vm) == []  # xapi removes the disks' VBDs with them
    x.VM.destroy(vm)
    assert vm not in x.VM.get_all()
    assert not set(vbds) & set(x.VBD.get_all()) and not set(vifs) & set(x.VIF.get_all())
    assert {c: len(getattr(x, c).get_all()) for c in counts} == {
        "VM": counts["VM"] - 1, "VBD": counts["VBD"] - len(vbds),
        "VDI": counts["VDI"] - len(disks), "VIF": counts["VIF"] - len(vifs),
        "VM_metrics": counts["VM_metrics"] - 1}
    assert int(x.SR.get_physical_utilisation(sr)) == used - sizes


def test_vdi_in_use_only_while_attached(farm: Farm, x: Any) -> None:
    vm, vdi, _ = vm_with_disk(farm, x, "attached")
    x.VM.start_on(vm, farm.pools[0].master.ref, False, False)
    assert details(x.VDI.destroy, vdi) == ["VDI_IN_USE", vdi, "destroy"]
    x.VM.pause(vm)  # a paused domain still holds its disks
    assert details(x.VDI.destroy, vdi) == ["VDI_IN_USE", vdi, "destroy"]
    x.VM.hard_shutdown(vm)
    x.VDI.destroy(vdi)
    assert x.VM.get_VBDs(vm) == []


def test_vdi_destroy_other_operation_in_progress(farm: Farm, x: Any) -> None:
    vm, vdi, _ = vm_with_disk(farm, x, "busy")
    setup(farm, "VDI", vdi, current_operations={"OpaqueRef:t": "snapshot"})
    assert details(x.VDI.destroy, vdi) == ["OTHER_OPERATION_IN_PROGRESS", "VDI", vdi]
    setup(farm, "VDI", vdi, current_operations={})
    setup(farm, "VBD", x.VM.get_VBDs(vm)[0], current_operations={"OpaqueRef:t": "plug"})
    assert details(x.VDI.destroy, vdi) == ["OTHER_OPERATION_IN_PROGRESS", "VDI", vdi]


def test_vdi_destroy_storage_rules(farm: Farm, x: Any) -> None:
    _, vdi, sr = vm_with_disk(farm, x, "storage")
    sm = next(m for m, r in x.SM.get_all_records().items() if r["type"] == "ext")
    caps = x.SM.get_capabilities(sm)
    setup(farm, "SM", sm, capabilities=[c for c in caps if c != "VDI_DELETE"])
    assert details(x.VDI.destroy, vdi) == ["SR_OPERATION_NOT_SUPPORTED", sr]
    setup(farm, "SM", sm, capabilities=caps)
    setup(farm, "SR", sr, is_tools_sr=True)
    assert details(x.VDI.destroy, vdi) == ["SR_OPERATION_NOT_SUPPORTED", sr]
    setup(farm, "SR", sr, is_tools_sr=False)
    (pbd,) = x.SR.get_PBDs(sr)
    setup(farm, "PBD", pbd, currently_attached=False)
    assert details(x.VDI.destroy, vdi) == ["SR_HAS_NO_PBDS", sr]
    setup(farm, "PBD", pbd, currently_attached=True)
    setup(farm, "VDI", vdi, managed=False)
    assert details(x.VDI.destroy, vdi) == ["VDI_NOT_MANAGED", vdi]
    setup(farm, "VDI", vdi, managed=True)
    setup(farm, "SR", sr, type="udev")
    assert details(x.VDI.destroy, vdi) == ["VDI_IS_A_PHYSICAL_DEVICE", vdi]
    setup(farm, "SR", sr, type="ext")
    x.VDI.destroy(vdi)


def test_vdi_resize_rules_in_xapis_order(farm: Farm, x: Any) -> None:
    """Another VDI operation, then no plugged PBD, then a VBD in use, then a
    VBD busy, then an SR that cannot resize."""
    vm, vdi, sr = vm_with_disk(farm, x, "resize-me")
    size = str(int(x.VDI.get_virtual_size(vdi)) + (1 << 20))
    (pbd,) = x.SR.get_PBDs(sr)
    (vbd,) = x.VM.get_VBDs(vm)
    x.VM.start_on(vm, farm.pools[0].master.ref, False, False)
    setup(farm, "VDI", vdi, current_operations={"OpaqueRef:t": "snapshot"})
    setup(farm, "PBD", pbd, currently_attached=False)
    assert details(x.VDI.resize, vdi, size) == ["OTHER_OPERATION_IN_PROGRESS", "VDI", vdi]
    setup(farm, "VDI", vdi, current_operations={})
    assert details(x.VDI.resize, vdi, size) == ["SR_NO_PBDS", sr]
    setup(farm, "PBD", pbd, currently_attached=True)
    assert details(x.VDI.resize, vdi, size) == ["VDI_IN_USE", vdi, "resize"]
    x.VM.hard_shutdown(vm)
    setup(farm, "VBD", vbd, current_operations={"OpaqueRef:t": "plug"})
    allowed = x.SR.get_allowed_operations(sr)
    setup(farm, "SR", sr, allowed_operations=[o for o in allowed if o != "vdi_resize"])
    assert details(x.VDI.resize, vdi, size) == ["OTHER_OPERATION_IN_PROGRESS", "VDI", vdi]
    setup(farm, "VBD", vbd, current_operations={})
    assert details(x.VDI.resize, vdi, size) == ["SR_OPERATION_NOT_SUPPORTED", sr]
    setup(farm, "SR", sr, allowed_operations=allowed)
    x.VDI.resize(vdi, size)
    assert x.VDI.get_virtual_size(vdi) == size


def test_vdi_create_needs_a_capable_plugged_sr(farm: Farm, x: Any) -> None:
    sr = local_sr(x, farm.pools[0].master.ref)
    rec = {"name_label": "new", "SR": sr, "virtual_size": "1048576", "type": "user",
           "sharable": False, "read_only": False, "other_config": {}}
    sm = next(m for m, r in x.SM.get_all_records().items() if r["type"] == "ext")
    caps = x.SM.get_capabilities(sm)
    setup(farm, "SM", sm, capabilities=[c for c in caps if c != "VDI_CREATE"])
    assert details(x.VDI.create, rec) == ["SR_OPERATION_NOT_SUPPORTED", sr]
    setup(farm, "SM", sm, capabilities=caps)
    (pbd,) = x.SR.get_PBDs(sr)
    setup(farm, "PBD", pbd, currently_attached=False)
    assert details(x.VDI.create, rec) == ["SR_HAS_NO_PBDS", sr]
    setup(farm, "PBD", pbd, currently_attached=True)
    vdi = x.VDI.create(rec)
    assert x.VDI.get_managed(vdi) is True


def test_ha_statefile_kept_while_ha_is_on(farm: Farm, x: Any) -> None:
    pool = x.pool.get_all()[0]
    x.pool.enable_ha(x.SR.get_by_name_label("HA heartbeat"), {"timeout": "180"})
    (statefile,) = x.pool.get_ha_statefiles(pool)
    assert details(x.VDI.destroy, statefile) == ["HA_IS_ENABLED"]
    x.pool.disable_ha()
    x.VDI.destroy(statefile)


# --------------------------------------------------------------- VBD / VIF
def test_vbd_and_vif_destroy_only_when_unplugged(farm: Farm, x: Any) -> None:
    vm, _, _ = vm_with_disk(farm, x, "devices")
    x.VM.start_on(vm, farm.pools[0].master.ref, False, False)
    vbd, vif = x.VM.get_VBDs(vm)[0], x.VM.get_VIFs(vm)[0]
    vm_uuid = x.VM.get_uuid(vm)
    assert details(x.VBD.destroy, vbd) == [
        "OPERATION_NOT_ALLOWED", f"VBD '{x.VBD.get_uuid(vbd)}' still attached to '{vm_uuid}'"]
    assert details(x.VIF.destroy, vif) == [
        "OPERATION_NOT_ALLOWED", f"VIF '{x.VIF.get_uuid(vif)}' still attached to '{vm_uuid}'"]
    x.VM.hard_shutdown(vm)
    x.VBD.destroy(vbd)
    x.VIF.destroy(vif)
    assert x.VM.get_VBDs(vm) == [] and x.VM.get_VIFs(vm) == []


def vbd_record(vm: str, vdi: str, **over: Any) -> dict[str, Any]:
    rec = {"VM": vm, "VDI": vdi, "userdevice": "1", "bootable": False, "mode": "RW",
           "type": "Disk", "unpluggable": True, "empty": False, "other_config": {},
           "qos_algorithm_type": "", "qos_algorithm_params": {}}
    rec.update(over)
    return rec


def test_vbd_create_rules(farm: Farm, x: Any) -> None:
    vm, vdi, sr = vm_with_disk(farm, x, "vbds")
    spare = x.VDI.create({"name_label": "spare", "SR": sr, "virtual_size": "1048576",
                          "type": "user", "sharable": False, "read_only": False,
                          "other_config": {}})
    assert details(x.VBD.create, vbd_record(vm, NULL, type="CD", mode="RW", empty=True)) == [
        "VBD_CDS_MUST_BE_READONLY"]
    assert details(x.VBD.create, vbd_record(vm, NULL, empty=True))[0] == "VBD_NOT_REMOVABLE_MEDIA"
    assert details(x.VBD.create, vbd_record(vm, spare, userdevice="xvdz")) == [
        "INVALID_DEVICE", "xvdz"]
    taken = x.VBD.get_userdevice(x.VM.get_VBDs(vm)[0])
    assert details(x.VBD.create, vbd_record(vm, spare, userdevice=taken)) == [
        "DEVICE_ALREADY_EXISTS", taken]
    x.pool.enable_ha(x.SR.get_by_name_label("HA heartbeat"), {})
    (statefile,) = x.pool.get_ha_statefiles(x.pool.get_all()[0])
    assert details(x.VBD.create, vbd_record(vm, statefile)) == [
        "VDI_INCOMPATIBLE_TYPE", statefile, "ha_statefile"]
    x.VM.start_on(vm, farm.pools[0].master.ref, False, False)
    vbd = x.VBD.create(vbd_record(vm, spare, userdevice="autodetect"))
    assert x.VBD.get_userdevice(vbd) not in ("autodetect", taken)
    assert x.VBD.get_currently_attached(vbd) is False  # plugging is a separate step
    x.VDI.destroy(spare)  # its VBD was never plugged: the disk is not in use
    assert vbd not in x.VBD.get_all()


def test_vif_create_rules(farm: Farm, x: Any) -> None:
    vm, _, _ = vm_with_disk(farm, x, "vifs")
    net = x.VIF.get_network(x.VM.get_VIFs(vm)[0])

    def vif(device: str, mac: str = "") -> dict[str, Any]:
        return {"device": device, "network": net, "VM": vm, "MAC": mac, "MTU": "1500",
                "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}}

    assert details(x.VIF.create, vif("eth1")) == ["INVALID_DEVICE", "eth1"]
    assert details(x.VIF.create, vif("0")) == ["DEVICE_ALREADY_EXISTS", "0"]
    assert details(x.VIF.create, vif("1", "not-a-mac")) == ["MAC_INVALID", "not-a-mac"]
    x.VM.start_on(vm, farm.pools[0].master.ref, False, False)
    ref = x.VIF.create(vif("1", "02:00:00:00:00:01"))
    assert x.VIF.get_currently_attached(ref) is False


# ---------------------------------------------------------------------- VM
def test_other_operation_in_progress_names_it() -> None:
    timing = fast_timing(clone_secs={"linux": 1e9, "windows": 1e9})
    with Farm.generate(pools=1, hosts=1, timing=timing) as farm:
        x = login(farm.pools[0].master.url).xenapi
        tpl = x.VM.get_by_name_label("tmpl-cnt7.7")[0]
        first = x.Async.VM.clone(tpl, "a")
        wait_for(lambda: list(x.VM.get_current_operations(tpl).values()) == ["clone"])
        second = x.Async.VM.clone(tpl, "b")  # long copies may overlap
        wait_for(lambda: len(x.VM.get_current_operations(tpl)) == 2)
        assert details(x.VM.destroy, tpl) == [
            "OTHER_OPERATION_IN_PROGRESS", "VM", tpl, "clone", first]
        x.task.cancel(first)
        wait_for(lambda: list(x.VM.get_current_operations(tpl)) == [second])
        assert details(x.VM.destroy, tpl) == [
            "OTHER_OPERATION_IN_PROGRESS", "VM", tpl, "clone", second]
        x.task.cancel(second)
        wait_for(lambda: x.VM.get_current_operations(tpl) == {})


def test_snapshot_rules(farm: Farm, x: Any) -> None:
    vm = new_vm(x, "snap")
    setup(farm, "VM", vm, is_a_snapshot=True)
    assert details(x.VM.start, vm, False, False) == ["VM_IS_SNAPSHOT", vm, "start"]
    clone = x.VM.clone(vm, "from-snapshot")
    assert x.VM.get_is_a_snapshot(clone) is False
    x.VM.destroy(vm)


def test_default_template_flag_values(farm: Farm, x: Any) -> None:
    tpl = x.VM.clone(x.VM.get_by_name_label("tmpl-cnt7.7")[0], "custom")  # a template too
    x.VM.add_to_other_config(tpl, "default_template", "1")
    assert details(x.VM.destroy, tpl) == ["VM_IS_TEMPLATE", tpl, "destroy"]
    x.VM.remove_from_other_config(tpl, "default_template")
    x.VM.destroy(tpl)


def test_control_domain_rules(farm: Farm, x: Any) -> None:
    dom0 = x.host.get_control_domain(farm.pools[0].master.ref)
    assert details(x.VM.pause, dom0) == [
        "OPERATION_NOT_ALLOWED", "This operation is not allowed on a control domain"]
    assert details(x.VM.set_VCPUs_max, dom0, 2) == [
        "OPERATION_NOT_ALLOWED", "This operation is not allowed on dom0"]
    assert details(x.VM.destroy, dom0) == ["VM_BAD_POWER_STATE", dom0, "halted, suspended",
                                           "running"]


def test_immobile_vm_needs_force(farm: Farm, x: Any) -> None:
    src, dst = (h.ref for h in farm.pools[0].hosts)
    vm = new_vm(x, "pinned")
    x.VM.add_to_platform(vm, "nomigrate", "true")
    x.VM.start_on(vm, src, False, False)
    assert details(x.VM.pool_migrate, vm, dst, {}) == ["VM_IS_IMMOBILE", vm]
    x.VM.pool_migrate(vm, dst, {"force": "true"})
    assert x.VM.get_resident_on(vm) == dst


def test_passthrough_devices_block_migration(farm: Farm, x: Any) -> None:
    src, dst = (h.ref for h in farm.pools[0].hosts)
    vm = new_vm(x, "devices")
    x.VM.start_on(vm, src, False, False)
    for field, code in (("attached_PCIs", "VM_HAS_PCI_ATTACHED"), ("VGPUs", "VM_HAS_VGPU"),
                        ("VUSBs", "VM_HAS_VUSBS")):
        setup(farm, "VM", vm, **{field: ["OpaqueRef:device"]})
        assert details(x.VM.pool_migrate, vm, dst, {}) == [code, vm]
        setup(farm, "VM", vm, **{field: []})


def test_appliance_member_cannot_become_a_template(farm: Farm, x: Any) -> None:
    vm = new_vm(x, "in-appliance")
    setup(farm, "VM", vm, appliance="OpaqueRef:appliance")
    assert details(x.VM.set_is_a_template, vm, True) == [
        "VM_IS_PART_OF_AN_APPLIANCE", vm, "OpaqueRef:appliance"]
