"""The built VM has the vCPUs, memory and system disk it was counted for,
whatever its template says: the provisioning spec is grown, a template's real
disk is grown with VDI.resize (never shrunk), and XAPI's resize rules hold."""

from __future__ import annotations

import dataclasses

import pytest
import XenAPI

from dynvm.core.ports import VmBuild
from dynvm.sim import Farm
from dynvm.xen.pool import XenPoolClient
from tests.xen.conftest import LINUX_TEMPLATE, count_of
from tests.xen.test_build import spec

GIB = 1 << 30


def system_disk_size(x: XenAPI.Session, vm_uuid: str) -> int:
    xa = x.xenapi
    ref = xa.VM.get_by_uuid(vm_uuid)
    sizes = [(not xa.VBD.get_bootable(b), xa.VBD.get_userdevice(b),
              int(xa.VDI.get_virtual_size(xa.VBD.get_VDI(b))))
             for b in xa.VM.get_VBDs(ref) if xa.VBD.get_type(b) == "Disk"]
    return min(sizes)[2]


def sizes_of(x: XenAPI.Session, vm_uuid: str) -> tuple[int, int, int, int, int]:
    xa = x.xenapi
    r = xa.VM.get_record(xa.VM.get_by_uuid(vm_uuid))
    return (int(r["VCPUs_max"]), int(r["VCPUs_at_startup"]), int(r["memory_static_max"]),
            int(r["memory_dynamic_max"]), system_disk_size(x, vm_uuid))


def sized(client: XenPoolClient, name: str, template: str = LINUX_TEMPLATE, *,
          vcpus: int, memory: int, disk: int) -> VmBuild:
    return dataclasses.replace(spec(client, name, template=template, vcpus=vcpus,
                                    memory=memory), disk_bytes=disk)


def test_provisioning_spec_sizes_the_built_vm(fresh_client: XenPoolClient,
                                               truth: XenAPI.Session) -> None:
    vm = fresh_client.build(sized(fresh_client, "sz-spec", vcpus=3, memory=3 * GIB,
                                  disk=50 * GIB))
    assert sizes_of(truth, vm.uuid) == (3, 3, 3 * GIB, 3 * GIB, 50 * GIB)
    fresh_client.destroy(vm.uuid)


def test_smaller_size_than_the_template_disk_never_shrinks(fresh_client: XenPoolClient,
                                                            truth: XenAPI.Session) -> None:
    vm = fresh_client.build(sized(fresh_client, "sz-small", vcpus=1, memory=1 * GIB,
                                  disk=10 * GIB))
    assert sizes_of(truth, vm.uuid) == (1, 1, GIB, GIB, 35 * GIB)  # the template's 35 GiB
    fresh_client.destroy(vm.uuid)


def make_disk_template(x: XenAPI.Session, name: str, disk: int) -> str:
    """A template that owns a real disk of `disk` bytes (as a golden image would)."""
    xa = x.xenapi
    base = xa.VM.get_by_name_label(LINUX_TEMPLATE)[0]
    vm = xa.VM.clone(base, name)
    sr = [r for r, s in xa.SR.get_all_records().items() if s["name_label"] == "Local storage"][0]
    sr_uuid = xa.SR.get_uuid(sr)
    xa.VM.remove_from_other_config(vm, "disks")
    xa.VM.add_to_other_config(
        vm, "disks", f'<provision><disk device="0" size="{disk}" sr="{sr_uuid}" '
                     'bootable="true" type="system"/></provision>')
    xa.VM.provision(vm)
    xa.VM.set_is_a_template(vm, True)
    return vm


def test_template_disk_is_grown_with_vdi_resize(fresh_farm: Farm, fresh_client: XenPoolClient,
                                                truth: XenAPI.Session) -> None:
    tmpl = make_disk_template(truth, "golden-8g", 8 * GIB)
    tmpl_vdi = truth.xenapi.VBD.get_VDI(truth.xenapi.VM.get_VBDs(tmpl)[0])
    before = count_of(fresh_farm, "VDI.resize")
    vm = fresh_client.build(sized(fresh_client, "sz-golden", "golden-8g", vcpus=2,
                                  memory=2 * GIB, disk=35 * GIB))
    assert sizes_of(truth, vm.uuid) == (2, 2, 2 * GIB, 2 * GIB, 35 * GIB)
    assert count_of(fresh_farm, "VDI.resize") == before + 1
    assert int(truth.xenapi.VDI.get_virtual_size(tmpl_vdi)) == 8 * GIB  # template untouched
    fresh_client.destroy(vm.uuid)
    # big enough already: no resize at all
    vm = fresh_client.build(sized(fresh_client, "sz-golden2", "golden-8g", vcpus=2,
                                  memory=2 * GIB, disk=8 * GIB))
    assert system_disk_size(truth, vm.uuid) == 8 * GIB
    assert count_of(fresh_farm, "VDI.resize") == before + 1
    fresh_client.destroy(vm.uuid)


def test_vdi_resize_follows_xapi_rules(fresh_farm: Farm, truth: XenAPI.Session) -> None:
    xa = truth.xenapi
    tmpl = make_disk_template(truth, "golden-rules", 8 * GIB)
    vdi = xa.VBD.get_VDI(xa.VM.get_VBDs(tmpl)[0])
    xa.VDI.resize(vdi, str(9 * GIB))
    assert int(xa.VDI.get_virtual_size(vdi)) == 9 * GIB
    with pytest.raises(XenAPI.Failure) as info:
        xa.VDI.resize(vdi, str(4 * GIB))
    assert info.value.details[0].startswith("SR_BACKEND_FAILURE")
    assert int(xa.VDI.get_virtual_size(vdi)) == 9 * GIB
    # a running VM's disk is attached: resize (offline) is refused
    running = xa.VM.clone(tmpl, "golden-running")
    xa.VM.provision(running)
    xa.VM.start(running, False, True)
    disk = next(xa.VBD.get_VDI(b) for b in xa.VM.get_VBDs(running)
                if xa.VBD.get_type(b) == "Disk")
    size = int(xa.VDI.get_virtual_size(disk))
    with pytest.raises(XenAPI.Failure) as info:
        xa.VDI.resize(disk, str(size + GIB))
    assert info.value.details == ["VDI_IN_USE", disk, "resize"]
    with pytest.raises(XenAPI.Failure) as info:
        xa.VDI.resize("OpaqueRef:NULL", str(GIB))
    assert info.value.details[0] == "HANDLE_INVALID"
    xa.VM.hard_shutdown(running)
    xa.VDI.resize(disk, str(size + GIB))  # halted: its VBD is detached, so it works
    assert int(xa.VDI.get_virtual_size(disk)) == size + GIB
