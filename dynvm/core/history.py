"""History documents in the seed's shape (one per VM, keyed by its uuid).

Existing reports read these fields; dynvm adds its own (request id, host
number, template, failure reason) and never removes one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dynvm.config import HostConfig, OsSpec

if TYPE_CHECKING:
    from dynvm.core.records import Lease

POOL_ID = "dynamicpool"
DOC_VERSION = "12"  # the seed's `ver`, a string


def disk_text(disk_bytes: list[int]) -> str:
    """The seed's `disk`: the VM's disk sizes in bytes, comma-joined, as one string."""
    return ",".join(str(int(b)) for b in disk_bytes)


def created_doc(*, vm_uuid: str, name: str, owner: str, host: HostConfig, member: str,
                spec: OsSpec, vcpus: int, memory_bytes: int, ip: str, os_version: str,
                created: float, create_secs: float, expires: float, labels: list[str],
                request_id: str, state: str = "available",
                disk_bytes: list[int] | None = None) -> dict[str, Any]:
    """The seed's fields with the seed's types and meanings, then dynvm's own.

    As the seed wrote them: `created_time` is when the VM was ready (epoch
    seconds, a float; `created` is when its build started), `origin` the name
    of the Xen host it runs on, `username` the VM's name, `memory` (bytes),
    `cpu` and `disk` (bytes per disk) strings, durations whole seconds.
    """
    ready = created + max(create_secs, 0.0)
    disks = disk_bytes if disk_bytes else [spec.disk_gib * 2**30]
    return {
        "ipaddr": ip,
        "origin": member or host.name,
        "os": spec.key,
        "state": state,
        "poolId": POOL_ID,
        "prevUser": "",
        "username": name,
        "ver": DOC_VERSION,
        "memory": str(int(memory_bytes)),
        "os_version": os_version,
        "name": name,
        "created_time": float(ready),
        "create_duration_secs": round(create_secs),
        "cpu": str(int(vcpus)),
        "disk": disk_text(disks),
        "expired_time": float(expires),
        "labels": labels,
        # dynvm's additions
        "owner": owner,
        "uuid": vm_uuid,
        "request_id": request_id,
        "xhostref": host.ref,
        "xen_host": host.name,
        "member_host": member,
        "template": spec.template,
        "build_started": round(created, 3),
        "create_duration_exact_secs": round(create_secs, 3),
    }


def lease_doc(lease: Lease) -> dict[str, Any]:
    """The seed's fields as far as a lease knows them: the document of a VM released
    before its build had recorded one (it had no IP, no measured sizes yet)."""
    return {
        "ipaddr": lease.ip, "os": lease.os, "state": "available", "poolId": POOL_ID,
        "prevUser": "", "username": lease.name, "ver": DOC_VERSION, "name": lease.name,
        "created_time": float(lease.created), "expired_time": float(lease.expires),
        "labels": list(lease.labels), "owner": lease.owner, "uuid": lease.vm_uuid,
        "request_id": lease.request_id, "xhostref": lease.host_ref,
    }


def failed_doc(base: dict[str, Any], reason: str, at: float) -> dict[str, Any]:
    doc = dict(base)
    doc.update({"state": "failed", "failure_reason": reason, "deleted_time": float(at)})
    return doc


def deleted_patch(doc: dict[str, Any] | None, *, at: float, delete_secs: float,
                  reason: str, release_state: str | None = None) -> dict[str, Any]:
    """The seed's deletion fields: `deleted_time` (float), whole-second durations."""
    created = (doc or {}).get("created_time") or at
    patch: dict[str, Any] = {
        "state": "deleted",
        "deleted_time": float(at),
        "live_duration_secs": max(round(at - float(created)), 0),
        "delete_duration_secs": round(delete_secs),
        "delete_reason": reason,
    }
    if release_state:
        patch["release_state"] = release_state
    return patch
