"""The store contract: dynvm's state of record, shared by every worker and instance.

Everything another process must agree on lives behind this interface: history
documents, leases, capacity reservations, requests in flight and the leader
lock. Backends (SQLite, Couchbase) implement it; the core only sees `Store`.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any


class StoreError(Exception):
    """Base class for store failures."""


class StoreUnavailable(StoreError):
    """The backend cannot be reached (or timed out) after bounded retries.

    New VM requests are refused with 503 when this is raised: capacity cannot
    be reserved safely without the store.
    """


class Conflict(StoreError):
    """A compare-and-swap kept failing after bounded retries."""


# Lease states.
LEASE_PROVISIONING = "provisioning"  # VM being built for a caller
LEASE_ACTIVE = "active"  # handed out, counting down to expiry
LEASE_READY = "ready"  # warm-pool VM, owned by nobody yet
LEASE_RELEASING = "releasing"  # being destroyed


@dataclass
class Lease:
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
    state: str = LEASE_PROVISIONING
    ip: str = ""
    labels: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Lease:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def with_(self, **changes: Any) -> Lease:
        return replace(self, **changes)


@dataclass
class Reservation:
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reservation:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class RequestRecord:
    """A getservers request in flight, so a restart can tell what was interrupted."""

    id: str
    name: str
    os: str
    count: int
    instance: str  # which service instance runs it (hostname:pid)
    started: float
    state: str = "running"  # running | done | failed | interrupted
    finished: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestRecord:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


# `update_doc` callback: given the current document (None if missing), return
# the new one, or None to delete it. It may run more than once (CAS retries).
DocEdit = Callable[[dict[str, Any] | None], dict[str, Any] | None]

@dataclass
class Token:
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Token:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


# `free_slots` callback for Store.reserve: given the live reservations on a
# member host, how many more VMs of the wanted kind fit there now.
FreeSlots = Callable[[list[Reservation]], int]


@dataclass(frozen=True)
class QuotaCheck:
    """An owner's quota, checked by `Store.reserve` in the same atomic step.

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


class Store(abc.ABC):
    """dynvm's state of record. Every method is safe across processes."""

    # -- history (the seed's documents, keyed by VM uuid) -------------------
    @abc.abstractmethod
    def put_history(self, vm_uuid: str, doc: dict[str, Any]) -> None:
        """Create or replace a VM's history document."""

    @abc.abstractmethod
    def update_history(self, vm_uuid: str, patch: dict[str, Any]) -> None:
        """Merge `patch` into a history document (created if missing)."""

    @abc.abstractmethod
    def get_history(self, vm_uuid: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def history(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Most recent history documents first (by created_time)."""

    # -- leases ---------------------------------------------------------------
    @abc.abstractmethod
    def put_lease(self, lease: Lease) -> None: ...

    @abc.abstractmethod
    def get_lease(self, vm_uuid: str) -> Lease | None: ...

    @abc.abstractmethod
    def update_lease(self, vm_uuid: str, **changes: Any) -> Lease | None:
        """Atomically change fields of a lease; None if it does not exist."""

    @abc.abstractmethod
    def claim_lease(self, vm_uuid: str, expect_state: str, **changes: Any) -> Lease | None:
        """Change a lease only if it is in `expect_state` (compare-and-set).

        Used to hand out a warm VM exactly once and to let exactly one
        releaser destroy a VM. Returns the new lease, or None if another
        process got there first.
        """

    @abc.abstractmethod
    def delete_lease(self, vm_uuid: str) -> None: ...

    @abc.abstractmethod
    def leases(self, *, name: str | None = None, state: str | None = None,
               os: str | None = None) -> list[Lease]:
        """Leases filtered by exact VM name, state and/or OS."""

    @abc.abstractmethod
    def due_leases(self, now: float) -> list[Lease]:
        """Active leases whose expiry is at or before `now`."""

    # -- capacity reservations -----------------------------------------------
    @abc.abstractmethod
    def reserve(self, host_key: str, wanted: list[Reservation],
                free_slots: FreeSlots, quota: QuotaCheck | None = None) -> list[Reservation]:
        """Atomically take as many of `wanted` as fit on `host_key`.

        Within one atomic step: read the live reservations of the host, call
        `free_slots(live)` to learn how many more fit, store the first
        min(len(wanted), that) of `wanted`, and return those. Two processes
        calling this at once can never both take the last slot.

        With `quota`, the owner's usage (`owner_usage`) is read in the same
        atomic step and at most `quota.room(...)` are taken, so two requests
        of one owner can never both take the last unit of its quota.
        """

    def reserve_many(self, batches: list[tuple[str, list[Reservation], FreeSlots]],
                     quota: QuotaCheck | None = None) -> list[list[Reservation]]:
        """`reserve` on several hosts, answered per host in order.

        A backend may run them as one atomic step (one commit instead of one
        per host: a 10-VM request spread over 8 hosts is then answered sooner);
        by default they run one after the other, each atomic on its own.
        """
        return [self.reserve(hk, wanted, free, quota) for hk, wanted, free in batches]

    @abc.abstractmethod
    def settle_reservation(self, res_id: str, *, vm_uuid: str | None = None,
                           settle_secs: float = 0.0) -> None:
        """The VM is up (or failed): keep counting it for `settle_secs`, then drop it."""

    @abc.abstractmethod
    def drop_reservations(self, request_id: str) -> int:
        """Remove every reservation of a request; returns how many."""

    @abc.abstractmethod
    def reservations(self, host_key: str | None = None) -> list[Reservation]:
        """Live reservations, of one host or of all."""

    # -- requests in flight -----------------------------------------------------
    @abc.abstractmethod
    def put_request(self, req: RequestRecord) -> None: ...

    @abc.abstractmethod
    def finish_request(self, request_id: str, state: str,
                       detail: dict[str, Any] | None = None) -> None: ...

    @abc.abstractmethod
    def requests(self, state: str | None = None) -> list[RequestRecord]: ...

    @abc.abstractmethod
    def get_request(self, request_id: str) -> RequestRecord | None: ...

    @abc.abstractmethod
    def note_request_vm(self, request_id: str, name: str, entry: dict[str, Any]) -> None:
        """Merge `entry` into `detail["vms"][name]` of a request (no-op if it is unknown).

        How far each VM of a request has got, for anyone watching it from
        another worker or instance.
        """

    # -- API tokens ----------------------------------------------------------------
    @abc.abstractmethod
    def put_token(self, token: Token) -> None: ...

    @abc.abstractmethod
    def token_by_hash(self, token_hash: str) -> Token | None: ...

    @abc.abstractmethod
    def tokens(self) -> list[Token]: ...

    @abc.abstractmethod
    def revoke_token(self, token_id: str, when: float) -> bool:
        """Mark a token revoked; False if no token has that id."""

    # -- leader lock ---------------------------------------------------------------
    @abc.abstractmethod
    def acquire_leader(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew the lock `name` for `holder` for `ttl` seconds.

        True if `holder` holds it afterwards. A lock whose TTL has run out may
        be taken by anyone.
        """

    @abc.abstractmethod
    def release_leader(self, name: str, holder: str) -> None: ...

    @abc.abstractmethod
    def leader(self, name: str) -> str | None:
        """Current holder of the lock, or None if free or lapsed."""

    # -- deployment identity ---------------------------------------------------------
    @abc.abstractmethod
    def deployment_id(self, new: str | None) -> str | None:
        """This deployment's identity: the one stored, or `new`, stored now if there is none.

        With `new=None` it only reads (None while no identity was assigned).
        Atomic: of two processes starting at once on an empty store, both get
        the same answer. Every VM dynvm builds is tagged with it, so a
        deployment never acts on another's VMs.
        """

    # -- operator documents (host drain, maintenance runs) --------------------------
    @abc.abstractmethod
    def get_doc(self, key: str) -> dict[str, Any] | None:
        """A small JSON document of dynvm's own state by key, or None."""

    @abc.abstractmethod
    def update_doc(self, key: str, edit: DocEdit) -> dict[str, Any] | None:
        """Atomically replace the document by `edit(current)` (None deletes it).

        Returns what was stored (None when deleted or left missing). Two
        processes editing at once never lose each other's change.
        """

    # -- lifecycle -----------------------------------------------------------------
    def ping(self) -> None:  # noqa: B027 - optional for backends with nothing to check
        """Raise StoreUnavailable if the backend cannot be reached."""

    def ping_write(self) -> None:
        """Raise StoreUnavailable if the backend cannot be written (locked, full, read-only).

        Backends override it with a real, tiny write; by default a read is all we know.
        """
        self.ping()

    def close(self) -> None:  # noqa: B027 - optional for backends with nothing to release
        """Release connections."""


def live_only(items: Iterable[Reservation], now: float | None = None) -> list[Reservation]:
    now = time.time() if now is None else now
    return [r for r in items if r.live(now)]
