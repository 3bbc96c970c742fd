"""Pool HA: `pool.enable_ha`, `pool.disable_ha`, `pool.set_ha_host_failures_to_tolerate`.

Modelled on xapi's checks and effects (no xHA daemon, no fencing):
enable refuses when HA is on (HA_IS_ENABLED) or a host is not live
(HOST_OFFLINE), picks the first heartbeat SR (or, given none, the first SR
every host has a plugged PBD to), places a statefile VDI there (reused on the
next enable), records `ha_statefiles` and `ha_configuration` exactly as given
(xapi applies its 30 s default `timeout` when the map has none), then sets
`ha_enabled`. Disable clears `ha_enabled`, `ha_plan_exists_for` and
`ha_statefiles`; like xapi it leaves `ha_configuration` as it was.
"""

from __future__ import annotations

from typing import Any

from . import sraccount
from .context import CallContext
from .db import NULL
from .storageops import sr_pbds
from .wire import XapiError

STATEFILE_BYTES = 4096 + 64 * 4096  # xapi's minimum statefile size
NO_STATEFILE_TYPES = frozenset({"iso", "udev"})  # SMs without VDI_GENERATE_CONFIG


def _pool(ctx: CallContext) -> tuple[str, dict[str, Any]]:
    ref, rec = next(iter(ctx.db.tables["pool"].items()))
    return ref, rec


def _host_live(ctx: CallContext, host: str) -> bool:
    sim = ctx.pool.host_by_ref(host)
    if sim is not None and not sim.online:
        return False
    rec = ctx.db.tables["host"][host]
    metrics = ctx.db.find("host_metrics", rec.get("metrics", NULL))
    return bool(metrics and metrics.get("live"))


def _assert_statefile_sr(ctx: CallContext, sr: str) -> None:
    """xapi: every host has a plugged PBD to the SR, and its SM can attach offline."""
    db = ctx.db
    srrec = db.get("SR", sr)
    pbds = sr_pbds(db, srrec)
    if {p.get("host") for p in pbds} < set(db.tables["host"]) or not all(
            p.get("currently_attached") for p in pbds):
        raise XapiError("SR_HAS_NO_PBDS", sr)
    if srrec.get("type") in NO_STATEFILE_TYPES or srrec.get("content_type") == "iso":
        raise XapiError("SR_OPERATION_NOT_SUPPORTED", sr)


def _statefile(ctx: CallContext, sr: str) -> str:
    db = ctx.db
    for vdi in db.get("SR", sr).get("VDIs", []):
        rec = db.find("VDI", vdi)
        if rec is not None and rec.get("type") == "ha_statefile":
            return vdi
    sraccount.charge(db, sr, STATEFILE_BYTES, STATEFILE_BYTES)
    return db.create("VDI", {"name_label": "Statefile for HA",
                             "name_description": "Used for storage heartbeating", "SR": sr,
                             "virtual_size": STATEFILE_BYTES, "physical_utilisation": STATEFILE_BYTES,
                             "type": "ha_statefile", "sm_config": {"type": "raw"},
                             "managed": True})


def pool_enable_ha(ctx: CallContext, heartbeat_srs: list[str], configuration: dict) -> None:
    db = ctx.db
    with db.lock:
        ref, rec = _pool(ctx)
        if rec.get("ha_enabled"):
            raise XapiError("HA_IS_ENABLED")
        for host in db.tables["host"]:
            if not _host_live(ctx, host):
                raise XapiError("HOST_OFFLINE", host)
        for sr in heartbeat_srs:
            db.get("SR", sr)
        if heartbeat_srs:
            sr = heartbeat_srs[0]
            _assert_statefile_sr(ctx, sr)
        else:
            usable = []
            for candidate in db.tables["SR"]:
                try:
                    _assert_statefile_sr(ctx, candidate)
                except XapiError:
                    continue
                usable.append(candidate)
            if not usable:
                raise XapiError("CANNOT_CREATE_STATE_FILE")
            sr = usable[0]
        statefile = _statefile(ctx, sr)
        ntol = int(rec.get("ha_host_failures_to_tolerate") or 0)
        db.modify("pool", ref, {
            "ha_enabled": True, "ha_configuration": dict(configuration),
            "ha_statefiles": [statefile], "ha_cluster_stack": "xhad",
            "ha_plan_exists_for": min(ntol, max(0, len(db.tables["host"]) - 1)),
            "ha_overcommitted": False,
        })


def pool_disable_ha(ctx: CallContext) -> None:
    with ctx.db.lock:
        ref, rec = _pool(ctx)
        if not rec.get("ha_enabled"):
            raise XapiError("HA_NOT_ENABLED")
        ctx.db.modify("pool", ref, {"ha_enabled": False, "ha_plan_exists_for": 0,
                                    "ha_statefiles": []})


def pool_set_ntol(ctx: CallContext, pool: str, value: int) -> None:
    with ctx.db.lock:
        rec = ctx.db.get("pool", pool)
        if value < 0:
            raise XapiError("INVALID_VALUE", "ha_host_failures_to_tolerate", str(value))
        changes: dict[str, Any] = {"ha_host_failures_to_tolerate": value}
        if rec.get("ha_enabled"):
            possible = max(0, len(ctx.db.tables["host"]) - 1)
            if value > possible and not rec.get("ha_allow_overcommit"):
                raise XapiError("HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN")
            changes["ha_plan_exists_for"] = min(value, possible)
        ctx.db.modify("pool", pool, changes)


def elect_successor(ctx: CallContext, leaving: str) -> str | None:
    """With HA on, a live member takes over from a master that goes down (lock held)."""
    db = ctx.db
    ref, rec = _pool(ctx)
    if not rec.get("ha_enabled") or rec.get("master") != leaving:
        return None
    for host in db.tables["host"]:
        if host != leaving and _host_live(ctx, host):
            db.modify("pool", ref, {"master": host})
            return host
    return None
