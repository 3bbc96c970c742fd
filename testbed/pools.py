"""A simulated pool for host maintenance: hosts on shared storage, guests sized for N+1.

Live migration within a pool needs the guests' disks on storage every host
reaches; the generated pools keep each host's disks on its own local SR, so
this gathers them onto one shared SR (an NFS store, as most pools have).
"""

from __future__ import annotations

from dynvm.sim.datamodel import Tables, rebuild_derived
from dynvm.sim.farmgen import generate_pool

SHARED_SR = "NFS storage"


def shared_storage(t: Tables, name: str = SHARED_SR) -> None:
    """Move every guest disk of the pool's per-host SRs to one SR plugged on every host."""
    local = [ref for ref, sr in t["SR"].items() if sr.get("content_type") == "user"]
    if not local:
        return
    keep = local[0]
    sr = t["SR"][keep]
    sr.update(name_label=name, shared=True, type="nfs", other_config={},
              physical_size=sum(t["SR"][r]["physical_size"] for r in local))
    for vdi in t["VDI"].values():
        if vdi.get("SR") in local:
            vdi["SR"] = keep
    for pbd in t["PBD"].values():
        if pbd.get("SR") in local:
            pbd["SR"] = keep
    for ref in local[1:]:
        del t["SR"][ref]
    for h in t["host"].values():
        h["suspend_image_sr"] = h["crash_dump_sr"] = keep
    for p in t["pool"].values():
        p["default_SR"] = p["suspend_image_SR"] = p["crash_dump_SR"] = keep
    rebuild_derived(t)
    vdis = [t["VDI"][v] for v in sr["VDIs"]]
    sr["physical_utilisation"] = sum(v["physical_utilisation"] for v in vdis)
    sr["virtual_allocation"] = sum(v["virtual_size"] for v in vdis)


def maintenance_pool(name: str = "pool1", hosts: int = 4, vms_per_host: int = 12,
                     host_memory_gib: int = 104, host_cpus: int = 192) -> Tables:
    """Hosts with `vms_per_host` foreign guests each on shared storage.

    With the defaults (12 guests of about 4 GiB on 104 GiB hosts) the pool is
    N+2; three dynvm VMs of 4 GiB more per host make it N+1 but not N+2.
    """
    t = generate_pool(name, hosts, vms_per_host, host_memory_gib=host_memory_gib,
                      host_cpus=host_cpus, storage_name=SHARED_SR)
    shared_storage(t)
    return t
