"""The guest's timeline after a boot: cloud-init reads a config drive and
guest metrics appear, then a DHCP address (or a link-local one) and an open
guest port. Each step belongs to one boot generation and does nothing once
the VM was halted, rebooted or destroyed since."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import cidata
from .db import NULL, Database, now_stamp
from .deviceops import refresh_vm_devices
from .guests import guest_os, link_local_for
from .ssh_options import DEFAULT_GUEST_LOGINS
from .vmruntime import VmRuntime, dhcp_range, first_vif, runtime

if TYPE_CHECKING:
    from .farm import SimPool


PV_DRIVERS = {"major": "9", "minor": "3", "micro": "1", "build": "97"}
GUEST_FEATURES = {"feature-shutdown": "1", "feature-suspend": "1", "feature-poweroff": "1",
                  "feature-reboot": "1", "feature-balloon": "1", "has-vendor-device": "0"}


def _later(pool: SimPool, secs: float, step: Callable[[], None]) -> None:
    """Run a guest step after `secs` on the farm's scheduler (it runs once the farm started)."""
    scheduler = pool.farm.scheduler
    assert scheduler is not None
    scheduler.call_later(secs, step)


def schedule_boot(pool: SimPool, vm: str, boot: int, windows: bool) -> None:
    """The guest's metrics appear once the OS's boot time has passed."""
    timing = pool.farm.timing
    _later(pool, timing.for_os(timing.boot_secs, windows), lambda: _guest_up(pool, vm, boot))


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
        image = rt.image(vm)
        _cloud_init(pool, db, vm, rec)
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
            "netbios_name": {"host_name": image.hostname} if image.hostname else {},
        })
        db.modify("VM", vm, {"guest_metrics": gm})
        db.discard("VM_guest_metrics", old)
        refresh_vm_devices(db, rec)  # its PV drivers now allow hot-plug
    schedule_address(pool, vm, boot, gos.windows)


def _cloud_init(pool: SimPool, db: Database, vm: str, rec: dict[str, Any]) -> None:
    """Configure the guest's image from an attached `cidata` drive (lock held).

    The image's default user is the farm's first guest login: the user a
    template's cloud image is made for.
    """
    rt = runtime(pool)
    logins = pool.farm.guest_logins or DEFAULT_GUEST_LOGINS
    for vbd in rec.get("VBDs", []):
        vbd_rec = db.find("VBD", vbd)
        if vbd_rec is None or vbd_rec.get("empty"):
            continue
        data = rt.vdi_data.get(vbd_rec.get("VDI", NULL))
        seed = cidata.read_seed(data, next(iter(logins))) if data else None
        if seed is not None:
            cidata.apply(rt.image(vm), seed)
            return


def schedule_address(pool: SimPool, vm: str, boot: int, windows: bool) -> None:
    """The guest's address appears once the OS's DHCP time has passed."""
    timing = pool.farm.timing
    _later(pool, timing.for_os(timing.ip_secs, windows), lambda: _guest_address(pool, vm, boot))


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
        # Under the lock, like the lease itself: see release_address.
        if farm.guest_ports is not None and not ip.startswith("169.254."):
            farm.guest_ports.open(ip, rt.image(vm))
            with rt.lock:
                rt.ips[vm] = ip


def release_address(pool: SimPool, vm: str) -> None:
    """Give the guest's DHCP lease back and stop answering on its address.
    Callers hold the database lock, so the next VM given the address cannot
    open its port before this one is closed."""
    runtime(pool).dhcp.release(vm)
    close_guest_port(pool, vm)


def close_guest_port(pool: SimPool, vm: str) -> None:
    """Stop answering on the guest's address (its lease stays: a suspended guest keeps it)."""
    rt = runtime(pool)
    with rt.lock:
        ip = rt.ips.pop(vm, None)
    if ip and pool.farm.guest_ports is not None:
        pool.farm.guest_ports.close(ip)


def carry_on(pool: SimPool, vm: str, boot: int, windows: bool) -> None:
    """A guest that runs again (unpaused, resumed) carries on where it was:
    it finishes booting, still asks for an address, or answers on the one it has."""
    db = pool.db
    rt = runtime(pool)
    with db.lock:
        rec = db.get("VM", vm)
        gm = db.find("VM_guest_metrics", rec.get("guest_metrics", NULL))
        ip = ((gm or {}).get("networks") or {}).get(f"{_first_device(db, vm)}/ip")
        if ip and not ip.startswith("169.254.") and pool.farm.guest_ports is not None:
            with rt.lock:
                reopen = vm not in rt.ips
                rt.ips[vm] = ip
            if reopen:
                pool.farm.guest_ports.open(ip, rt.image(vm))
    if gm is None:
        schedule_boot(pool, vm, boot, windows)
    elif not (gm.get("networks") or {}):
        schedule_address(pool, vm, boot, windows)


def _first_device(db: Database, vm: str) -> str:
    vif = first_vif(db, vm)
    return (db.tables["VIF"][vif].get("device") or "0") if vif is not None else "0"
