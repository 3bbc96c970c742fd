"""Turning raw XAPI records into the core's plain views (no XenAPI calls here)."""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
import xmlrpc.client
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from dynvm.core.ports import HostView, VmView

NULL = "OpaqueRef:NULL"
_NET_KEY = re.compile(r"^(\d+)/(ip|ipv4|ipv6)(?:/(\d+))?$")


def as_int(value: Any, default: int = 0) -> int:
    """XAPI sends int64 as decimal strings."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def is_null(ref: Any) -> bool:
    return not ref or ref == NULL


def guest_addresses(networks: Mapping[str, str] | None) -> tuple[str, ...]:
    """Guest addresses from VM_guest_metrics.networks: IPv4 first, by device, no repeats.

    Keys are "<vif>/ip" (old style, first IPv4), "<vif>/ipv4/<n>" and "<vif>/ipv6/<n>".
    """
    keyed: list[tuple[int, int, int, str]] = []
    for key, value in (networks or {}).items():
        m = _NET_KEY.match(str(key))
        if not m or not value:
            continue
        device, kind, index = int(m.group(1)), m.group(2), m.group(3)
        family = 6 if kind == "ipv6" else 4
        keyed.append((family, device, -1 if index is None else int(index), str(value)))
    seen: set[str] = set()
    out: list[str] = []
    for *_k, addr in sorted(keyed):
        if addr not in seen:
            seen.add(addr)
            out.append(addr)
    return tuple(out)


def ipv4_addresses(ips: tuple[str, ...]) -> list[str]:
    return [ip for ip in ips if ":" not in ip]


def is_link_local(ip: str) -> bool:
    return ip.startswith("169.254.")


def os_name(gm: Mapping[str, Any] | None) -> str:
    if not gm:
        return ""
    return str((gm.get("os_version") or {}).get("name", ""))


SHARED_MAX = 24  # other_config values this short are shared (tags, names; not uuids)


def shared(text: str) -> str:
    """One string object for a value many views repeat (XML-RPC makes one per record):
    a worker keeps 10,000 views, and pickling them shares what is shared here."""
    return sys.intern(text) if text.__class__ is str else text


def vm_view(ref: str, rec: Mapping[str, Any], gm: Mapping[str, Any] | None,
            host_uuids: Mapping[str, str]) -> VmView:
    other = {shared(k): shared(v) if len(str(v)) <= SHARED_MAX else v
             for k, v in (rec.get("other_config") or {}).items()}
    return VmView(
        ref=ref,
        uuid=rec.get("uuid", ""),
        name_label=rec.get("name_label", ""),
        name_description=rec.get("name_description", ""),
        power_state=shared(rec.get("power_state", "")),
        vcpus_max=as_int(rec.get("VCPUs_max")),
        memory_static_max=as_int(rec.get("memory_static_max")),
        resident_on=host_uuids.get(rec.get("resident_on", NULL), ""),
        is_template=bool(rec.get("is_a_template")),
        is_control_domain=bool(rec.get("is_control_domain")),
        other_config=MappingProxyType(other),
        ips=guest_addresses((gm or {}).get("networks")),
        os_name=shared(os_name(gm)),
    )


def host_cpu_count(rec: Mapping[str, Any]) -> int:
    """cpu_info.cpu_count; old databases lack cpu_info but list host_CPUs."""
    count = as_int((rec.get("cpu_info") or {}).get("cpu_count"), -1)
    return count if count >= 0 else len(rec.get("host_CPUs") or ())


def host_uuids(hosts: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Host ref -> uuid, how VM views name the host a VM runs on."""
    return {ref: h.get("uuid", "") for ref, h in hosts.items()}


def sr_room(sr: Mapping[str, Any]) -> tuple[int, int]:
    """(physical size, physical utilisation) of an SR, in bytes."""
    return as_int(sr.get("physical_size")), as_int(sr.get("physical_utilisation"))


def srs_by_name(srs: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """One SR per name among those a host sees: the one with most free space (first on a tie).

    Counting room and building a VM both use this choice, so a VM's disks
    land on the SR its room was counted on.
    """
    best: dict[str, Mapping[str, Any]] = {}
    for sr in srs:
        name = sr.get("name_label", "")
        size, used = sr_room(sr)
        old = best.get(name)
        if old is None or size - used > sr_room(old)[0] - sr_room(old)[1]:
            best[name] = sr
    return best


def host_views(records: Mapping[str, Mapping[str, dict[str, Any]]]) -> tuple[HostView, ...]:
    """Member hosts with their metrics and the SRs attached to each (through PBDs)."""
    attached: dict[str, list[Mapping[str, Any]]] = {}
    for pbd in records["pbd"].values():
        if pbd.get("currently_attached") is False:
            continue
        sr = records["sr"].get(pbd.get("SR", NULL))
        if sr is not None:
            attached.setdefault(pbd.get("host", NULL), []).append(sr)
    srs_by_host = {host: {name: sr_room(sr) for name, sr in srs_by_name(srs).items()}
                   for host, srs in attached.items()}
    pifs_by_host: dict[str, set[str]] = {}
    for pif in records.get("pif", {}).values():
        if pif.get("device"):
            pifs_by_host.setdefault(pif.get("host", NULL), set()).add(str(pif["device"]))
    out = []
    for ref, rec in records["host"].items():
        metrics = records["host_metrics"].get(rec.get("metrics", NULL)) or {}
        out.append(HostView(
            uuid=rec.get("uuid", ""),
            ref=ref,
            name_label=rec.get("name_label", ""),
            address=rec.get("address", ""),
            enabled=bool(rec.get("enabled", True)),
            cpu_count=host_cpu_count(rec),
            memory_free=as_int(metrics.get("memory_free")),
            memory_total=as_int(metrics.get("memory_total")),
            srs=MappingProxyType(srs_by_host.get(ref, {})),
            pif_devices=frozenset(pifs_by_host.get(ref, ())),
        ))
    out.sort(key=lambda h: h.name_label)
    return tuple(out)


def task_result(raw: str) -> str:
    """A task's result is the XML-RPC encoding of the value: "<value>OpaqueRef:..</value>"."""
    raw = (raw or "").strip()
    if not raw:
        return ""
    try:
        (value,), _ = xmlrpc.client.loads(
            f"<methodResponse><params><param>{raw}</param></params></methodResponse>")
        return str(value)
    except Exception:  # fall back to stripping the tags
        return re.sub(r"</?value>", "", raw).strip()


def point_disks_at(disks_xml: str, sr_uuid: str) -> str:
    """Rewrite every <disk sr=...> of a provisioning spec to `sr_uuid` (as vm-install does)."""
    root = ET.fromstring(disks_xml)
    for disk in root.iter("disk"):
        disk.set("sr", sr_uuid)
    return ET.tostring(root, encoding="unicode")


def grow_system_disk(disks_xml: str, size: int) -> str:
    """Make the provisioning spec's system disk at least `size` bytes.

    The system disk is the bootable one, else device 0, else the first; the
    others (data disks the template asks for) keep their sizes.
    """
    root = ET.fromstring(disks_xml)
    disks = list(root.iter("disk"))
    if not disks:
        return disks_xml
    system = next((d for d in disks if d.get("bootable") == "true"), None) \
        or next((d for d in disks if d.get("device") == "0"), disks[0])
    if as_int(system.get("size")) < size:
        system.set("size", str(size))
    return ET.tostring(root, encoding="unicode")
