"""Cross-pool migration with storage motion, as a XenAPI client drives it:
host.migrate_receive on the destination, VM.assert_can_migrate and
VM.migrate_send on the source."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from dynvm.sim import Farm

from .conftest import fast_timing, login, wait_for
from .test_conformance_ops import details
from .test_maintenance_ops import free_mem, guests


@pytest.fixture
def two() -> Iterator[tuple[Farm, Any, Any]]:
    with Farm.generate(pools=2, hosts=2, vms_per_host=1, timing=fast_timing()) as farm:
        a, b = login(farm.pools[0].master.url), login(farm.pools[1].master.url)
        yield farm, a.xenapi, b.xenapi
        for s in (a, b):
            s.xenapi.session.logout()


def _landing(xb: Any, host: str) -> tuple[str, str]:
    """(guests' network, the host's local SR) in the destination pool."""
    net = next(p for p in (xb.PIF.get_record(r) for r in xb.host.get_PIFs(host))
               if p["management"])["network"]
    sr = next(xb.PBD.get_SR(p) for p in xb.host.get_PBDs(host)
              if xb.SR.get_name_label(xb.PBD.get_SR(p)) == "Local storage")
    return net, sr


def _maps(xa: Any, vm: str, sr: str, net: str) -> tuple[dict[str, str], dict[str, str]]:
    disks = [xa.VBD.get_VDI(b) for b in xa.VM.get_VBDs(vm) if xa.VBD.get_type(b) == "Disk"]
    return {d: sr for d in disks}, {v: net for v in xa.VM.get_VIFs(vm)}


def _used(x: Any, sr: str) -> int:
    return int(x.SR.get_physical_utilisation(sr))


def test_a_running_vm_moves_to_another_pool_with_its_disks(two: tuple[Farm, Any, Any]) -> None:
    farm, xa, xb = two
    src = farm.pools[0].hosts[0].ref
    dst = farm.pools[1].hosts[1].ref
    vm = guests(xa, src)[0]
    rec = xa.VM.get_record(vm)
    xa.VM.add_to_other_config(vm, "dynvm_fleet", "agent")
    macs = sorted(xa.VIF.get_MAC(v) for v in rec["VIFs"])
    disks = [xa.VBD.get_VDI(b) for b in rec["VBDs"] if xa.VBD.get_type(b) == "Disk"]
    old_sr = xa.VDI.get_SR(disks[0])
    net, sr = _landing(xb, dst)
    vdi_map, vif_map = _maps(xa, vm, sr, net)
    need = int(rec["memory_static_max"])
    before = (free_mem(xa, src), free_mem(xb, dst), _used(xa, old_sr), _used(xb, sr))
    size = sum(int(xa.VDI.get_physical_utilisation(d)) for d in disks)
    networks = xa.VM_guest_metrics.get_networks(rec["guest_metrics"])
    assert networks

    token = xb.host.migrate_receive(dst, net, {})
    assert sorted(token) == ["SM", "host", "master", "session_id", "xenops"]
    assert token["host"] == dst and token["master"] == f"{farm.pools[1].master.url}/"
    xa.VM.assert_can_migrate(vm, token, True, vdi_map, vif_map, {}, {})
    task = xa.Async.VM.migrate_send(vm, token, True, vdi_map, vif_map, {}, {})
    wait_for(lambda: xa.task.get_status(task) != "pending")
    assert xa.task.get_status(task) == "success", xa.task.get_error_info(task)
    new = xa.task.get_result(task).replace("<value>", "").replace("</value>", "")

    # Gone from the source, disks and memory given back.
    assert details(xa.VM.get_by_uuid, rec["uuid"]) == ["UUID_INVALID", "VM", rec["uuid"]]
    assert not set(disks) & set(xa.VDI.get_all())
    assert (free_mem(xa, src), _used(xa, old_sr)) == (before[0] + need, before[2] - size)
    # There with its identity, sizes and guest; disks on the SR, VIFs on the network.
    there = xb.VM.get_record(new)
    assert xb.VM.get_by_uuid(rec["uuid"]) == new
    assert (there["power_state"], there["resident_on"]) == ("Running", dst)
    assert there["other_config"]["dynvm_fleet"] == "agent"
    assert (there["name_label"], there["VCPUs_max"], there["memory_static_max"]) == (
        rec["name_label"], rec["VCPUs_max"], rec["memory_static_max"])
    assert [xb.VDI.get_SR(xb.VBD.get_VDI(b)) for b in there["VBDs"]
            if xb.VBD.get_type(b) == "Disk"] == [sr] * len(disks)
    assert {xb.VIF.get_network(v) for v in there["VIFs"]} == {net}
    assert sorted(xb.VIF.get_MAC(v) for v in there["VIFs"]) == macs
    assert xb.VM_guest_metrics.get_networks(there["guest_metrics"]) == networks  # same address
    assert (free_mem(xb, dst), _used(xb, sr)) == (before[1] - need, before[3] + size)
    # It runs on there as any VM of that pool: shut down, started again.
    xb.VM.clean_shutdown(new)
    assert free_mem(xb, dst) == before[1]
    xb.VM.start_on(new, dst, False, False)


def test_xapi_s_refusals(two: tuple[Farm, Any, Any]) -> None:
    farm, xa, xb = two
    src, dst = farm.pools[0].hosts[0].ref, farm.pools[1].hosts[0].ref
    vm = guests(xa, src)[0]
    net, sr = _landing(xb, dst)
    vdi_map, vif_map = _maps(xa, vm, sr, net)
    token = xb.host.migrate_receive(dst, net, {})
    vif = next(iter(vif_map))
    assert details(xa.VM.assert_can_migrate, vm, token, True, vdi_map, {}, {}, {}) == \
        ["VIF_NOT_IN_MAP", vif]
    vdi = next(iter(vdi_map))
    assert details(xa.VM.migrate_send, vm, token, True, {}, vif_map, {}, {}) == \
        ["VDI_NOT_IN_MAP", vdi]
    # Another CPU vendor there: a live move is refused, as XAPI refuses it.
    pool2 = farm.pools[1].db
    cpu = dict(pool2.get("host", dst)["cpu_info"])
    pool2.modify("host", dst, {"cpu_info": {**cpu, "vendor": "AuthenticAMD"}})
    assert details(xa.VM.migrate_send, vm, token, True, vdi_map, vif_map, {}, {}) == [
        "VM_INCOMPATIBLE_WITH_THIS_HOST", vm, dst,
        "VM last booted on a host which had a CPU from a different vendor."]
    pool2.modify("host", dst, {"cpu_info": cpu})
    xb.host.disable(dst)
    assert details(xa.VM.migrate_send, vm, token, True, vdi_map, vif_map, {}, {}) == \
        ["HOST_DISABLED", dst]
    xb.host.enable(dst)
    farm.set_unreachable(farm.pools[1].master.name_label)
    address = farm.pools[1].master.address
    assert details(xa.VM.assert_can_migrate, vm, token, True, vdi_map, vif_map, {}, {}) == \
        ["CANNOT_CONTACT_HOST", address]
    farm.set_unreachable(farm.pools[1].master.name_label, False)
    assert details(xb.host.migrate_receive, dst, xb.network.get_all()[1], {})[0] in (
        "INTERFACE_HAS_NO_IP", "HOST_CANNOT_ATTACH_NETWORK")
    # Nothing moved through all this.
    assert xa.VM.get_resident_on(vm) == src and xa.VM.get_current_operations(vm) == {}


def test_a_move_that_fails_midway_leaves_the_vm_where_it_was(
        two: tuple[Farm, Any, Any]) -> None:
    farm, xa, xb = two
    src, dst = farm.pools[0].hosts[0].ref, farm.pools[1].hosts[0].ref
    vm = guests(xa, src)[0]
    uuid = xa.VM.get_uuid(vm)
    net, sr = _landing(xb, dst)
    vdi_map, vif_map = _maps(xa, vm, sr, net)
    before = (len(xb.VDI.get_all()), free_mem(xb, dst), _used(xb, sr), free_mem(xa, src))
    # Held after its disk was copied, then the destination stops answering.
    hold = farm.hold("SR.scan")
    token = xb.host.migrate_receive(dst, net, {})
    task = xa.Async.VM.migrate_send(vm, token, True, vdi_map, vif_map, {}, {})
    assert hold.reached.wait(30)
    assert xa.VM.get_current_operations(vm) == {task: "migrate_send"}
    assert (xa.VM.get_power_state(vm), xa.VM.get_resident_on(vm)) == ("Running", src)
    assert details(xb.VM.get_by_uuid, uuid)[0] == "UUID_INVALID"  # not there yet
    assert len(xb.VDI.get_all()) == before[0] + len(vdi_map)  # its copy is being made
    assert details(xa.VM.clean_shutdown, vm)[0] == "OTHER_OPERATION_IN_PROGRESS"
    farm.set_unreachable(farm.pools[1].master.name_label)
    hold.release()
    wait_for(lambda: xa.task.get_status(task) != "pending")
    assert xa.task.get_status(task) == "failure"
    assert xa.task.get_error_info(task)[0] == "CANNOT_CONTACT_HOST"
    farm.set_unreachable(farm.pools[1].master.name_label, False)
    xb = login(farm.pools[1].master.url).xenapi  # its listener was closed meanwhile
    assert (xa.VM.get_power_state(vm), xa.VM.get_resident_on(vm)) == ("Running", src)
    assert xa.VM.get_current_operations(vm) == {} and free_mem(xa, src) == before[3]
    assert details(xb.VM.get_by_uuid, uuid)[0] == "UUID_INVALID"
    assert (len(xb.VDI.get_all()), free_mem(xb, dst), _used(xb, sr)) == before[:3]
    # A cancelled move leaves it too; the next one goes through.
    hold = farm.hold("SR.scan")
    token = xb.host.migrate_receive(dst, net, {})
    task = xa.Async.VM.migrate_send(vm, token, True, vdi_map, vif_map, {}, {})
    assert hold.reached.wait(30)
    xa.task.cancel(task)
    hold.release()
    wait_for(lambda: xa.task.get_status(task) != "pending")
    assert xa.task.get_status(task) == "cancelled"
    assert xa.VM.get_resident_on(vm) == src and len(xb.VDI.get_all()) == before[0]
    new = xa.VM.migrate_send(vm, xb.host.migrate_receive(dst, net, {}), True, vdi_map,
                             vif_map, {}, {})
    assert xb.VM.get_uuid(new) == uuid and details(xa.VM.get_by_uuid, uuid)[0] == "UUID_INVALID"
    with pytest.raises(XenAPI.Failure):
        xa.VM.get_record(vm)
