"""What a v1 request is: what was asked (`NewRequest`), its states as the API shows them,
and how it is kept in its request record, so that any process (the one building it,
the leader serving it from the queue, one following or cancelling it) reads it back
the same."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from dynvm.core import progress
from dynvm.core.answers import ServersRequest
from dynvm.core.capacity import GIB
from dynvm.core.lifecycle import RequestState
from dynvm.core.records import RequestRecord

CANCEL_LOCK = "cancel:"
API = "v1"

# Request states as the v1 API shows them (declared in `lifecycle`).
RUNNING, DONE, PARTIAL, FAILED, CANCELLED = (RequestState.RUNNING.value, RequestState.DONE.value,
                                             RequestState.PARTIAL.value,
                                             RequestState.FAILED.value,
                                             RequestState.CANCELLED.value)
STATES = frozenset(s.value for s in RequestState)
WAITING = frozenset({RequestState.RUNNING.value, RequestState.QUEUED.value})  # not ended yet
# The OpenSSH public keys a queued request brought, kept in its record only while it
# waits (its VMs get them once it is served); the record keeps their fingerprints.
QUEUED_KEYS = "queued_keys"


@dataclass(frozen=True)
class NewRequest:
    """A validated `POST /api/v1/requests` from `owner`."""

    owner: str
    os: str
    count: int = 1
    name: str | None = None
    cpus: int | None = None
    memory_gib: int | None = None
    lease_minutes: int | None = None
    labels: tuple[str, ...] = ()
    host: int | None = None
    all_or_none: bool = True
    check_ssh: bool = False
    queue: bool = True  # no room now: wait in the queue (False: refused at once, 503)
    priority: int = 0  # in the queue; capped by the owner's `priority.max`
    max_wait_minutes: int | None = None  # in the queue (None: `[queue] max_wait_minutes`)
    counted: bool = True  # its owner's quota applies (not to a legacy call with no token)
    # What the VMs are given (never logged, never in history or a request's params):
    ssh_keys: tuple[str, ...] = field(default=(), repr=False)  # OpenSSH public key lines
    hostname: str | None = None  # None: each VM's name
    user_data: str | None = field(default=None, repr=False)  # a #cloud-config document


# The fields of a NewRequest kept apart from its params in the request record.
SETUP_FIELDS = ("ssh_keys", "hostname", "user_data")


def legacy_view(req: NewRequest) -> ServersRequest:
    return ServersRequest(name=req.name or "v", count=req.count, os=req.os, cpus=req.cpus,
                          mem_bytes=req.memory_gib * GIB if req.memory_gib else None,
                          expires_in_minutes=req.lease_minutes,
                          labels=frozenset(req.labels), xhostref=req.host,
                          all_or_none=req.all_or_none, check_vms=req.check_ssh)


def reserved_steps(names: list[str], now: float) -> dict[str, dict[str, Any]]:
    """Each VM's first step, once room is held for it."""
    return {n: {"step": str(progress.Step.RESERVED), "since": round(now, 3)} for n in names}


def params_of(req: NewRequest) -> dict[str, Any]:
    """The request as asked, kept in its record (a queued one is rebuilt from it)."""
    return {k: (list(v) if isinstance(v, tuple) else v)
            for k, v in asdict(req).items() if k != "owner" and k not in SETUP_FIELDS}


def request_of(rec: RequestRecord) -> NewRequest:
    """The request a record was made for, as asked: its params, with the hostname and
    cloud-config its record keeps, and the keys it brought (kept while it is queued)."""
    params = dict(rec.detail.get("params", {}))
    params["labels"] = tuple(params.get("labels", ()))
    known = set(NewRequest.__dataclass_fields__) - {"owner", *SETUP_FIELDS}
    setup = rec.detail.get("setup") or {}
    return NewRequest(owner=str(rec.detail.get("owner", "")),
                      **{k: v for k, v in params.items() if k in known},
                      hostname=setup.get("hostname"), user_data=setup.get("user_data"),
                      ssh_keys=tuple(rec.detail.get(QUEUED_KEYS) or ()))
