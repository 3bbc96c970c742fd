"""History documents in the seed's shape (one per VM, keyed by its uuid), built in one place.

Existing reports read these fields; dynvm adds its own (request id, host
number, template, failure reason) and never removes one. Every document is
built by `document` from what is known of its VM (`VmFacts`), whoever writes
it (a build, a failed build, an adoption, a release before the build recorded
one, reconciliation), so every document has the seed's fields with the
seed's types; every later change of its state is one of the patches below,
checked against `lifecycle.HISTORY_MOVES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dynvm.core.lifecycle import HistoryState, check_history_move

if TYPE_CHECKING:
    from dynvm.core.records import Lease

POOL_ID = "dynamicpool"
DOC_VERSION = "12"  # the seed's `ver`, a string


def disk_text(disk_bytes: tuple[int, ...] | list[int]) -> str:
    """The seed's `disk`: the VM's disk sizes in bytes, comma-joined, as one string."""
    return ",".join(str(int(b)) for b in disk_bytes)


@dataclass(frozen=True)
class VmFacts:
    """What is known of a VM when its document is written; what is not stays at its default
    (an empty string for the seed's text fields)."""

    vm_uuid: str
    name: str
    owner: str = ""
    os: str = ""
    request_id: str = ""
    host_ref: int | None = None  # N of [xenhostN]
    xen_host: str = ""  # its host.name
    member: str = ""  # the member host it runs on
    template: str = ""
    vcpus: int | None = None
    memory_bytes: int | None = None
    disk_bytes: tuple[int, ...] = ()
    ip: str = ""
    os_version: str = ""
    labels: tuple[str, ...] = ()
    created: float = 0.0  # when its build started (epoch seconds)
    create_secs: float | None = None  # how long the build took; None: never measured
    expires: float = 0.0

    @classmethod
    def of_lease(cls, lease: Lease, **known: Any) -> VmFacts:
        """What a lease knows of its VM (and `known`, what else the caller knows)."""
        return cls(**{"vm_uuid": lease.vm_uuid, "name": lease.name, "owner": lease.owner,
                      "os": lease.os, "request_id": lease.request_id,
                      "host_ref": lease.host_ref, "ip": lease.ip,
                      "labels": tuple(lease.labels), "created": lease.created,
                      "expires": lease.expires, **known})


def document(vm: VmFacts, state: HistoryState, **extra: Any) -> dict[str, Any]:
    """The seed's fields with the seed's types and meanings, then dynvm's own, then `extra`.

    As the seed wrote them: `created_time` is when the VM was ready (epoch
    seconds, a float; `build_started` is when its build began), `origin` the
    name of the Xen host it runs on, `username` the VM's name, `memory` (bytes),
    `cpu` and `disk` (bytes per disk) strings, durations whole seconds. A
    duration never measured (a VM adopted from its tags) is left out.
    """
    measured = vm.create_secs is not None
    create_secs = max(vm.create_secs or 0.0, 0.0)
    doc: dict[str, Any] = {
        "ipaddr": vm.ip,
        "origin": vm.member or vm.xen_host,
        "os": vm.os,
        "state": HistoryState(state).value,
        "poolId": POOL_ID,
        "prevUser": "",
        "username": vm.name,
        "ver": DOC_VERSION,
        "memory": "" if vm.memory_bytes is None else str(int(vm.memory_bytes)),
        "os_version": vm.os_version,
        "name": vm.name,
        "created_time": float(vm.created + create_secs),
        "cpu": "" if vm.vcpus is None else str(int(vm.vcpus)),
        "disk": disk_text(vm.disk_bytes),
        "expired_time": float(vm.expires),
        "labels": list(vm.labels),
        # dynvm's additions
        "owner": vm.owner,
        "uuid": vm.vm_uuid,
        "request_id": vm.request_id,
        "xen_host": vm.xen_host,
        "member_host": vm.member,
        "template": vm.template,
        "build_started": round(vm.created, 3),
    }
    if vm.host_ref is not None:
        doc["xhostref"] = vm.host_ref
    if measured:
        doc["create_duration_secs"] = round(create_secs)
        doc["create_duration_exact_secs"] = round(create_secs, 3)
    doc.update(extra)
    return doc


def failed(vm: VmFacts, reason: str, at: float, **extra: Any) -> dict[str, Any]:
    """The document of a VM that could not be built (or was found abandoned)."""
    return document(vm, HistoryState.FAILED, failure_reason=reason, deleted_time=float(at),
                    **extra)


def _deletion(created: float, at: float, delete_secs: float, reason: str,
              release_state: str | None) -> dict[str, Any]:
    """The seed's deletion fields: `deleted_time` (float), whole-second durations."""
    fields: dict[str, Any] = {
        "deleted_time": float(at),
        "live_duration_secs": max(round(at - float(created)), 0),
        "delete_duration_secs": round(delete_secs),
        "delete_reason": reason,
    }
    if release_state:
        fields["release_state"] = release_state
    return fields


def deleted_patch(doc: dict[str, Any] | None, *, at: float, delete_secs: float,
                  reason: str, release_state: str | None = None) -> dict[str, Any]:
    """A VM's document closed: it is `deleted`, with the seed's deletion fields."""
    check_history_move((doc or {}).get("state"), HistoryState.DELETED)
    created = (doc or {}).get("created_time") or at
    return {"state": HistoryState.DELETED.value,
            **_deletion(created, at, delete_secs, reason, release_state)}


def closed(vm: VmFacts, *, at: float, delete_secs: float, reason: str,
           release_state: str | None = None, **extra: Any) -> dict[str, Any]:
    """The whole document of a VM released before its build had recorded one."""
    return document(vm, HistoryState.DELETED,
                    **_deletion(vm.created, at, delete_secs, reason, release_state), **extra)


def handed_out_patch(*, name: str, owner: str, request_id: str, expires: float,
                     labels: list[str], ready_since: float, at: float,
                     took_secs: float) -> dict[str, Any]:
    """A warm VM handed out: its document names its new caller (`ready` -> `available`)."""
    check_history_move(HistoryState.READY, HistoryState.AVAILABLE)
    return {"name": name, "username": name, "owner": owner,
            "state": HistoryState.AVAILABLE.value, "request_id": request_id,
            "expired_time": float(expires), "labels": labels, "from_warm_pool": True,
            "ready_since": int(ready_since), "handed_out_time": round(at, 3),
            "handout_duration_secs": round(took_secs, 3)}


def expiry_patch(expires: float) -> dict[str, Any]:
    """A lease moved: the seed's `expired_time` (a float)."""
    return {"expired_time": float(expires)}
