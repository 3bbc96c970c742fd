"""Generated pools: realistic, consistent, and the arithmetic adds up."""

from __future__ import annotations

import ipaddress
import re

import pytest

from dynvm.sim import datamodel as dm
from dynvm.sim.dbload import pool_summary
from dynvm.sim.farmgen import DHCP_KEY, OS_KEY, dhcp_range, generate_pool
from dynvm.sim.oscatalog import GIB, OS_CATALOG, by_template_name


@pytest.fixture(scope="module")
def pool() -> dm.Tables:
    return generate_pool("pool1", 3, 4, seed=7)


def _ip_range(text: str) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    lo, hi = text.split("-")
    return ipaddress.IPv4Address(lo), ipaddress.IPv4Address(hi)


def test_catalog():
    assert set(OS_CATALOG) == {"centos", "centos7", "centos8", "windows", "debian10", "ubuntu18",
                               "oel8", "suse15"}
    assert OS_CATALOG["windows"].template_name == "tmpl-win16dc - PATCHED (1)"
    assert OS_CATALOG["centos"].template_name == "tmpl-cnt7.7"
    assert OS_CATALOG["suse15"].template_name == "tmpl-sles15sp2"
    for os_ in OS_CATALOG.values():
        sizes = (os_.vcpus, os_.memory_gib, os_.disk_gib)
        assert sizes == ((12, 6, 71) if os_.windows else (8, 4, 35))
        assert by_template_name(os_.template_name) is os_
        osv = os_.os_version()
        assert osv["name"] and osv["distro"] and osv["major"]
        assert ("uname" in osv) is (not os_.windows)
    assert by_template_name("nope") is None


def test_counts(pool):
    assert pool_summary(pool) == {
        "name": "pool1", "master": "xenhost1-1", "hosts": 3, "vms": 12, "running_vms": 12,
        "templates": len(OS_CATALOG), "snapshots": 0, "srs": 5,
    }
    assert len(pool["host_cpu"]) == 3 * 48
    assert len(pool["network"]) == 2
    assert len(pool["PIF"]) == 3 * 2
    assert [h["name_label"] for h in pool["host"].values()] == ["xenhost1-1", "xenhost1-2", "xenhost1-3"]


def test_every_record_complete_and_native(pool):
    assert set(pool) == set(dm.CLASSES)
    for cls, rows in pool.items():
        fields = dm.CLASSES[cls].fields
        for rec in rows.values():
            assert set(rec) == set(fields), cls
            for name, value in rec.items():
                assert dm.coerce(fields[name].type, value) == value, (cls, name, value)
                assert type(dm.coerce(fields[name].type, value)) is type(value), (cls, name)


def test_every_ref_resolves(pool):
    assert dm.dangling_refs(pool) == []


def test_derived_sets_agree_with_foreign_keys(pool):
    before = {(cls, ref, f): list(pool[cls][ref][f]) for (cls, f) in dm.RELATIONS for ref in pool[cls]}
    dm.rebuild_derived(pool)
    after = {(cls, ref, f): list(pool[cls][ref][f]) for (cls, f) in dm.RELATIONS for ref in pool[cls]}
    assert before == after


def test_uuids_unique(pool):
    uuids = [rec["uuid"] for rows in pool.values() for rec in rows.values()]
    assert len(uuids) == len(set(uuids))
    refs = [ref for rows in pool.values() for ref in rows]
    assert len(refs) == len(set(refs))


def test_pool_and_hosts(pool):
    (p,) = pool["pool"].values()
    master = pool["host"][p["master"]]
    assert master["name_label"] == "xenhost1-1"
    assert pool["SR"][p["default_SR"]]["name_label"] == "Local storage"
    for host in pool["host"].values():
        assert host["address"] == "127.0.0.1" and host["enabled"]
        assert (host["API_version_major"], host["API_version_minor"]) == (2, 21)
        assert host["cpu_info"]["cpu_count"] == "48"
        assert all(isinstance(v, str) for v in host["cpu_info"].values())
        assert host["software_version"]["product_version"]
        assert len(host["host_CPUs"]) == 48
        devices = sorted(pool["PIF"][p]["device"] for p in host["PIFs"])
        assert devices == ["eth0", "eth1"]
        mgmt = [pool["PIF"][p] for p in host["PIFs"] if pool["PIF"][p]["management"]]
        assert [m["device"] for m in mgmt] == ["eth0"]


def test_control_domains(pool):
    for href, host in pool["host"].items():
        dom0 = pool["VM"][host["control_domain"]]
        assert dom0["is_control_domain"] and dom0["power_state"] == "Running"
        assert dom0["domid"] == 0 and dom0["resident_on"] == href
        assert host["control_domain"] in host["resident_VMs"]


def test_memory_arithmetic(pool):
    for host in pool["host"].values():
        hm = pool["host_metrics"][host["metrics"]]
        assert hm["memory_total"] == 256 * GIB
        running = [pool["VM"][v] for v in host["resident_VMs"]]
        assert all(vm["power_state"] == "Running" for vm in running)
        assert hm["memory_free"] == hm["memory_total"] - sum(vm["memory_static_max"] for vm in running)
        dom0 = pool["VM"][host["control_domain"]]
        assert 0 < dom0["memory_static_max"] < hm["memory_total"]


def test_sr_arithmetic(pool):
    srs = pool["SR"]
    for sr in srs.values():
        vdis = [pool["VDI"][v] for v in sr["VDIs"]]
        assert sr["physical_utilisation"] == sum(v["physical_utilisation"] for v in vdis)
        assert sr["virtual_allocation"] == sum(v["virtual_size"] for v in vdis)
        assert sr["physical_utilisation"] <= max(sr["physical_size"], 0)
    local = [sr for sr in srs.values() if sr["name_label"] == "Local storage"]
    assert len(local) == 3
    for sr in local:
        assert (sr["type"], sr["content_type"], sr["shared"]) == ("ext", "user", False)
        assert sr["physical_size"] == 2000 * GIB
        assert len(sr["PBDs"]) == 1 and pool["PBD"][sr["PBDs"][0]]["currently_attached"]
        assert sr["physical_utilisation"] > 0
    (iso,) = [sr for sr in srs.values() if sr["content_type"] == "iso"]
    assert iso["shared"] and len(iso["PBDs"]) == 3
    (ha,) = [sr for sr in srs.values() if sr["name_label"] == "HA heartbeat"]
    assert ha["shared"] and {pool["PBD"][p]["host"] for p in ha["PBDs"]} == set(pool["host"])


def test_each_host_owns_its_local_sr(pool):
    for host in pool["host"].values():
        local = [pool["SR"][pool["PBD"][p]["SR"]] for p in host["PBDs"]]
        assert sorted(sr["name_label"] for sr in local) == [
            "HA heartbeat", "ISO library", "Local storage"]


def test_templates(pool):
    templates = {vm["name_label"]: vm for vm in pool["VM"].values() if vm["is_a_template"]}
    assert set(templates) == {os_.template_name for os_ in OS_CATALOG.values()}
    for os_ in OS_CATALOG.values():
        t = templates[os_.template_name]
        assert t["power_state"] == "Halted" and not t["is_default_template"]
        assert t["other_config"]["default_template"] == "false"
        assert t["other_config"][OS_KEY] == os_.key
        m = re.fullmatch(r'<provision><disk device="0" size="(\d+)" sr="" bootable="true" '
                         r'type="system"/></provision>', t["other_config"]["disks"])
        assert m and int(m.group(1)) == os_.disk_gib * GIB
        assert t["VCPUs_max"] == t["VCPUs_at_startup"] == os_.vcpus
        assert t["memory_static_max"] == t["memory_dynamic_max"] == os_.memory_gib * GIB
        assert t["memory_static_min"] <= t["memory_dynamic_min"] <= t["memory_dynamic_max"]
        assert t["VIFs"] == [] and t["VBDs"] == []
        if os_.windows:
            assert t["HVM_boot_policy"] == "BIOS order" and t["domain_type"] == "hvm"
        else:
            assert t["HVM_boot_policy"] == "" and t["PV_bootloader"] == "pygrub"
            assert t["domain_type"] == "pv"


def test_running_guests(pool):
    guests = [vm for vm in pool["VM"].values() if not vm["is_a_template"] and not vm["is_control_domain"]]
    assert len(guests) == 12
    per_host: dict[str, int] = {}
    ips = []
    for vm in guests:
        per_host[vm["resident_on"]] = per_host.get(vm["resident_on"], 0) + 1
        assert vm["power_state"] == "Running" and vm["domid"] > 0
        (vbd,) = [pool["VBD"][v] for v in vm["VBDs"]]
        vdi = pool["VDI"][vbd["VDI"]]
        sr = pool["SR"][vdi["SR"]]
        assert sr["name_label"] == "Local storage"
        assert any(pool["PBD"][p]["host"] == vm["resident_on"] for p in sr["PBDs"])
        (vif,) = [pool["VIF"][v] for v in vm["VIFs"]]
        assert pool["network"][vif["network"]]["bridge"] == "xenbr0"
        gm = pool["VM_guest_metrics"][vm["guest_metrics"]]
        os_ = OS_CATALOG[vm["other_config"][OS_KEY]]
        assert gm["os_version"] == os_.os_version()
        assert gm["networks"]["0/ip"] == gm["networks"]["0/ipv4/0"]
        ips.append(ipaddress.IPv4Address(gm["networks"]["0/ip"]))
        metrics = pool["VM_metrics"][vm["metrics"]]
        assert metrics["memory_actual"] == vm["memory_static_max"]
        assert metrics["VCPUs_number"] == vm["VCPUs_max"]
    assert sorted(per_host.values()) == [4, 4, 4]
    assert len(set(ips)) == len(ips)
    loopback = ipaddress.IPv4Network("127.0.0.0/8")
    ranges = [_ip_range(n["other_config"][DHCP_KEY]) for n in pool["network"].values()]
    for ip in ips:
        assert ip in loopback and not ip.is_unspecified
        assert not any(lo <= ip <= hi for lo, hi in ranges), "pre-existing guests must not use DHCP leases"


def test_dhcp_ranges_distinct_and_in_loopback() -> None:
    pools = [generate_pool(f"pool{i + 1}", 1, 0, pool_index=i) for i in range(4)]
    seen: list[tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]] = []
    loopback = ipaddress.IPv4Network("127.0.0.0/8")
    for t in pools:
        for net in t["network"].values():
            text = net["other_config"][DHCP_KEY]
            assert re.fullmatch(r"127\.(\d+)\.(\d+)\.10-127\.\1\.\2\.250", text), text
            lo, hi = _ip_range(text)
            assert lo in loopback and hi in loopback and lo < hi
            assert lo not in ipaddress.IPv4Network("127.0.0.0/16")
            assert all(hi < a or lo > b for a, b in seen), "ranges overlap"
            seen.append((lo, hi))
    assert len(seen) == 8
    assert dhcp_range(0, 0) != dhcp_range(1, 0) != dhcp_range(0, 1)


def test_deterministic_per_seed():
    a = generate_pool("p", 2, 2, seed=3)
    b = generate_pool("p", 2, 2, seed=3)
    c = generate_pool("p", 2, 2, seed=4)
    assert set(a["VM"]) == set(b["VM"])
    assert set(a["VM"]).isdisjoint(c["VM"])
    d = generate_pool("p", 2, 2, seed=3, pool_index=1)
    assert set(a["VM"]).isdisjoint(d["VM"])
    assert next(iter(d["host"].values()))["name_label"] == "xenhost2-1"


def test_options():
    t = generate_pool("lab", 2, 3, os_keys=["windows", "centos7"], host_cpus=16, host_memory_gib=64,
                      sr_size_gib=500, storage_name="Fast disks", network_device="eth1")
    names = {vm["name_label"] for vm in t["VM"].values() if vm["is_a_template"]}
    assert names == {"tmpl-win16dc - PATCHED (1)", "tmpl-cnt7.9"}
    assert {sr["name_label"] for sr in t["SR"].values()} == {
        "Fast disks", "HA heartbeat", "ISO library"}
    for host in t["host"].values():
        assert host["cpu_info"]["cpu_count"] == "16" and len(host["host_CPUs"]) == 16
        assert t["host_metrics"][host["metrics"]]["memory_total"] == 64 * GIB
        mgmt = [t["PIF"][p]["device"] for p in host["PIFs"] if t["PIF"][p]["management"]]
        assert mgmt == ["eth1"]
    guest_oses = {vm["other_config"][OS_KEY] for vm in t["VM"].values()
                  if not vm["is_a_template"] and not vm["is_control_domain"]}
    assert guest_oses == {"windows", "centos7"}
    assert dm.dangling_refs(t) == []


def test_crowded_hosts_still_add_up():
    t = generate_pool("dense", 2, 100, host_memory_gib=64, sr_size_gib=200)
    for host in t["host"].values():
        hm = t["host_metrics"][host["metrics"]]
        used = sum(t["VM"][v]["memory_static_max"] for v in host["resident_VMs"])
        assert hm["memory_free"] == hm["memory_total"] - used >= 0
    for sr in t["SR"].values():
        assert 0 <= sr["physical_utilisation"] <= max(sr["physical_size"], 0)


@pytest.mark.parametrize("kwargs", [dict(hosts=0, vms_per_host=1), dict(hosts=1, vms_per_host=-1),
                                    dict(hosts=1, vms_per_host=1, os_keys=[]),
                                    dict(hosts=1, vms_per_host=100_000, host_memory_gib=1)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        generate_pool("bad", **kwargs)


def test_unknown_os_key():
    with pytest.raises(KeyError):
        generate_pool("bad", 1, 0, os_keys=["beos"])


def test_large_pool_is_consistent():
    t = generate_pool("big", 20, 100)  # its speed is bench.sim_bench's business
    assert pool_summary(t)["running_vms"] == 2000
    assert dm.dangling_refs(t) == []


def test_guests_on_shared_storage():
    t = generate_pool("mobile", 3, 2, guest_storage="shared")
    (shared,) = [r for r, sr in t["SR"].items() if sr["name_label"] == "Shared storage"]
    assert t["SR"][shared]["shared"]
    assert {t["PBD"][p]["host"] for p in t["SR"][shared]["PBDs"]} == set(t["host"])
    guests = [vm for vm in t["VM"].values() if vm["power_state"] == "Running"
              and not vm["is_control_domain"]]
    assert len(guests) == 6
    for vm in guests:
        assert all(t["VDI"][t["VBD"][b]["VDI"]]["SR"] == shared for b in vm["VBDs"])
    assert dm.dangling_refs(t) == []
    with pytest.raises(ValueError):
        generate_pool("bad", 1, 0, guest_storage="ceph")
