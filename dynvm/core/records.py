"""dynvm's domain records: leases, reservations, requests in flight, API tokens.

The state of record the core reasons about; the Store port (`dynvm.core.store`)
keeps them, and every backend stores exactly these fields.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Self

from dynvm.core.lifecycle import FleetState, LeaseState, RequestState

# Short names of the lease states (declared in `dynvm.core.lifecycle`), as the plain
# strings that are stored and written into VM tags (XML-RPC marshals exact str only).
LEASE_PROVISIONING: str = LeaseState.PROVISIONING.value
LEASE_ACTIVE: str = LeaseState.ACTIVE.value
LEASE_READY: str = LeaseState.READY.value
LEASE_RELEASING: str = LeaseState.RELEASING.value


class _Record:
    """A stored document: a dataclass to and from its dict; unknown keys (a newer
    writer's fields) are ignored on reading."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        known = set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Lease(_Record):
    """One dynvm VM's ownership and expiry, keyed by the VM's uuid."""

    vm_uuid: str
    name: str  # the VM's name_label, e.g. "job42" or "job421"
    owner: str  # the name prefix the caller used (the seed's `username`)
    host_ref: int  # N of the [xenhostN] section
    host_uuid: str  # member host the VM runs on
    vm_ref: str
    os: str
    request_id: str
    created: float  # epoch seconds
    expires: float  # epoch seconds
    state: str = LEASE_PROVISIONING  # a LeaseState
    ip: str = ""
    labels: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def with_(self, **changes: Any) -> Lease:
        return replace(self, **changes)


@dataclass
class Reservation(_Record):
    """Capacity held on one member host for a VM being created.

    Held from before the first XenAPI call until the VM is up or has failed.
    After that it may linger until `settle_until`, so that a worker whose
    inventory view has not yet seen the new VM still counts it.
    """

    id: str
    host_key: str  # "<N>/<member host uuid>"
    request_id: str
    os: str
    vcpus: int
    memory_gib: float
    disk_gib: float
    created: float
    expires: float  # safety net: an abandoned reservation frees itself then
    vm_uuid: str | None = None
    settle_until: float | None = None
    owner: str = ""  # token owner the VM is for ("" for anonymous legacy requests)

    def live(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        if self.settle_until is not None:
            return now < self.settle_until
        return now < self.expires


@dataclass
class RequestRecord(_Record):
    """A getservers request in flight, so a restart can tell what was interrupted."""

    id: str
    name: str
    os: str
    count: int
    instance: str  # which service instance runs it (hostname:pid)
    started: float
    state: str = RequestState.RUNNING.value  # a RequestState
    finished: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def runner(self) -> str:
        """The instance running it now: the one that accepted it, or the one whose
        background leader dispatched it from the queue."""
        return str(self.detail.get("instance") or self.instance)


@dataclass
class QueueEntry(_Record):
    """A request waiting for room: its record reads `queued` while this entry exists.

    What the queue's order, its ETA and its dispatcher need, without reading the
    request: the dispatcher claims an entry (`claimed_by` until `claimed_until`)
    before it takes room for it, so two leaders never dispatch one request.
    """

    id: str  # the request's id
    owner: str
    os: str
    count: int
    enqueued: float  # epoch seconds
    deadline: float  # it expires then (`[queue] max_wait_minutes`)
    priority: int = 0
    weight: float = 1.0  # one VM's size in the units fairness counts (`queue.vm_weight`)
    lease_secs: float = 0.0  # how long each of its VMs will be leased
    all_or_none: bool = True
    claimed_by: str | None = None
    claimed_until: float = 0.0

    def claimable(self, holder: str, now: float) -> bool:
        """Nobody holds it, its holder's claim lapsed, or `holder` holds it already."""
        return self.claimed_by in (None, holder) or self.claimed_until <= now


@dataclass
class FleetEntry(_Record):
    """A fleet VM dynvm built (or found) for the fleet directory, by its declared name.

    Its state moves only by `store.fleet.transition`: the claims in it are what
    make a fleet VM exist exactly once, whichever process builds or destroys it.
    """

    name: str
    state: str = FleetState.CREATING.value  # a FleetState
    holder: str = ""  # who holds the claim (creating, removing)
    until: float = 0.0  # when that claim lapses (its holder died)
    vm_uuid: str = ""
    host_ref: int = 0
    created: float = 0.0
    ip: str = ""
    # The background leader's starts of a halted VM: attempts, next (epoch s), error.
    start: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def claimed(self, now: float) -> bool:
        """A live claim: a process is building or destroying the VM now."""
        return self.state != FleetState.PRESENT and self.until > now


# `update_doc` callback: given the current document (None if missing), return
# the new one, or None to delete it. It may run more than once (CAS retries).
DocEdit = Callable[[dict[str, Any] | None], dict[str, Any] | None]

@dataclass
class Token(_Record):
    """An API token's record. Only the hash of the secret is ever stored."""

    id: str  # short public handle, for `token list` / `token revoke`
    owner: str
    hash: str  # sha256 hex of the secret
    admin: bool = False
    created: float = 0.0
    expires: float | None = None
    revoked: float | None = None

    def valid(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self.revoked is None and (self.expires is None or now < self.expires)


# `free_slots` callback for `Reservations.reserve`: given the live reservations on a
# member host, how many more VMs of the wanted kind fit there now.
FreeSlots = Callable[[list[Reservation]], int]


@dataclass(frozen=True)
class QuotaCheck:
    """An owner's quota, checked by `Reservations.reserve` in the same atomic step.

    `room(reservations, leases)` gets the owner's live reservations (every
    host) and leases, and answers how many more of the wanted VMs fit.
    """

    owner: str
    room: Callable[[list[Reservation], list[Lease]], int]


def owner_usage(owner: str, reservations: Iterable[Reservation],
                leases: Iterable[Lease]) -> tuple[list[Reservation], list[Lease]]:
    """An owner's reservations whose VM has no lease yet, and the owner's leases.

    A VM is counted once: by its reservation while it is being built, by its
    lease once the lease exists (the reservation outlives that moment).
    """
    mine = [lease for lease in leases if lease.owner == owner and lease.state != LEASE_READY]
    leased = {lease.vm_uuid for lease in mine}
    res = [r for r in reservations
           if r.owner == owner and (r.vm_uuid is None or r.vm_uuid not in leased)]
    return res, mine


def live_only(items: Iterable[Reservation], now: float | None = None) -> list[Reservation]:
    now = time.time() if now is None else now
    return [r for r in items if r.live(now)]
