"""A VM's whole life through the official client, as dynvm drives it:
clone a template, provision onto the host's SR, start, wait for an address,
shut down, destroy with its disks; the host and SR end as they started."""

from __future__ import annotations

import functools
import re
from typing import Any

import pytest

from dynvm.sim import Farm

from .conftest import fast_timing, login, wait_for


def wait_task(x: Any, task: str, timeout: float = 10.0) -> dict[str, Any]:
    wait_for(lambda: x.task.get_status(task) != "pending", timeout)
    return x.task.get_record(task)


def guest_ip(x: Any, vm: str) -> str | None:
    """The guest's first address, once it has guest metrics and an address."""
    metrics = x.VM.get_guest_metrics(vm)
    return None if metrics == "OpaqueRef:NULL" else x.VM_guest_metrics.get_networks(
        metrics).get("0/ip")


def point_disks_at(x: Any, vm: str, sr_uuid: str) -> None:
    """What `xe vm-install` does: rewrite every sr="" of the disks spec."""
    spec = x.VM.get_other_config(vm)["disks"]
    x.VM.remove_from_other_config(vm, "disks")
    x.VM.add_to_other_config(vm, "disks", re.sub(r'sr="[^"]*"', f'sr="{sr_uuid}"', spec))


def host_state(x: Any, host: str, sr: str) -> tuple[int, int, int]:
    free = int(x.host_metrics.get_memory_free(x.host.get_metrics(host)))
    sr_rec = x.SR.get_record(sr)
    return free, int(sr_rec["physical_utilisation"]), int(sr_rec["virtual_allocation"])


@pytest.mark.parametrize("os_key", ["centos7", "windows"])
def test_clone_provision_start_address_shutdown_destroy(os_key: str) -> None:
    with Farm.generate(pools=1, hosts=2, vms_per_host=1, timing=fast_timing()) as farm:
        session = login(farm.pools[0].master.url)
        x = session.xenapi
        from dynvm.sim.oscatalog import OS_CATALOG

        entry = OS_CATALOG[os_key]
        host = x.host.get_by_name_label("xenhost1-2")[0]
        sr = next(r for r in x.host.get_PBDs(host) for r in [x.PBD.get_SR(r)]
                  if x.SR.get_name_label(r) == "Local storage")
        before = host_state(x, host, sr)

        template = x.VM.get_by_name_label(entry.template_name)[0]
        rec = wait_task(x, x.Async.VM.clone(template, "life-1"))
        assert rec["status"] == "success", rec
        vm = rec["result"][len("<value>"):-len("</value>")]
        assert x.VM.get_is_a_template(vm) is True
        oc = x.VM.get_other_config(vm)
        assert oc["base_template_name"] == entry.template_name
        assert "default_template" not in oc and oc["mac_seed"] != x.VM.get_other_config(
            template)["mac_seed"]

        point_disks_at(x, vm, x.SR.get_uuid(sr))
        x.VM.provision(vm)
        assert x.VM.get_is_a_template(vm) is False
        assert "disks" not in x.VM.get_other_config(vm)
        vbds = x.VM.get_VBDs(vm)
        assert len(vbds) == 1
        vdi = x.VBD.get_VDI(vbds[0])
        assert x.VDI.get_SR(vdi) == sr
        assert int(x.VDI.get_virtual_size(vdi)) == entry.disk_bytes
        network = x.PIF.get_network(next(p for p in x.host.get_PIFs(host)
                                         if x.PIF.get_device(p) == "eth0"))
        x.VIF.create({"device": "0", "network": network, "VM": vm, "MAC": "", "MTU": "1500",
                      "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}})
        assert host_state(x, host, sr)[1] > before[1]

        x.VM.start_on(vm, host, False, True)
        assert x.VM.get_power_state(vm) == "Running"
        assert x.VM.get_resident_on(vm) == host
        needed = int(x.VM.get_memory_static_max(vm)) + int(x.VM.get_memory_overhead(vm))
        assert host_state(x, host, sr)[0] == before[0] - needed

        def address() -> str | None:
            gm = x.VM.get_guest_metrics(vm)
            if gm == "OpaqueRef:NULL":
                return None
            ip = x.VM_guest_metrics.get_networks(gm).get("0/ip")
            return ip if ip and not ip.startswith("169.254.") else None

        ip = wait_for(address)
        assert ip.startswith("127.")
        gm = x.VM.get_guest_metrics(vm)
        osv = x.VM_guest_metrics.get_os_version(gm)
        assert osv["distro"] == entry.distro and osv["name"] == entry.os_name
        assert x.VM_guest_metrics.get_networks(gm)["0/ipv4/0"] == ip

        x.VM.hard_shutdown(vm)
        assert x.VM.get_power_state(vm) == "Halted"
        assert x.VM.get_guest_metrics(vm) == "OpaqueRef:NULL"
        vdis = [x.VBD.get_VDI(b) for b in x.VM.get_VBDs(vm)]
        x.VM.destroy(vm)
        for v in vdis:
            x.VDI.destroy(v)
        assert host_state(x, host, sr) == before
        assert vm not in x.VM.get_all()
        session.xenapi.session.logout()


def test_lease_is_given_back_and_reused() -> None:
    with Farm.generate(pools=1, hosts=1, timing=fast_timing()) as farm:
        x = login(farm.pools[0].master.url).xenapi
        template = x.VM.get_by_name_label("tmpl-deb10.9")[0]
        net = x.PIF.get_network(x.PIF.get_all()[0])
        ips = []
        for i in range(2):
            vm = x.VM.clone(template, f"lease-{i}")
            x.VM.remove_from_other_config(vm, "disks")
            x.VM.provision(vm)
            x.VIF.create({"device": "0", "network": net, "VM": vm, "MAC": "", "MTU": "1500",
                          "other_config": {}, "qos_algorithm_type": "",
                          "qos_algorithm_params": {}})
            x.VM.start(vm, False, False)
            ips.append(wait_for(functools.partial(guest_ip, x, vm), timeout=60))
            x.VM.hard_shutdown(vm)
            x.VM.destroy(vm)
        assert ips[0] == ips[1]
