"""History documents in the seed's shape (one per VM, keyed by its uuid).

Existing reports read these fields; dynvm adds its own (request id, host
number, template, failure reason) and never removes one.
"""

from __future__ import annotations

from typing import Any

from dynvm.config import HostConfig, OsSpec

POOL_ID = "dynamicpool"
DOC_VERSION = "1"


def created_doc(*, vm_uuid: str, name: str, owner: str, host: HostConfig, member: str,
                spec: OsSpec, vcpus: int, memory_bytes: int, ip: str, os_version: str,
                created: float, create_secs: float, expires: float, labels: list[str],
                request_id: str, state: str = "available") -> dict[str, Any]:
    return {
        "ipaddr": ip,
        "origin": host.name,
        "os": spec.key,
        "state": state,
        "poolId": POOL_ID,
        "prevUser": "",
        "username": owner,
        "ver": DOC_VERSION,
        "memory": memory_bytes,
        "os_version": os_version,
        "name": name,
        "created_time": int(created),
        "create_duration_secs": round(create_secs, 3),
        "cpu": vcpus,
        "disk": spec.disk_gib,
        "expired_time": int(expires),
        "labels": labels,
        # dynvm's additions
        "uuid": vm_uuid,
        "request_id": request_id,
        "xhostref": host.ref,
        "member_host": member,
        "template": spec.template,
    }


def failed_doc(base: dict[str, Any], reason: str, at: float) -> dict[str, Any]:
    doc = dict(base)
    doc.update({"state": "failed", "failure_reason": reason, "deleted_time": int(at)})
    return doc


def deleted_patch(doc: dict[str, Any] | None, *, at: float, delete_secs: float,
                  reason: str, release_state: str | None = None) -> dict[str, Any]:
    created = (doc or {}).get("created_time") or at
    patch: dict[str, Any] = {
        "state": "deleted",
        "deleted_time": int(at),
        "live_duration_secs": max(int(at - float(created)), 0),
        "delete_duration_secs": round(delete_secs, 3),
        "delete_reason": reason,
    }
    if release_state:
        patch["release_state"] = release_state
    return patch
