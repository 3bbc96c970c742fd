"""Generate a realistic, self-consistent XAPI pool database.

A generated pool looks like what xapi itself would hold for a small
XenServer / XCP-ng pool running CI guests: hosts with CPUs, metrics and a
control domain, one local SR per host, pool-wide networks, one custom template
per OS of the catalog and some running guests. Every foreign key resolves and
the derived numbers add up (host free memory, SR utilisation), because the
service's capacity arithmetic is tested against them.

Output is deterministic for a given (name, pool_index, seed) apart from
timestamps.

Over 400 lines because it is one recipe: a pool's records in the order xapi
creates them, each builder feeding the references the next one needs.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterable
from typing import Any

from dynvm.sim import sraccount
from dynvm.sim.datamodel import (
    Tables,
    default_record,
    empty_tables,
    rebuild_derived,
)
from dynvm.sim.oscatalog import GIB, OS_CATALOG, OsTemplate

MIB = 1 << 20

# Keys of network.other_config / VM.other_config the simulator reads.
DHCP_KEY = "dynvm_sim_dhcp"
SHARED_SR = "Shared storage"  # guest_storage="shared": the SR every host of a pool reaches
OS_KEY = "dynvm_sim_os"

CPU_MODEL = "Intel(R) Xeon(R) Silver 4214 CPU @ 2.20GHz"
CPU_FLAGS = (
    "fpu de tsc msr pae mce cx8 apic sep mca cmov pat clflush acpi mmx fxsr sse sse2 ht syscall "
    "nx rdtscp lm constant_tsc arch_perfmon rep_good nopl nonstop_tsc cpuid pni pclmulqdq monitor "
    "est ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm "
    "abm 3dnowprefetch cpuid_fault ssbd ibrs ibpb stibp fsgsbase bmi1 avx2 bmi2 erms avx512f "
    "avx512dq rdseed adx avx512cd avx512bw avx512vl xsaveopt xsavec xgetbv1 arat pku ospke"
)
CPU_FEATURES = "1fdbfbff-77fef3ff-2c100800-00000121-0000000f-d19ffffb-00000008-00000000-00001000-bc000400"
SOFTWARE_VERSION = {
    "product_version": "8.2.1",
    "product_version_text": "8.2",
    "product_version_text_short": "8.2",
    "platform_name": "XCP",
    "platform_version": "3.2.1",
    "product_brand": "XCP-ng",
    "build_number": "release/yaxi/master/58",
    "git_id": "0",
    "hostname": "localhost",
    "date": "2021-11-16",
    "dbv": "0.0.1",
    "xapi": "1.20",
    "xen": "4.13.4-9.21",
    "linux": "4.19.0+1",
    "xencenter_min": "2.16",
    "xencenter_max": "2.16",
    "network_backend": "openvswitch",
    "db_schema": "5.603",
}
API_VERSION = (2, 21)


def _provision_xml(size: int) -> str:
    return (
        f'<provision><disk device="0" size="{size}" sr="" bootable="true" type="system"/>'
        "</provision>"
    )


class _Builder:
    """Adds rows with deterministic uuids/refs drawn from one RNG."""

    def __init__(self, rng: random.Random, now: str) -> None:
        self.rng = rng
        self.now = now
        self.tables: Tables = empty_tables()

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def add(self, cls: str, **fields: Any) -> str:
        rec = default_record(cls)
        unknown = set(fields) - set(rec)
        if unknown:
            raise KeyError(f"{cls} has no field(s) {sorted(unknown)}")
        rec.update(fields)
        rec["uuid"] = fields.get("uuid") or self.uuid()
        ref = f"OpaqueRef:{self.uuid()}"
        self.tables[cls][ref] = rec
        return ref

    def mac(self) -> str:
        octets = [0x02 | (self.rng.getrandbits(8) & 0xFC)] + [self.rng.getrandbits(8) for _ in range(5)]
        return ":".join(f"{o:02x}" for o in octets)


def dhcp_range(pool_index: int, network_index: int) -> tuple[str, str]:
    """The loopback range the simulator leases from on one network of one pool.

    127.<16+pool>.<16*network>.10-250: distinct per (pool, network), never in
    127.0.x.x where the hosts listen. Pre-existing guests get addresses from
    the 15 /24s that follow each range, so they never use up DHCP leases.
    """
    if not 0 <= pool_index < 224 or not 0 <= network_index < 16:
        raise ValueError("at most 224 pools of 16 networks fit in 127.0.0.0/8")
    a, b = 16 + pool_index, 16 * network_index
    return f"127.{a}.{b}.10", f"127.{a}.{b}.250"


def _static_ip(pool_index: int, network_index: int, n: int) -> str:
    a, b = 16 + pool_index, 16 * network_index
    block, host = divmod(n, 250)
    if block >= 15:
        raise ValueError("too many guests for one network's address block")
    return f"127.{a}.{b + 1 + block}.{host + 2}"


def generate_pool(
    name: str,
    hosts: int,
    vms_per_host: int,
    *,
    pool_index: int = 0,
    seed: int = 0,
    os_keys: Iterable[str] = OS_CATALOG,
    host_cpus: int = 48,
    host_memory_gib: int = 256,
    sr_size_gib: int = 2000,
    storage_name: str = "Local storage",
    network_device: str = "eth0",
    guest_storage: str = "local",
) -> Tables:
    """A complete pool database (see the module docstring).

    Hosts are named "xenhost<pool_index+1>-<n>" (n from 1); the first is the
    master. `vms_per_host` running guests per host are sized from the catalog,
    shrunk when needed so they fit the host's memory and local SR.
    """
    if hosts < 1:
        raise ValueError("a pool needs at least one host")
    if vms_per_host < 0:
        raise ValueError("vms_per_host must be >= 0")
    oses = [OS_CATALOG[k] for k in os_keys]
    if not oses:
        raise ValueError("at least one OS key is needed")
    b = _Builder(random.Random(f"{name}:{pool_index}:{seed}"), time.strftime("%Y%m%dT%H:%M:%SZ", time.gmtime()))
    t = b.tables

    # SM drivers for the SR types we use.
    for sm_type, desc in (("ext", "Local EXT3 VHD"), ("iso", "ISO"),
                          ("lvmoiscsi", "LVHD over iSCSI"), ("nfs", "NFS VHD")):
        b.add("SM", name_label=sm_type, name_description=desc, type=sm_type, vendor="Citrix Systems Inc",
              copyright="(C) 2008 Citrix Systems Inc", version="1.0", required_api_version="1.0",
              driver_filename=f"/opt/xensource/sm/{sm_type.upper()}SR",
              capabilities=["SR_PROBE", "SR_UPDATE", "VDI_CREATE", "VDI_DELETE", "VDI_ATTACH", "VDI_DETACH"])

    # Networks: the first is the guests' (and management) network.
    second = "eth1" if network_device != "eth1" else "eth0"
    net_devices = [network_device, second]
    networks = []
    for i, dev in enumerate(net_devices):
        lo, hi = dhcp_range(pool_index, i)
        networks.append(b.add(
            "network", name_label=f"Pool-wide network associated with {dev}", bridge=f"xenbr{dev[-1]}",
            MTU=1500, managed=True, other_config={DHCP_KEY: f"{lo}-{hi}", "automatic": "true"},
            default_locking_mode="unlocked",
        ))

    iso_sr = b.add(
        "SR", name_label="ISO library", name_description="Shared ISO images", type="iso",
        content_type="iso", shared=True, physical_size=0, physical_utilisation=0, virtual_allocation=0,
        allowed_operations=["scan", "forget", "plug", "unplug", "update", "vdi_introduce"],
        sm_config={}, other_config={"auto-scan": "true"},
    )

    # A small shared SR every host reaches: what pool HA needs for its statefile.
    ha_sr = b.add(
        "SR", name_label="HA heartbeat", name_description="Shared iSCSI LUN for HA", type="lvmoiscsi",
        content_type="", shared=True, physical_size=GIB, physical_utilisation=0, virtual_allocation=0,
        allowed_operations=["vdi_create", "vdi_destroy", "plug", "unplug", "update", "scan"],
        sm_config={"allocation": "thick"}, other_config={},
    )

    dom0_mem = min(8 * GIB, max(GIB, host_memory_gib * GIB // 32))
    host_refs: list[str] = []
    local_srs: list[str] = []
    for j in range(hosts):
        hname = f"xenhost{pool_index + 1}-{j + 1}"
        href = f"OpaqueRef:{b.uuid()}"
        host_refs.append(href)
        metrics = b.add("host_metrics", memory_total=host_memory_gib * GIB, memory_free=0, live=True,
                        last_updated=b.now)
        dom0_metrics = b.add("VM_metrics", memory_actual=dom0_mem, VCPUs_number=min(16, host_cpus),
                             state=[], start_time=b.now, install_time=b.now, last_updated=b.now,
                             current_domain_type="pv")
        dom0 = b.add(
            "VM", name_label=f"Control domain on host: {hname}", name_description="The domain which manages physical devices and manages other domains",
            power_state="Running", is_control_domain=True, domid=0, resident_on=href,
            memory_static_max=dom0_mem, memory_static_min=dom0_mem, memory_dynamic_max=dom0_mem,
            memory_dynamic_min=dom0_mem, memory_target=dom0_mem, VCPUs_max=min(16, host_cpus),
            VCPUs_at_startup=min(16, host_cpus), metrics=dom0_metrics, domain_type="pv",
            actions_after_shutdown="destroy", actions_after_reboot="destroy", actions_after_crash="destroy",
            other_config={"storage_driver_domain": "", "is_system_domain": "true"},
            allowed_operations=["changing_dynamic_range", "changing_memory_limits", "changing_static_range",
                                "metadata_export", "data_source_op", "query_services"],
            user_version=1, HVM_shadow_multiplier=1.0,
        )
        t["VM"][dom0]["other_config"]["storage_driver_domain"] = dom0
        cpu_info = {
            "cpu_count": str(host_cpus), "socket_count": "2", "threads_per_core": "2",
            "nr_nodes": "2", "vendor": "GenuineIntel", "speed": "2194.842", "modelname": CPU_MODEL,
            "family": "6", "model": "85", "stepping": "7", "flags": CPU_FLAGS,
            "features_pv": CPU_FEATURES, "features_hvm": CPU_FEATURES,
            "features_pv_host": CPU_FEATURES, "features_hvm_host": CPU_FEATURES,
        }
        for n in range(host_cpus):
            b.add("host_cpu", host=href, number=n, vendor="GenuineIntel", speed=2194, modelname=CPU_MODEL,
                  family=6, model=85, stepping="7", flags=CPU_FLAGS, features=CPU_FEATURES,
                  utilisation=round(b.rng.random() * 0.3, 4))
        rec = default_record("host")
        rec.update(
            uuid=b.uuid(), name_label=hname, name_description="Default install", hostname=hname,
            address="127.0.0.1", enabled=True, API_version_major=API_VERSION[0],
            API_version_minor=API_VERSION[1], API_version_vendor="XenSource",
            software_version={**SOFTWARE_VERSION, "hostname": hname}, cpu_info=cpu_info,
            metrics=metrics, control_domain=dom0, memory_overhead=0, edition="xcp-ng",
            sched_policy="credit", supported_bootloaders=["pygrub", "eliloader"],
            capabilities=["xen-3.0-x86_64", "hvm-3.0-x86_32", "hvm-3.0-x86_32p", "hvm-3.0-x86_64"],
            allowed_operations=["vm_migrate", "provision", "vm_resume", "evacuate", "vm_start"],
            bios_strings={"bios-vendor": "Dell Inc.", "bios-version": "2.12.2",
                          "system-manufacturer": "Dell Inc.", "system-product-name": "PowerEdge R640",
                          "system-serial-number": f"SIM{pool_index:02d}{j:03d}"},
            license_params={"sku_type": "free"}, display="enabled",
            virtual_hardware_platform_versions=[0, 1, 2], iscsi_iqn=f"iqn.2021-11.org.xcp-ng:{hname}",
            chipset_info={"iommu": "true"}, power_on_mode="",
        )
        t["host"][href] = rec

        for i, (dev, net) in enumerate(zip(net_devices, networks, strict=True)):
            pif_metrics = b.add("PIF_metrics", carrier=True, vendor_name="Intel Corporation",
                                device_name="Ethernet Controller X710 for 10GbE SFP+", speed=10000,
                                duplex=True, pci_bus_path=f"0000:3b:00.{i}", last_updated=b.now)
            b.add("PIF", device=dev, network=net, host=href, MAC=b.mac(), MTU=1500, VLAN=-1,
                  metrics=pif_metrics, physical=True, currently_attached=True, management=(i == 0),
                  ip_configuration_mode="Static" if i == 0 else "None",
                  IP="127.0.0.1" if i == 0 else "", netmask="255.0.0.0" if i == 0 else "",
                  ipv6_configuration_mode="None", primary_address_type="IPv4", managed=True,
                  properties={"gro": "on"}, capabilities=[])

        sr = b.add(
            "SR", name_label=storage_name, name_description="", type="ext", content_type="user",
            shared=False, physical_size=sr_size_gib * GIB, physical_utilisation=0, virtual_allocation=0,
            allowed_operations=["vdi_create", "vdi_snapshot", "plug", "update", "vdi_destroy", "scan",
                                "vdi_clone", "vdi_resize", "unplug", "pbd_create", "pbd_destroy"],
            sm_config={"devserial": f"scsi-SIM{pool_index:02d}{j:03d}"},
            other_config={"i18n-original-value-name_label": "Local storage", "i18n-key": "local-storage"}
            if storage_name == "Local storage" else {},
        )
        local_srs.append(sr)
        b.add("PBD", host=href, SR=sr, device_config={"device": "/dev/sda3"}, currently_attached=True)
        b.add("PBD", host=href, SR=ha_sr, device_config={"target": "127.0.0.1", "SCSIid": "sim-ha"},
              currently_attached=True)
        b.add("PBD", host=href, SR=iso_sr, device_config={"location": "/var/opt/iso", "legacy_mode": "true"},
              currently_attached=True)
        rec["suspend_image_sr"] = sr
        rec["crash_dump_sr"] = sr

    b.add("pool", name_label=name, name_description="", master=host_refs[0], default_SR=local_srs[0],
          suspend_image_SR=local_srs[0], crash_dump_SR=local_srs[0],
          other_config={"memory-ratio-hvm": "0.25", "memory-ratio-pv": "0.25"},
          cpu_info={k: t["host"][host_refs[0]]["cpu_info"][k]
                    for k in ("cpu_count", "socket_count", "vendor", "features_pv", "features_hvm")},
          restrictions={"restrict_pooling": "false", "restrict_vlan": "false"}, migration_compression=False)

    for os_ in oses:
        _add_template(b, os_)

    # guest_storage="shared": the running guests' disks live on one shared SR
    # every host reaches, so that they can live-migrate (local disks cannot).
    if guest_storage not in ("local", "shared"):
        raise ValueError("guest_storage is 'local' or 'shared'")
    guest_srs = local_srs
    if guest_storage == "shared":
        shared = b.add(
            "SR", name_label=SHARED_SR, name_description="NFS guest storage", type="nfs",
            content_type="user", shared=True, physical_size=sr_size_gib * GIB * hosts,
            physical_utilisation=0, virtual_allocation=0,
            allowed_operations=["vdi_create", "vdi_destroy", "vdi_clone", "vdi_snapshot", "scan",
                                "plug", "unplug", "update", "vdi_resize"],
            sm_config={}, other_config={},
        )
        for href in host_refs:
            b.add("PBD", host=href, SR=shared, currently_attached=True,
                  device_config={"server": "127.0.0.1", "serverpath": "/guests"})
        guest_srs = [shared] * hosts

    # Running guests: catalog sizes, shrunk to what fits.
    mem_budget = (host_memory_gib * GIB - dom0_mem) * 9 // 10
    disk_budget = sr_size_gib * GIB * 8 // 10
    guest_no = 0
    for j, (href, sr) in enumerate(zip(host_refs, guest_srs, strict=True)):
        for k in range(vms_per_host):
            os_ = oses[(j * vms_per_host + k) % len(oses)]
            mem = min(os_.memory_bytes, mem_budget // vms_per_host // (16 * MIB) * (16 * MIB))
            if mem <= 0:
                raise ValueError(f"{vms_per_host} guests do not fit in {host_memory_gib} GiB")
            vcpus = max(1, min(os_.vcpus, host_cpus // vms_per_host))
            phys = min(os_.disk_bytes * b.rng.randint(30, 70) // 100, disk_budget // vms_per_host)
            ip = _static_ip(pool_index, 0, guest_no)
            _add_guest(b, os_, f"ci-{os_.key}-{pool_index + 1}{j + 1:02d}{k + 1:03d}", href, sr,
                       networks[0], mem, vcpus, os_.disk_bytes, phys, ip)
            guest_no += 1

    rebuild_derived(t)
    _settle(t)
    return t


def _vm_common(os_: OsTemplate) -> dict[str, Any]:
    """Boot settings shared by a template and the guests made from it."""
    if os_.windows:
        return dict(
            HVM_boot_policy="BIOS order", HVM_boot_params={"order": "cdn"}, domain_type="hvm",
            platform={"viridian": "true", "acpi": "1", "apic": "true", "pae": "true", "nx": "true",
                      "device_id": "0002", "vga": "std", "videoram": "8"},
            PV_bootloader="", actions_after_crash="restart",
        )
    return dict(
        HVM_boot_policy="", PV_bootloader="pygrub", domain_type="pv", platform={"nx": "true"},
        PV_args="console=hvc0", actions_after_crash="restart",
    )


def _add_template(b: _Builder, os_: OsTemplate) -> str:
    mem = os_.memory_bytes
    metrics = b.add("VM_metrics", install_time=b.now, last_updated=b.now,
                    current_domain_type="unspecified")
    other = {
        "default_template": "false",
        OS_KEY: os_.key,
        "disks": _provision_xml(os_.disk_bytes),
        "mac_seed": b.uuid(),
        "install-methods": "cdrom" if os_.windows else "cdrom,nfs,http,ftp",
    }
    if not os_.windows:
        other["linux_template"] = "true"
    return b.add(
        "VM", name_label=os_.template_name, name_description=f"Template for {os_.os_name.split('|')[0]}",
        is_a_template=True, power_state="Halted", domid=-1, user_version=1,
        memory_static_max=mem, memory_dynamic_max=mem, memory_dynamic_min=mem,
        memory_static_min=min(mem, GIB), memory_target=0,
        VCPUs_max=os_.vcpus, VCPUs_at_startup=os_.vcpus, metrics=metrics, other_config=other,
        actions_after_shutdown="destroy", actions_after_reboot="restart", HVM_shadow_multiplier=1.0,
        allowed_operations=["changing_dynamic_range", "changing_static_range", "changing_memory_limits",
                            "changing_VCPUs", "clone", "copy", "export", "provision", "destroy"],
        recommendations='<restrictions><restriction field="memory-static-max" max="137438953472" />'
        '<restriction field="vcpus-max" max="32" /></restrictions>',
        **_vm_common(os_),
    )


def _add_guest(b: _Builder, os_: OsTemplate, vm_name: str, host: str, sr: str, network: str,
               mem: int, vcpus: int, disk: int, phys: int, ip: str) -> str:
    vm_uuid = b.uuid()
    metrics = b.add("VM_metrics", memory_actual=mem, VCPUs_number=vcpus,
                    VCPUs_utilisation={str(i): 0.0 for i in range(vcpus)}, state=[],
                    start_time=b.now, install_time=b.now, last_updated=b.now,
                    hvm=os_.windows, current_domain_type="hvm" if os_.windows else "pv")
    guest = b.add(
        "VM_guest_metrics", os_version=os_.os_version(),
        PV_drivers_version={"major": "8", "minor": "2", "micro": "1", "build": "1"},
        PV_drivers_up_to_date=True, PV_drivers_detected=True,
        networks={"0/ip": ip, "0/ipv4/0": ip},
        other={"feature-shutdown": "1", "feature-suspend": "1", "feature-balloon": "1",
               "has-vendor-device": "0", "platform-feature-multiprocessor-suspend": "1"},
        last_updated=b.now, live=True, can_use_hotplug_vbd="yes", can_use_hotplug_vif="yes",
    )
    vm = b.add(
        "VM", uuid=vm_uuid, name_label=vm_name,
        name_description=f"{vm_name} from {os_.template_name}", is_a_template=False,
        power_state="Running", domid=b.rng.randint(1, 30000), resident_on=host, affinity=host,
        last_boot_CPU_flags={"vendor": "GenuineIntel", "features": CPU_FEATURES}, user_version=1, memory_static_max=mem, memory_dynamic_max=mem, memory_dynamic_min=mem,
        memory_static_min=min(mem, GIB), memory_target=mem, VCPUs_max=vcpus, VCPUs_at_startup=vcpus,
        metrics=metrics, guest_metrics=guest, actions_after_shutdown="destroy",
        actions_after_reboot="restart", HVM_shadow_multiplier=1.0,
        other_config={"base_template_name": os_.template_name, "mac_seed": b.uuid(), OS_KEY: os_.key},
        allowed_operations=["changing_dynamic_range", "hard_reboot", "hard_shutdown", "pause",
                            "suspend", "clean_shutdown", "clean_reboot", "pool_migrate", "snapshot",
                            "checkpoint"],
        **_vm_common(os_),
    )
    vdi = b.add(
        "VDI", name_label="0", name_description="Created by template provisioner", SR=sr,
        virtual_size=disk, physical_utilisation=phys, type="system", sharable=False, read_only=False,
        location=b.uuid(), managed=True, sm_config={"vmhint": vm_uuid}, on_boot="persist",
        allowed_operations=["clone", "copy", "snapshot", "resize_online", "destroy"],
    )
    b.add("VBD", VM=vm, VDI=vdi, device="xvda", userdevice="0", bootable=True, mode="RW", type="Disk",
          unpluggable=False, empty=False, currently_attached=True, other_config={"owner": ""},
          allowed_operations=["attach", "unpause", "pause"])
    b.add("VIF", VM=vm, network=network, device="0", MAC=b.mac(), MTU=1500, MAC_autogenerated=True,
          currently_attached=True, locking_mode="network_default",
          allowed_operations=["attach", "unplug"])
    return vm


def _settle(t: Tables) -> None:
    """Derive the totals xapi would report: host free memory, SR usage."""
    vms = t["VM"]
    for host in t["host"].values():
        used = sum(
            vms[v]["memory_static_max"] for v in host["resident_VMs"] if vms[v]["power_state"] == "Running"
        )
        hm = t["host_metrics"][host["metrics"]]
        hm["memory_free"] = hm["memory_total"] - used
        if hm["memory_free"] < 0:
            raise ValueError(f"host {host['name_label']} is over-committed")
    for sr in t["SR"].values():
        sr.update(sraccount.totals(t["VDI"][v] for v in sr["VDIs"]))
