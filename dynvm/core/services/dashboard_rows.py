"""One row of the dashboard's tables, as an operator reads it: a member host's load, a
VM leased or not, why a request ended; and the VM table's filter and sort order.

Pure functions of a view or a record, apart from `Dashboard`, which caches the
sections they make: they can be read, and tested, one row at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dynvm.core.lifecycle import (
    VM_SHOWN_OF_LEASE,
    VM_SHOWN_OF_TAG,
    LeaseState,
    MemberShown,
    VmShown,
    tag_state,
)
from dynvm.core.ports import TAG_FLEET, TAG_LEASE, TAG_OWNER, TAG_STATE, HostView, PoolView
from dynvm.core.store import Lease


def member_state(enabled: bool, in_maintenance: bool, drained: bool) -> MemberShown:
    """As an operator names it: maintenance first (it explains a disabled host)."""
    if in_maintenance:
        return MemberShown.IN_MAINTENANCE
    if not enabled:
        return MemberShown.DISABLED
    return MemberShown.DRAINED if drained else MemberShown.UP


MEMBER_TOTALS = ("vms", "vcpus_used", "cpu_count", "memory_total", "memory_free", "memory_used",
                 "disk_total", "disk_used")


def member_row(view: PoolView, m: HostView) -> dict[str, Any]:
    """A member host's load and size as `view` shows it."""
    running = view.running_on(m.uuid)
    return {"name": m.name_label, "uuid": m.uuid, "address": m.address, "vms": len(running),
            "vcpus_used": sum(v.vcpus_max for v in running), "cpu_count": m.cpu_count,
            "memory_total": m.memory_total, "memory_free": m.memory_free,
            "memory_used": m.memory_total - m.memory_free,
            "disk_total": sum(size for size, _ in m.srs.values()),
            "disk_used": sum(used for _, used in m.srs.values())}


def unleased_state(tags: Mapping[str, str], store_unread: bool) -> VmShown:
    """A VM no lease covers: a long-lived VM of the fleet, foreign, or dynvm's without a
    lease ("untracked"). When the leases could not be read, a dynvm VM's own state tag
    says where it is instead."""
    if TAG_FLEET in tags:
        return VmShown.FLEET
    if TAG_OWNER not in tags:
        return VmShown.FOREIGN
    if store_unread:
        state = tag_state(tags.get(TAG_STATE, ""), tags.get(TAG_LEASE, ""))
        return VM_SHOWN_OF_TAG.get(state, VmShown.UNKNOWN) if state else VmShown.UNKNOWN
    return VmShown.UNTRACKED


def tag_number(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def lease_shown(state: str) -> str:
    """A lease's state in operators' words (one a newer dynvm wrote: as it is)."""
    try:
        return VM_SHOWN_OF_LEASE[LeaseState(state)]
    except (KeyError, ValueError):
        return state


def lease_row(lease: Lease, now: float) -> dict[str, Any]:
    return {"uuid": lease.vm_uuid, "name": lease.name, "owner": lease.owner,
            "request_id": lease.request_id, "os": lease.os,
            "state": lease_shown(lease.state), "ip": lease.ip,
            "created": lease.created, "expires": lease.expires}


def with_times(row: dict[str, Any], now: float) -> dict[str, Any]:
    c, e = row.get("created"), row.get("expires")
    row["age_secs"] = int(now - c) if c else None
    row["expires_in_secs"] = int(e - now) if e else None
    return row


VM_SORT_KEYS = ("name", "owner", "os", "host", "ip", "state", "created", "age_secs",
                "expires_in_secs")


def filter_vms(rows: list[dict[str, Any]], *, q: str = "", state: str = "", os: str = "",
               sort: str = "name", desc: bool = False) -> list[dict[str, Any]]:
    """The VM table's filter (substring of name, owner, IP or host) and sort order.

    Ages and expiries sort as their creation and expiry times do, so rows whose
    ages were computed a moment ago sort as they would now.
    """
    q = q.strip().lower()
    out = [r for r in rows
           if (not q or any(q in str(r.get(k) or "").lower()
                            for k in ("name", "owner", "ip", "host", "request_id")))
           and (not state or r["state"] == state) and (not os or r["os"] == os)]
    key = sort if sort in VM_SORT_KEYS else "name"
    # None last whatever the direction
    present = [r for r in out if r.get(key) is not None]
    missing = [r for r in out if r.get(key) is None]
    present.sort(key=lambda r: (r[key], r["name"]) if not isinstance(r[key], str)
                 else (r[key].lower(), r["name"]), reverse=desc)
    return present + missing


def end_reason(detail: dict[str, Any]) -> str:
    """Why a request ended as it did, in full: its own reason, then each failed VM's."""
    parts = [str(detail[k]) for k in ("error", "reason") if detail.get(k)]
    parts += [f"{n}: {why}" for n, why in detail.get("failed") or []]
    return "; ".join(parts)
