"""VM, VDI and VIF behaviours: clone/copy, provision, power operations,
guest boot (guest metrics, then a DHCP address), migration and destruction.

Checks follow xapi's order (see xapi-reference.md, "Error semantics").
Waits (clone time) happen outside the database lock; state changes happen
under it, after re-reading the objects involved.
"""

from __future__ import annotations

import copy
import random
import threading
import uuid as uuidlib
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

from . import datamodel
from .db import NULL, Database, now_stamp
from .dispatch import CallContext, handler
from .guests import Dhcp, guest_os, link_local_for, parse_range
from .wire import XapiError

if TYPE_CHECKING:
    from .farm import SimPool

MIB = 1 << 20
COW_BYTES = 4 * MIB  # what a copy-on-write clone of a disk costs its SR up front
DEFAULT_OVERHEAD = 0
PV_DRIVERS = {"major": "9", "minor": "3", "micro": "1", "build": "97"}
GUEST_FEATURES = {"feature-shutdown": "1", "feature-suspend": "1", "feature-poweroff": "1",
                  "feature-reboot": "1", "feature-balloon": "1", "has-vendor-device": "0"}


class VmRuntime:
    """Per-pool state that is not in the database: memory held, boots, leases."""

    def __init__(self, pool: SimPool) -> None:
        self.pool = pool
        self.lock = threading.Lock()
        self.consumed: dict[str, tuple[str, int]] = {}  # vm -> (host, bytes)
        self.boots: dict[str, int] = {}  # vm -> boot generation (stale timers are ignored)
        self.dhcp = Dhcp()
        self.ips: dict[str, str] = {}  # vm -> address with an open guest port
        self._domid = 1
        self._reserve_existing()

    def next_domid(self) -> int:
        with self.lock:
            self._domid += 1
            return self._domid

    def bump_boot(self, vm: str) -> int:
        with self.lock:
            n = self.boots.get(vm, 0) + 1
            self.boots[vm] = n
            return n

    def _reserve_existing(self) -> None:
        """Addresses already held by running guests of a loaded/generated farm."""
        db = self.pool.db
        for vm, rec in db.tables["VM"].items():
            if rec.get("power_state") != "Running" or rec.get("is_control_domain"):
                continue
            gm = db.find("VM_guest_metrics", rec.get("guest_metrics", NULL))
            vif = first_vif(db, vm)
            if gm is None or vif is None:
                continue
            net = db.tables["VIF"][vif]["network"]
            rng = dhcp_range(db, net)
            ip = (gm.get("networks") or {}).get("0/ip")
            if rng and ip:
                self.dhcp.reserve(vm, net, rng, ip)


def runtime(pool: SimPool) -> VmRuntime:
    return pool.runtime  # type: ignore[no-any-return]


def first_vif(db: Database, vm: str) -> str | None:
    vifs = [v for v in db.tables["VM"][vm].get("VIFs", []) if v in db.tables["VIF"]]
    if not vifs:
        return None

    def order(v: str) -> tuple[int, str]:
        dev = db.tables["VIF"][v].get("device", "")
        return (int(dev) if dev.isdigit() else 1 << 30, dev)

    return min(vifs, key=order)


def dhcp_range(db: Database, network: str) -> tuple[int, int] | None:
    net = db.find("network", network)
    if net is None:
        return None
    spec = (net.get("other_config") or {}).get("dynvm_sim_dhcp", "")
    return parse_range(spec) if spec else None


def _state(rec: dict[str, Any]) -> str:
    return str(rec["power_state"]).lower()


def _allowed_concurrently(op: str, current: set[str]) -> bool:
    """xapi lets a hard shutdown or hard reboot interrupt a longer operation."""
    if op == "hard_shutdown":
        return "hard_shutdown" not in current
    if op == "hard_reboot":
        return not current & {"hard_shutdown", "hard_reboot"}
    return False


def _check_common(vm: str, rec: dict[str, Any], op: str, allowed: tuple[str, ...]) -> None:
    """xapi's op check: blocked, power state, template, control domain."""
    blocked = rec.get("blocked_operations") or {}
    if op in blocked:
        raise XapiError("OPERATION_BLOCKED", vm, blocked[op])
    if _state(rec) not in allowed:
        raise XapiError("VM_BAD_POWER_STATE", vm, ", ".join(allowed), _state(rec))
    current = set((rec.get("current_operations") or {}).values())
    if current and not _allowed_concurrently(op, current):
        raise XapiError("OTHER_OPERATION_IN_PROGRESS", "VM", vm)
    template_ok = {"clone", "copy", "provision", "export", "changing_memory_limits",
                   "changing_VCPUs", "changing_static_range", "changing_dynamic_range"}
    default_tpl = (rec.get("other_config") or {}).get("default_template") == "true" or rec.get(
        "is_default_template")
    if not default_tpl:
        template_ok |= {"destroy", "migrate_send"}
    if rec.get("is_a_template") and not rec.get("is_a_snapshot") and op not in template_ok:
        raise XapiError("VM_IS_TEMPLATE", vm, op)
    if rec.get("is_control_domain") and op not in ("changing_memory_limits",):
        raise XapiError("OPERATION_NOT_ALLOWED", "This operation is not allowed on a control domain")


def _needed_memory(rec: dict[str, Any]) -> int:
    return int(rec.get("memory_static_max") or 0) + int(rec.get("memory_overhead") or DEFAULT_OVERHEAD)


def _host_free(db: Database, host: str) -> tuple[str | None, int]:
    hrec = db.get("host", host)
    metrics = hrec.get("metrics", NULL)
    mrec = db.find("host_metrics", metrics)
    return (metrics if mrec else None), int(mrec["memory_free"]) if mrec else 0


def _adjust_free(db: Database, host: str, delta: int) -> None:
    metrics, free = _host_free(db, host)
    if metrics is not None:
        db.modify("host_metrics", metrics, {"memory_free": free + delta})


def _host_usable(ctx: CallContext, host: str) -> None:
    hrec = ctx.db.get("host", host)
    sim = ctx.pool.host_by_ref(host)
    if sim is not None and not sim.online:
        raise XapiError("HOST_OFFLINE", host)
    if not hrec.get("enabled", True):
        raise XapiError("HOST_DISABLED", host)


# ------------------------------------------------------------------ clone
def _new_mac() -> str:
    r = random.getrandbits(40)
    return "02:" + ":".join(f"{(r >> (8 * i)) & 0xFF:02x}" for i in range(5))


def _disk_plan(db: Database, rec: dict[str, Any], full_copy: bool, target_sr: str
               ) -> list[tuple[dict[str, Any], dict[str, Any] | None, str]]:
    """(VBD, VDI or None, destination SR) per disk, checked before anything is
    created so that a refused copy leaves no half-made VM behind."""
    plan: list[tuple[dict[str, Any], dict[str, Any] | None, str]] = []
    for vbd in rec.get("VBDs", []):
        brec = db.find("VBD", vbd)
        if brec is None:
            continue
        vrec = db.find("VDI", brec.get("VDI", NULL))
        if vrec is None or brec.get("empty"):
            plan.append((brec, None, NULL))
            continue
        sr = target_sr if full_copy and target_sr not in ("", NULL) else vrec["SR"]
        if full_copy and db.get("SR", sr).get("content_type") == "iso":
            raise XapiError("OPERATION_NOT_ALLOWED", "Cannot copy a VM's disks to an ISO SR")
        plan.append((brec, vrec, sr))
    return plan


def _clone_vm(ctx: CallContext, src: str, new_name: str, full_copy: bool, target_sr: str) -> str:
    db = ctx.db
    rec = db.get("VM", src)
    disks = _disk_plan(db, rec, full_copy, target_sr)
    new = copy.deepcopy(rec)
    for set_field in datamodel.CLASSES["VM"].derived:
        new[set_field] = []
    oc = dict(new.get("other_config") or {})
    oc["mac_seed"] = str(uuidlib.uuid4())
    oc.pop("default_template", None)
    oc.pop("xensource_internal", None)
    if rec.get("is_a_template") and "base_template_name" not in oc:
        oc["base_template_name"] = rec["name_label"]
    new.update({
        "uuid": str(uuidlib.uuid4()),
        "name_label": new_name,
        "is_default_template": False,
        "is_a_snapshot": False,
        "snapshot_of": NULL,
        "snapshot_time": datamodel.EPOCH,
        "resident_on": NULL,
        "scheduled_to_be_resident_on": NULL,
        "parent": NULL,
        "domid": -1,
        "start_delay": 0,
        "shutdown_delay": 0,
        "order": 0,
        "appliance": NULL,
        "suspend_SR": NULL,
        "suspend_VDI": NULL,
        "guest_metrics": NULL,
        "current_operations": {},
        "other_config": oc,
    })
    new["metrics"] = db.create("VM_metrics", {"uuid": str(uuidlib.uuid4()),
                                              "last_updated": now_stamp(),
                                              "install_time": now_stamp()})
    vm = db.create("VM", new)
    for brec, vrec, sr in disks:
        nb = copy.deepcopy(brec)
        new_vdi = NULL
        if vrec is not None:
            srrec = db.get("SR", sr)
            nv = copy.deepcopy(vrec)
            used = int(vrec.get("physical_utilisation", 0)) if full_copy else COW_BYTES
            for set_field in datamodel.CLASSES["VDI"].derived:
                nv[set_field] = []
            nv.update({"uuid": str(uuidlib.uuid4()), "SR": sr, "physical_utilisation": used,
                       "location": str(uuidlib.uuid4()), "is_a_snapshot": False,
                       "snapshot_of": NULL, "current_operations": {}})
            new_vdi = db.create("VDI", nv)
            db.modify("SR", sr, {
                "physical_utilisation": int(srrec.get("physical_utilisation", 0)) + used,
                "virtual_allocation": int(srrec.get("virtual_allocation", 0))
                + int(vrec.get("virtual_size", 0)),
            })
        nb.update({"uuid": str(uuidlib.uuid4()), "VM": vm, "VDI": new_vdi,
                   "currently_attached": False, "current_operations": {}, "metrics": NULL})
        db.create("VBD", nb)
    for vif in list(rec.get("VIFs", [])):
        irec = db.find("VIF", vif)
        if irec is None:
            continue
        ni = copy.deepcopy(irec)
        ni.update({"uuid": str(uuidlib.uuid4()), "VM": vm, "MAC": _new_mac(),
                   "currently_attached": False, "current_operations": {}, "metrics": NULL})
        db.create("VIF", ni)
    return vm


def _clone_common(ctx: CallContext, vm: str, new_name: str, op: str, full: bool, sr: str) -> str:
    db = ctx.db
    with db.lock:
        rec = db.get("VM", vm)
        _check_common(vm, rec, op, ("halted",))
        if sr and sr != NULL:
            db.get("SR", sr)
        windows = guest_os(rec).windows
    timing = ctx.farm.timing
    total = timing.for_os(timing.clone_secs, windows)
    ctx.sleep(total / 2)
    ctx.progress(0.5)
    ctx.sleep(total / 2)
    with db.lock:
        rec = db.get("VM", vm)
        _check_common(vm, rec, op, ("halted",))
        return _clone_vm(ctx, vm, new_name, full, sr)


@handler("VM.clone")
def vm_clone(ctx: CallContext, vm: str, new_name: str) -> str:
    return _clone_common(ctx, vm, new_name, "clone", False, NULL)


@handler("VM.copy")
def vm_copy(ctx: CallContext, vm: str, new_name: str, sr: str) -> str:
    return _clone_common(ctx, vm, new_name, "copy", True, sr)


# -------------------------------------------------------------- provision
def _parse_disks(spec: str) -> list[dict[str, str]]:
    try:
        root = ET.fromstring(spec)
    except ET.ParseError as exc:
        raise XapiError("INVALID_VALUE", "disks", spec) from exc
    return [dict(d.attrib) for d in root.iter("disk")]


@handler("VM.provision")
def vm_provision(ctx: CallContext, vm: str) -> None:
    db = ctx.db
    with db.lock:
        rec = db.get("VM", vm)
        blocked = rec.get("blocked_operations") or {}
        if "provision" in blocked:
            raise XapiError("OPERATION_BLOCKED", vm, blocked["provision"])
        if _state(rec) != "halted":
            raise XapiError("VM_BAD_POWER_STATE", vm, "halted", _state(rec))
        if not rec.get("is_a_template"):
            raise XapiError("PROVISION_ONLY_ALLOWED_ON_TEMPLATE")
        db.modify("VM", vm, {"is_a_template": False})
        oc = rec.get("other_config") or {}
        disks = _parse_disks(oc["disks"]) if oc.get("disks") else []
        created: list[tuple[str, str]] = []
        sr_changes: list[tuple[str, int]] = []
        try:
            for d in disks:
                sr_uuid = d.get("sr", "")
                try:
                    sr = db.by_uuid("SR", sr_uuid) if sr_uuid else None
                except XapiError:
                    sr = None
                if sr is None:
                    raise XapiError("UUID_INVALID", "sr", sr_uuid)
                size = int(d.get("size", "0") or 0)
                srrec = db.get("SR", sr)
                psize = int(srrec.get("physical_size", -1))
                pused = int(srrec.get("physical_utilisation", 0))
                if psize >= 0 and pused + size > psize:
                    raise XapiError("SR_BACKEND_FAILURE_44", "", "There is insufficient space", "")
                vtype = d.get("type", "system") or "system"
                vdi = db.create("VDI", {
                    "name_label": d.get("device", "0"),
                    "name_description": "Created by template provisioner",
                    "SR": sr, "virtual_size": size, "physical_utilisation": size,
                    "type": vtype, "sm_config": {"vmhint": rec["uuid"]},
                    "location": str(uuidlib.uuid4()), "managed": True,
                    "allowed_operations": ["clone", "copy", "resize", "snapshot", "destroy"],
                })
                created.append(("VDI", vdi))
                db.modify("SR", sr, {
                    "physical_utilisation": pused + size,
                    "virtual_allocation": int(srrec.get("virtual_allocation", 0)) + size,
                })
                sr_changes.append((sr, size))
                vbd = db.create("VBD", {
                    "VM": vm, "VDI": vdi, "userdevice": d.get("device", "0"),
                    "bootable": d.get("bootable", "false") == "true", "mode": "RW",
                    "type": "Disk", "unpluggable": vtype != "system",
                    "other_config": {"owner": ""}, "empty": False,
                })
                created.append(("VBD", vbd))
        except Exception:  # any failure, not only XAPI's: nothing it made may stay
            for cls, ref in reversed(created):
                db.destroy(cls, ref)
            for sr, size in sr_changes:
                srrec = db.get("SR", sr)
                db.modify("SR", sr, {
                    "physical_utilisation": int(srrec["physical_utilisation"]) - size,
                    "virtual_allocation": int(srrec["virtual_allocation"]) - size,
                })
            raise
        oc = dict(db.get("VM", vm).get("other_config") or {})
        oc.pop("disks", None)
        oc.pop("postinstall", None)
        db.modify("VM", vm, {"other_config": oc})


# ------------------------------------------------------------------- power
def _choose_host(ctx: CallContext, rec: dict[str, Any], needed: int) -> str:
    db = ctx.db
    candidates = []
    affinity = rec.get("affinity", NULL)
    hosts = list(db.tables["host"])
    if affinity in db.tables["host"]:
        hosts.remove(affinity)
        hosts.insert(0, affinity)
    for h in hosts:
        sim = ctx.pool.host_by_ref(h)
        if not db.tables["host"][h].get("enabled", True) or (sim is not None and not sim.online):
            continue
        _, free = _host_free(db, h)
        if free >= needed:
            return h
        candidates.append((free, h))
    if candidates:
        free, _ = max(candidates)
        raise XapiError("HOST_NOT_ENOUGH_FREE_MEMORY", needed, free)
    raise XapiError("NO_HOSTS_AVAILABLE")


def _start(ctx: CallContext, vm: str, host: str | None, paused: bool, op: str) -> None:
    db = ctx.db
    rt = runtime(ctx.pool)
    with db.lock:
        rec = db.get("VM", vm)
        if host is not None:
            db.get("host", host)
        _check_common(vm, rec, op, ("halted",))
        needed = _needed_memory(rec)
        if host is None:
            host = _choose_host(ctx, rec, needed)
        else:
            _host_usable(ctx, host)
            _, free = _host_free(db, host)
            if free < needed:
                raise XapiError("HOST_NOT_ENOUGH_FREE_MEMORY", needed, free)
        _adjust_free(db, host, -needed)
        with rt.lock:
            rt.consumed[vm] = (host, needed)
        db.modify("VM", vm, {
            "power_state": "Paused" if paused else "Running",
            "resident_on": host,
            "scheduled_to_be_resident_on": NULL,
            "domid": rt.next_domid(),
        })
        metrics = rec.get("metrics", NULL)
        if db.find("VM_metrics", metrics) is not None:
            db.modify("VM_metrics", metrics, {
                "start_time": now_stamp(), "last_updated": now_stamp(),
                "memory_actual": int(rec.get("memory_dynamic_max") or 0),
                "VCPUs_number": int(rec.get("VCPUs_at_startup") or 0),
                "state": [],
            })
        for vbd in rec.get("VBDs", []):
            if vbd in db.tables["VBD"]:
                db.modify("VBD", vbd, {"currently_attached": True})
        for vif in rec.get("VIFs", []):
            if vif in db.tables["VIF"]:
                db.modify("VIF", vif, {"currently_attached": True})
        gos = guest_os(rec)
        boot = rt.bump_boot(vm)
    if not paused:
        _schedule_boot(ctx.pool, vm, boot, gos.windows)


def _schedule_boot(pool: SimPool, vm: str, boot: int, windows: bool) -> None:
    timing = pool.farm.timing
    pool.farm.scheduler.call_later(timing.for_os(timing.boot_secs, windows),
                                   lambda: _guest_up(pool, vm, boot))


def _still_booting(db: Database, rt: VmRuntime, vm: str, boot: int) -> dict[str, Any] | None:
    """The VM's record if this boot is still the current one and it runs (lock held).

    A guest step scheduled for an earlier boot (the VM was halted, rebooted
    or destroyed since) must do nothing.
    """
    if rt.boots.get(vm) != boot:
        return None
    rec = db.find("VM", vm)
    if rec is None or rec["power_state"] != "Running":
        return None
    return rec


def _guest_up(pool: SimPool, vm: str, boot: int) -> None:
    db = pool.db
    rt = runtime(pool)
    with db.lock:
        rec = _still_booting(db, rt, vm, boot)
        if rec is None:
            return
        gos = guest_os(rec)
        old = rec.get("guest_metrics", NULL)
        gm = db.create("VM_guest_metrics", {
            "os_version": gos.os_version,
            "PV_drivers_version": dict(PV_DRIVERS),
            "PV_drivers_up_to_date": True,
            "PV_drivers_detected": True,
            "networks": {},
            "other": dict(GUEST_FEATURES),
            "live": True,
            "last_updated": now_stamp(),
            "can_use_hotplug_vbd": "yes",
            "can_use_hotplug_vif": "yes",
        })
        db.modify("VM", vm, {"guest_metrics": gm})
        if db.find("VM_guest_metrics", old) is not None:
            db.destroy("VM_guest_metrics", old)
    _schedule_address(pool, vm, boot, gos.windows)


def _schedule_address(pool: SimPool, vm: str, boot: int, windows: bool) -> None:
    timing = pool.farm.timing
    pool.farm.scheduler.call_later(timing.for_os(timing.ip_secs, windows),
                                   lambda: _guest_address(pool, vm, boot))


def _guest_address(pool: SimPool, vm: str, boot: int) -> None:
    db = pool.db
    rt = runtime(pool)
    farm = pool.farm
    with db.lock:
        rec = _still_booting(db, rt, vm, boot)
        if rec is None:
            return
        gm = rec.get("guest_metrics", NULL)
        if db.find("VM_guest_metrics", gm) is None:
            return
        vif = first_vif(db, vm)
        if vif is None:
            return
        vrec = db.tables["VIF"][vif]
        device = vrec.get("device") or "0"
        rng = dhcp_range(db, vrec["network"])
        ip = None
        if rng is not None and pool.name not in farm.faults.dhcp_exhausted:
            ip = rt.dhcp.allocate(vm, vrec["network"], rng)
        if ip is None:
            if not guest_os(rec).windows:
                return
            ip = link_local_for(rec["uuid"])
        nets = {f"{device}/ip": ip, f"{device}/ipv4/0": ip}
        db.modify("VM_guest_metrics", gm, {"networks": nets, "last_updated": now_stamp()})
        # Under the lock, like the lease itself: see _close_guest_port.
        if farm.guest_ports is not None and not ip.startswith("169.254."):
            farm.guest_ports.open(ip)
            with rt.lock:
                rt.ips[vm] = ip


def _close_guest_port(pool: SimPool, vm: str) -> None:
    """Stop answering on the guest's address. Callers hold the database lock
    and release the DHCP lease under it too, so the next VM given the address
    cannot open its port before this one is closed."""
    rt = runtime(pool)
    with rt.lock:
        ip = rt.ips.pop(vm, None)
    if ip and pool.farm.guest_ports is not None:
        pool.farm.guest_ports.close(ip)


def halt(pool: SimPool, vm: str) -> None:
    """Power a VM off: memory back to its host, guest metrics and lease gone."""
    db = pool.db
    rt = runtime(pool)
    with db.lock:
        rec = db.get("VM", vm)
        rt.bump_boot(vm)
        with rt.lock:
            held = rt.consumed.pop(vm, None)
        host = rec.get("resident_on", NULL)
        if held is not None:
            host, amount = held
        else:
            amount = _needed_memory(rec)
        if host in db.tables["host"]:
            _adjust_free(db, host, amount)
        gm = rec.get("guest_metrics", NULL)
        db.modify("VM", vm, {"power_state": "Halted", "resident_on": NULL, "domid": -1,
                             "guest_metrics": NULL,
                             "scheduled_to_be_resident_on": NULL})
        if db.find("VM_guest_metrics", gm) is not None:
            db.destroy("VM_guest_metrics", gm)
        metrics = rec.get("metrics", NULL)
        if db.find("VM_metrics", metrics) is not None:
            db.modify("VM_metrics", metrics, {"memory_actual": 0, "VCPUs_number": 0,
                                              "last_updated": now_stamp()})
        for vbd in rec.get("VBDs", []):
            if vbd in db.tables["VBD"]:
                db.modify("VBD", vbd, {"currently_attached": False})
        for vif in rec.get("VIFs", []):
            if vif in db.tables["VIF"]:
                db.modify("VIF", vif, {"currently_attached": False})
        rt.dhcp.release(vm)
        _close_guest_port(pool, vm)


@handler("VM.start")
def vm_start(ctx: CallContext, vm: str, start_paused: bool = False, force: bool = False) -> None:
    _start(ctx, vm, None, start_paused, "start")


@handler("VM.start_on")
def vm_start_on(ctx: CallContext, vm: str, host: str, start_paused: bool = False,
                force: bool = False) -> None:
    _start(ctx, vm, host, start_paused, "start_on")


@handler("VM.clean_shutdown")
def vm_clean_shutdown(ctx: CallContext, vm: str) -> None:
    with ctx.db.lock:
        _check_common(vm, ctx.db.get("VM", vm), "clean_shutdown", ("running",))
        halt(ctx.pool, vm)


@handler("VM.hard_shutdown")
def vm_hard_shutdown(ctx: CallContext, vm: str) -> None:
    with ctx.db.lock:
        _check_common(vm, ctx.db.get("VM", vm), "hard_shutdown", ("paused", "suspended", "running"))
        halt(ctx.pool, vm)


def _reboot(ctx: CallContext, vm: str, op: str, allowed: tuple[str, ...]) -> None:
    db = ctx.db
    rt = runtime(ctx.pool)
    with db.lock:
        rec = db.get("VM", vm)
        _check_common(vm, rec, op, allowed)
        gm = rec.get("guest_metrics", NULL)
        rt.dhcp.release(vm)
        _close_guest_port(ctx.pool, vm)
        db.modify("VM", vm, {"guest_metrics": NULL, "power_state": "Running"})
        if db.find("VM_guest_metrics", gm) is not None:
            db.destroy("VM_guest_metrics", gm)
        boot = rt.bump_boot(vm)
        windows = guest_os(rec).windows
    _schedule_boot(ctx.pool, vm, boot, windows)


@handler("VM.clean_reboot")
def vm_clean_reboot(ctx: CallContext, vm: str) -> None:
    _reboot(ctx, vm, "clean_reboot", ("running",))


@handler("VM.hard_reboot")
def vm_hard_reboot(ctx: CallContext, vm: str) -> None:
    _reboot(ctx, vm, "hard_reboot", ("paused", "running"))


@handler("VM.pause")
def vm_pause(ctx: CallContext, vm: str) -> None:
    with ctx.db.lock:
        _check_common(vm, ctx.db.get("VM", vm), "pause", ("running",))
        ctx.db.modify("VM", vm, {"power_state": "Paused"})


@handler("VM.unpause")
def vm_unpause(ctx: CallContext, vm: str) -> None:
    with ctx.db.lock:
        rec = ctx.db.get("VM", vm)
        _check_common(vm, rec, "unpause", ("paused",))
        ctx.db.modify("VM", vm, {"power_state": "Running"})
        # New boot generation: steps still pending from before the pause are
        # dropped, and whichever one the guest had not reached is scheduled anew.
        boot = runtime(ctx.pool).bump_boot(vm)
        windows = guest_os(rec).windows
        gm = ctx.db.find("VM_guest_metrics", rec.get("guest_metrics", NULL))
        has_address = bool(gm and gm.get("networks"))
    if gm is None:
        _schedule_boot(ctx.pool, vm, boot, windows)
    elif not has_address:
        _schedule_address(ctx.pool, vm, boot, windows)


def destroy_vm(pool: SimPool, vm: str) -> None:
    db = pool.db
    rt = runtime(pool)
    with db.lock:
        rec = db.get("VM", vm)
        for cls, field in (("VBD", "VBDs"), ("VIF", "VIFs")):
            for ref in list(rec.get(field, [])):
                if db.find(cls, ref) is not None:
                    db.destroy(cls, ref)
        for cls, field in (("VM_metrics", "metrics"), ("VM_guest_metrics", "guest_metrics")):
            if db.find(cls, rec.get(field, NULL)) is not None:
                db.destroy(cls, rec[field])
        db.destroy("VM", vm)
        rt.dhcp.release(vm)
        _close_guest_port(pool, vm)
        with rt.lock:
            rt.boots.pop(vm, None)
            rt.consumed.pop(vm, None)


@handler("VM.destroy")
def vm_destroy(ctx: CallContext, vm: str) -> None:
    with ctx.db.lock:
        _check_common(vm, ctx.db.get("VM", vm), "destroy", ("halted", "suspended"))
        destroy_vm(ctx.pool, vm)


MIGRATE_STEPS = 10


def _set_op(db: Database, cls: str, ref: str, key: str, op: str | None) -> None:
    """Add (`op`) or remove (None) one entry of a record's current_operations."""
    rec = db.find(cls, ref)
    if rec is None:
        return
    cur = dict(rec.get("current_operations") or {})
    if op is None:
        cur.pop(key, None)
    else:
        cur[key] = op
    db.modify(cls, ref, {"current_operations": cur})


def migrate(ctx: CallContext, vm: str, host: str) -> None:
    """Live migration: the target's memory is reserved at once, the copy takes
    simulated time in proportion to the VM's memory, and only then does the VM
    change host. It stays Running throughout; a cancelled task or a VM halted
    meanwhile gives the reservation back."""
    db = ctx.db
    rt = runtime(ctx.pool)
    with db.lock:
        rec = db.get("VM", vm)
        db.get("host", host)
        _check_common(vm, rec, "pool_migrate", ("running",))
        _host_usable(ctx, host)
        src = rec.get("resident_on", NULL)
        if src == host:
            return
        with rt.lock:
            held = rt.consumed.get(vm)
        amount = held[1] if held else _needed_memory(rec)
        _, free = _host_free(db, host)
        if free < amount:
            raise XapiError("HOST_NOT_ENOUGH_FREE_MEMORY", amount, free)
        _adjust_free(db, host, -amount)
        op_key = ctx.task or f"migrate-{uuidlib.uuid4()}"
        _set_op(db, "VM", vm, op_key, "pool_migrate")
        db.modify("VM", vm, {"scheduled_to_be_resident_on": host})
        seconds = ctx.farm.timing.migrate_secs(amount)
    moved = False
    try:
        for step in range(1, MIGRATE_STEPS + 1):
            ctx.sleep(seconds / MIGRATE_STEPS)
            ctx.progress(step / (MIGRATE_STEPS + 1))
        with db.lock:
            rec = db.find("VM", vm)
            with rt.lock:
                held = rt.consumed.get(vm)
            where = held[0] if held else (rec or {}).get("resident_on")
            if rec is None or rec["power_state"] != "Running" or where != src:
                raise XapiError("VM_BAD_POWER_STATE", vm, "running",
                                _state(rec) if rec else "halted")
            if src in db.tables["host"]:
                _adjust_free(db, src, amount)
            with rt.lock:
                rt.consumed[vm] = (host, amount)
            db.modify("VM", vm, {"resident_on": host, "domid": rt.next_domid(),
                                 "scheduled_to_be_resident_on": NULL})
            moved = True
    finally:
        with db.lock:
            if not moved:
                if host in db.tables["host"]:
                    _adjust_free(db, host, amount)
                if db.find("VM", vm) is not None:
                    db.modify("VM", vm, {"scheduled_to_be_resident_on": NULL})
            _set_op(db, "VM", vm, op_key, None)


@handler("VM.pool_migrate")
def vm_pool_migrate(ctx: CallContext, vm: str, host: str, options: dict[str, str]) -> None:
    migrate(ctx, vm, host)


# --------------------------------------------------------- memory / CPUs
def _check_memory_order(smin: int, smax: int, dmin: int, dmax: int) -> None:
    if not smin <= dmin <= dmax <= smax:
        raise XapiError("MEMORY_CONSTRAINT_VIOLATION_ORDER")


def _set_memory_limits(ctx: CallContext, vm: str, smin: int, smax: int, dmin: int, dmax: int,
                       op: str = "changing_memory_limits") -> None:
    with ctx.db.lock:
        _check_common(vm, ctx.db.get("VM", vm), op, ("halted",))
        _check_memory_order(smin, smax, dmin, dmax)
        ctx.db.modify("VM", vm, {"memory_static_min": smin, "memory_static_max": smax,
                                 "memory_dynamic_min": dmin, "memory_dynamic_max": dmax})


@handler("VM.set_memory_limits")
def vm_set_memory_limits(ctx: CallContext, vm: str, smin: int, smax: int, dmin: int,
                         dmax: int) -> None:
    _set_memory_limits(ctx, vm, smin, smax, dmin, dmax)


@handler("VM.set_memory")
def vm_set_memory(ctx: CallContext, vm: str, value: int) -> None:
    with ctx.db.lock:
        rec = ctx.db.get("VM", vm)
        _set_memory_limits(ctx, vm, int(rec["memory_static_min"]), value, value, value)


@handler("VM.set_memory_static_range")
def vm_set_memory_static_range(ctx: CallContext, vm: str, lo: int, hi: int) -> None:
    with ctx.db.lock:
        rec = ctx.db.get("VM", vm)
        _set_memory_limits(ctx, vm, lo, hi, int(rec["memory_dynamic_min"]),
                           int(rec["memory_dynamic_max"]), "changing_static_range")


@handler("VM.set_memory_static_max")
def vm_set_memory_static_max(ctx: CallContext, vm: str, value: int) -> None:
    with ctx.db.lock:
        rec = ctx.db.get("VM", vm)
        _set_memory_limits(ctx, vm, int(rec["memory_static_min"]), value,
                           int(rec["memory_dynamic_min"]), int(rec["memory_dynamic_max"]))


@handler("VM.set_memory_dynamic_range")
def vm_set_memory_dynamic_range(ctx: CallContext, vm: str, lo: int, hi: int) -> None:
    with ctx.db.lock:
        rec = ctx.db.get("VM", vm)
        _check_common(vm, rec, "changing_dynamic_range", ("halted", "running"))
        _check_memory_order(int(rec["memory_static_min"]), int(rec["memory_static_max"]), lo, hi)
        ctx.db.modify("VM", vm, {"memory_dynamic_min": lo, "memory_dynamic_max": hi})


VCPU_RULE = "VCPU values must satisfy: 0 < VCPUs_at_startup ≤ VCPUs_max"


@handler("VM.set_VCPUs_max")
def vm_set_vcpus_max(ctx: CallContext, vm: str, value: int) -> None:
    with ctx.db.lock:
        rec = ctx.db.get("VM", vm)
        _check_common(vm, rec, "changing_VCPUs", ("halted",))
        if value < 1 or value < int(rec["VCPUs_at_startup"]):
            raise XapiError("INVALID_VALUE", VCPU_RULE, value)
        ctx.db.modify("VM", vm, {"VCPUs_max": value})


@handler("VM.set_VCPUs_at_startup")
def vm_set_vcpus_at_startup(ctx: CallContext, vm: str, value: int) -> None:
    with ctx.db.lock:
        rec = ctx.db.get("VM", vm)
        _check_common(vm, rec, "changing_VCPUs", ("halted",))
        if value < 1 or value > int(rec["VCPUs_max"]):
            raise XapiError("INVALID_VALUE", VCPU_RULE, value)
        ctx.db.modify("VM", vm, {"VCPUs_at_startup": value})


@handler("VM.set_is_a_template")
def vm_set_is_a_template(ctx: CallContext, vm: str, value: bool) -> None:
    with ctx.db.lock:
        rec = ctx.db.get("VM", vm)
        if value:
            _check_common(vm, rec, "make_into_template", ("halted",))
        ctx.db.modify("VM", vm, {"is_a_template": bool(value)})


# ------------------------------------------------------------- VDI / VIF
@handler("VDI.destroy")
def vdi_destroy(ctx: CallContext, vdi: str) -> None:
    db = ctx.db
    with db.lock:
        rec = db.get("VDI", vdi)
        if [v for v in rec.get("VBDs", []) if v in db.tables["VBD"]]:
            raise XapiError("VDI_IN_USE", vdi, "destroy")
        sr = rec.get("SR", NULL)
        srrec = db.find("SR", sr)
        if srrec is not None:
            db.modify("SR", sr, {
                "physical_utilisation": int(srrec.get("physical_utilisation", 0))
                - int(rec.get("physical_utilisation", 0)),
                "virtual_allocation": int(srrec.get("virtual_allocation", 0))
                - int(rec.get("virtual_size", 0)),
            })
        db.destroy("VDI", vdi)


@handler("VIF.move")
def vif_move(ctx: CallContext, vif: str, network: str) -> None:
    with ctx.db.lock:
        ctx.db.get("VIF", vif)
        ctx.db.get("network", network)
        ctx.db.modify("VIF", vif, {"network": network})


@handler("VIF.create")
def vif_create(ctx: CallContext, rec: dict[str, Any]) -> str:
    with ctx.db.lock:
        vm = rec.get("VM", NULL)
        ctx.db.get("VM", vm)
        ctx.db.get("network", rec.get("network", NULL))
        fields = dict(rec)
        if not fields.get("MAC"):
            fields["MAC"] = _new_mac()
            fields["MAC_autogenerated"] = True
        fields.setdefault("allowed_operations", ["attach"])
        running = ctx.db.tables["VM"][vm]["power_state"] == "Running"
        fields["currently_attached"] = running
        return ctx.db.create("VIF", fields)


@handler("VDI.create")
def vdi_create(ctx: CallContext, rec: dict[str, Any]) -> str:
    with ctx.db.lock:
        sr = rec.get("SR", NULL)
        srrec = ctx.db.get("SR", sr)
        ref = ctx.db.create("VDI", dict(rec))
        ctx.db.modify("SR", sr, {
            "physical_utilisation": int(srrec.get("physical_utilisation", 0))
            + int(rec.get("physical_utilisation", 0) or 0),
            "virtual_allocation": int(srrec.get("virtual_allocation", 0))
            + int(rec.get("virtual_size", 0) or 0),
        })
        return ref
