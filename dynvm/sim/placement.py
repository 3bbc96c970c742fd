"""Where a VM may run: the memory it needs, a host's free memory, hosts that
are usable, and the SRs a host can reach (VM_REQUIRES_SR)."""

from __future__ import annotations

from typing import Any

from .context import CallContext
from .db import NULL, Database
from .storageops import sr_plugged
from .wire import XapiError

DEFAULT_OVERHEAD = 0


def needed_memory(rec: dict[str, Any]) -> int:
    """What starting the VM takes from its host: static max plus overhead."""
    return int(rec.get("memory_static_max") or 0) + int(rec.get("memory_overhead") or DEFAULT_OVERHEAD)


def host_free(db: Database, host: str) -> tuple[str | None, int]:
    """(host_metrics reference or None, free bytes) of `host`."""
    hrec = db.get("host", host)
    metrics = hrec.get("metrics", NULL)
    mrec = db.find("host_metrics", metrics)
    return (metrics if mrec else None), int(mrec["memory_free"]) if mrec else 0


def adjust_free(db: Database, host: str, delta: int) -> None:
    """Move `host`'s free memory by `delta` bytes (a host without metrics is left alone)."""
    metrics, free = host_free(db, host)
    if metrics is not None:
        db.modify("host_metrics", metrics, {"memory_free": free + delta})


def assert_host_usable(ctx: CallContext, host: str) -> None:
    """xapi: HOST_OFFLINE, then HOST_DISABLED."""
    hrec = ctx.db.get("host", host)
    sim = ctx.pool.host_by_ref(host)
    if sim is not None and not sim.online:
        raise XapiError("HOST_OFFLINE", host)
    if not hrec.get("enabled", True):
        raise XapiError("HOST_DISABLED", host)


def unreachable_sr(db: Database, rec: dict[str, Any], host: str) -> str | None:
    """The first SR of the VM's disks (and of a suspended VM's memory image)
    that `host` has no plugged PBD to (lock held)."""
    vdis = [(db.find("VBD", vbd) or {"empty": True}) for vbd in rec.get("VBDs", [])]
    refs = [b.get("VDI", NULL) for b in vdis if not b.get("empty")]
    if rec.get("power_state") == "Suspended":
        refs.append(rec.get("suspend_VDI", NULL))
    for ref in refs:
        vdi = db.find("VDI", ref)
        if vdi is None:
            continue
        srrec = db.find("SR", vdi.get("SR", NULL))
        if srrec is None:
            continue
        if not sr_plugged(db, srrec, host):
            return str(vdi["SR"])
    return None


def assert_can_see_srs(db: Database, vm: str, rec: dict[str, Any], host: str) -> None:
    """xapi: a VM boots or lands only where every disk's SR is plugged (VM_REQUIRES_SR)."""
    sr = unreachable_sr(db, rec, host)
    if sr is not None:
        raise XapiError("VM_REQUIRES_SR", vm, sr)


def choose_host(ctx: CallContext, rec: dict[str, Any], needed: int) -> str:
    """The host VM.start picks: the affinity host first, then the first
    enabled, online host that reaches the VM's SRs and has the memory."""
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
        if unreachable_sr(db, rec, h) is not None:
            continue
        _, free = host_free(db, h)
        if free >= needed:
            return h
        candidates.append((free, h))
    if candidates:
        free, _ = max(candidates)
        raise XapiError("HOST_NOT_ENOUGH_FREE_MEMORY", needed, free)
    raise XapiError("NO_HOSTS_AVAILABLE")
