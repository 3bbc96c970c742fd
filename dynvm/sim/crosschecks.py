"""The checks of a cross-pool migration, in xapi's terms, and the destination pool as
the source reaches it (`crosspool` does the move).

Reaching the destination: through the token's `master` address and session,
CANNOT_CONTACT_HOST when it does not answer. The checks, both pools' locks
held: power state, the CPU vendor and features the VM booted with against the
destination host's, the host online and enabled, every disk mapped to an SR of
the destination that the host reaches and that (as the source's) supports
migration, every VIF mapped to a destination network, no VM of that uuid there
already, and room for its memory when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .context import CallContext
from .db import NULL, Database
from .placement import host_free, needed_memory
from .vmchecks import check_operation, truthy
from .wire import XapiError

if TYPE_CHECKING:
    from .farm import SimHost, SimPool

TOKEN_KEYS = ("SM", "host", "xenops", "session_id", "master")
VENDOR_DIFFERS = "VM last booted on a host which had a CPU from a different vendor."
FEATURES_MISSING = "VM last booted on a CPU with features this host's CPU does not have."


@dataclass
class Remote:
    """The destination as the source reaches it: its master, over the token's session."""

    ctx: CallContext
    pool: SimPool
    master: SimHost
    session: str

    @property
    def db(self) -> Database:
        return self.pool.db

    def step(self, method: str) -> None:
        """One call the source makes on the destination: counted, faults and holds honoured,
        CANNOT_CONTACT_HOST when it does not answer, SESSION_INVALID when the token's
        session is gone."""
        faults = self.ctx.farm.faults
        faults.count(self.master.name_label, method)
        faults.wait_held(method, method)
        if self.master.unreachable or not self.master.online:
            raise XapiError("CANNOT_CONTACT_HOST", self.master.address)
        self.pool.sessions.check(self.session, self.master)
        fail = faults.take_failure(self.master.name_label, method, method)
        if fail:
            raise XapiError(*fail)


def reach(ctx: CallContext, dest: dict[str, str]) -> Remote:
    missing = [k for k in TOKEN_KEYS if k not in dest]
    if missing:
        raise XapiError("INTERNAL_ERROR", f"Not_found: {missing[0]} missing from dest")
    address = urlsplit(dest["master"]).netloc
    master = next((h for h in ctx.farm.hosts if h.address == address), None)
    if master is None or master.unreachable or not master.online:
        raise XapiError("CANNOT_CONTACT_HOST", address)
    return Remote(ctx, master.pool, master, dest["session_id"])


# ------------------------------------------------------------ the checks
@dataclass
class Move:
    vm: str
    rec: dict[str, Any]
    host: str  # destination host ref
    disks: list[tuple[str, str, str]]  # (source VBD, source VDI, destination SR)
    vifs: list[tuple[str, str]]  # (source VIF, destination network)
    live: bool
    memory: int
    copies: dict[str, str] = field(default_factory=dict)  # source VDI -> its copy


def check(ctx: CallContext, remote: Remote, vm: str, dest: dict[str, str], live: bool,
           vdi_map: dict[str, str], vif_map: dict[str, str], options: dict[str, str]) -> Move:
    """xapi's checks of a cross-pool move (both pools' locks held)."""
    db, rdb = ctx.db, remote.db
    rec = db.get("VM", vm)
    force = truthy((options or {}).get("force", "false"))
    if truthy((options or {}).get("copy", "false")):
        raise XapiError("NOT_IMPLEMENTED", "copy mode is not modelled by the simulator")
    check_operation(vm, rec, "migrate_send", ("running", "halted"), strict=not force, db=db)
    host = dest["host"]
    hrec = rdb.find("host", host)
    if hrec is None:
        raise XapiError("HANDLE_INVALID", "host", host)
    running = rec["power_state"] == "Running"
    if live and running and not force:
        _assert_cpu(db, vm, rec, host, hrec)
    sim = remote.pool.host_by_ref(host)
    if sim is not None and not sim.online:
        raise XapiError("HOST_OFFLINE", host)
    if not hrec.get("enabled", True):
        raise XapiError("HOST_DISABLED", host)
    disks = _disks(db, rdb, vm, rec, host, vdi_map)
    vifs = []
    for vif in rec.get("VIFs", []):
        if vif not in db.tables["VIF"]:
            continue
        net = vif_map.get(vif)
        if net is None:
            raise XapiError("VIF_NOT_IN_MAP", vif)
        if rdb.find("network", net) is None:
            raise XapiError("HANDLE_INVALID", "network", net)
        vifs.append((vif, net))
    if rdb.select("VM", uuid=rec["uuid"]):
        raise XapiError("DUPLICATE_VM", rec["uuid"])
    memory = needed_memory(rec) if running else 0
    if memory:
        _, free = host_free(rdb, host)
        if free < memory:
            raise XapiError("HOST_NOT_ENOUGH_FREE_MEMORY", memory, free)
    return Move(vm, rec, host, disks, vifs, live and running, memory)


def _assert_cpu(db: Database, vm: str, rec: dict[str, Any], host: str,
                hrec: dict[str, Any]) -> None:
    """xapi's Cpuid_helpers: the vendor it booted on, and no CPU feature the host lacks."""
    booted = rec.get("last_boot_CPU_flags") or {}
    info = hrec.get("cpu_info") or {}
    vendor = booted.get("vendor")
    if vendor and info.get("vendor") and vendor != info["vendor"]:
        raise XapiError("VM_INCOMPATIBLE_WITH_THIS_HOST", vm, host, VENDOR_DIFFERS)
    need, have = _bits(booted.get("features", "")), _bits(info.get("features_hvm", ""))
    if need is not None and have is not None and need & ~have:
        raise XapiError("VM_INCOMPATIBLE_WITH_THIS_HOST", vm, host, FEATURES_MISSING)


def _bits(features: str) -> int | None:
    """xapi's CPU feature words ("1fcbfbff-f7fa3223-...") as one number."""
    try:
        return int(features.replace("-", ""), 16) if features else None
    except ValueError:
        return None


def _disks(db: Database, rdb: Database, vm: str, rec: dict[str, Any], host: str,
           vdi_map: dict[str, str]) -> list[tuple[str, str, str]]:
    out = []
    for vbd in rec.get("VBDs", []):
        brec = db.find("VBD", vbd)
        if brec is None or brec.get("empty") or brec.get("type") == "CD":
            continue  # xapi ejects a CD before a cross-pool move
        vdi = brec.get("VDI", NULL)
        vrec = db.find("VDI", vdi)
        if vrec is None:
            continue
        sr = vdi_map.get(vdi)
        if sr is None:
            raise XapiError("VDI_NOT_IN_MAP", vdi)
        if (vrec.get("sm_config") or {}).get("on_boot") == "reset" or vrec.get("on_boot") == "reset":
            raise XapiError("VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION", vdi)
        srrec = rdb.find("SR", sr)
        if srrec is None:
            raise XapiError("HANDLE_INVALID", "SR", sr)
        for ref, r in ((vrec.get("SR", NULL), db.find("SR", vrec.get("SR", NULL))), (sr, srrec)):
            if r is not None and "vdi_snapshot" not in (r.get("allowed_operations") or []):
                raise XapiError("SR_DOES_NOT_SUPPORT_MIGRATION", ref)
        if not any(rdb.tables["PBD"].get(p, {}).get("host") == host
                   and rdb.tables["PBD"][p].get("currently_attached")
                   for p in srrec.get("PBDs", [])):
            raise XapiError("VM_REQUIRES_SR", vm, sr)
        out.append((vbd, vdi, sr))
    return out
