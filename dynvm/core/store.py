"""The store contract: dynvm's state of record, shared by every worker and instance.

Everything another process must agree on lives behind this interface: history
documents, leases, capacity reservations, requests in flight and TTL locks. Backends (SQLite, Couchbase) implement it; the core only sees `Store`.
"""

from __future__ import annotations

import abc
from typing import Any

from dynvm.core import lifecycle
from dynvm.core.records import (
    LEASE_ACTIVE,
    LEASE_PROVISIONING,
    LEASE_READY,
    LEASE_RELEASING,
    DocEdit,
    FreeSlots,
    Lease,
    QuotaCheck,
    RequestRecord,
    Reservation,
    Token,
    live_only,
    owner_usage,
)

__all__ = [
    "LEASE_ACTIVE",
    "LEASE_PROVISIONING",
    "LEASE_READY",
    "LEASE_RELEASING",
    "Conflict",
    "DocEdit",
    "FreeSlots",
    "Lease",
    "QuotaCheck",
    "RequestRecord",
    "Reservation",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Token",
    "live_only",
    "owner_usage",
    "plan_reservations",
]


class StoreError(Exception):
    """Base class for store failures."""


class StoreUnavailable(StoreError):
    """The backend cannot be reached (or timed out) after bounded retries.

    New VM requests are refused with 503 when this is raised: capacity cannot
    be reserved safely without the store.
    """


class Conflict(StoreError):
    """A compare-and-swap kept failing after bounded retries."""


def plan_reservations(items: list[Reservation], wanted: list[Reservation], free_slots: FreeSlots,
                      room_left: int | None, now: float
                      ) -> tuple[list[Reservation], list[Reservation], list[Reservation]]:
    """The reserve rule, applied by every backend inside its atomic step on one host.

    From the host's stored `items`, returns (live, already, taken): the live
    reservations, those of `wanted` the caller already holds (a retry gets
    what it has), and those it takes now: as many as `free_slots(live)` and
    the owner's `room_left` (None: no quota) allow.
    """
    live = [r for r in items if r.live(now)]
    held = {r.id for r in live}
    already = [w for w in wanted if w.id in held]
    fresh = [w for w in wanted if w.id not in held]
    room = max(0, int(free_slots(live)))
    if room_left is not None:
        room = min(room, max(room_left, 0))
    return live, already, fresh[:room]


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

    @abc.abstractmethod
    def history_mark(self) -> str:
        """A token that changes with every history write, by any process.

        Readers that keep what they read of the history (the dashboard and the
        metrics of each worker) reread only when it changed, so every worker
        shows the same history. Writers change it after the document, readers
        read it before the documents.
        """

    # -- leases ---------------------------------------------------------------
    @abc.abstractmethod
    def put_lease(self, lease: Lease) -> None:
        """Create or replace a lease; its state must be a birth state (`lifecycle.check_birth`)."""

    @abc.abstractmethod
    def get_lease(self, vm_uuid: str) -> Lease | None: ...

    def update_lease(self, vm_uuid: str, **changes: Any) -> Lease | None:
        """Atomically change fields of a lease other than its state; None if it does not exist."""
        lifecycle.check_changes(changes)
        return self._swap_lease(vm_uuid, None, changes)

    def transition(self, vm_uuid: str, src: str, dst: str, **changes: Any) -> Lease | None:
        """Move a lease from `src` to `dst` (compare-and-set), changing `changes` with it.

        Only the moves `dynvm.core.lifecycle` declares are accepted: any other
        raises IllegalTransition and changes nothing. Returns the new lease, or
        None if the lease is missing or no longer in `src` (another process got
        there first): that is how a warm VM is handed out exactly once and
        exactly one releaser destroys a VM.
        """
        lifecycle.lease_move(src, dst)
        lifecycle.check_changes(changes)
        return self._swap_lease(vm_uuid, src, {**changes, "state": lifecycle.LeaseState(dst).value})

    @abc.abstractmethod
    def _swap_lease(self, vm_uuid: str, expect_state: str | None,
                    changes: dict[str, Any]) -> Lease | None:
        """Backends: in one atomic step, apply `changes` to a lease if it is in
        `expect_state` (any state for None). Callers use `transition` / `update_lease`."""

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
                       detail: dict[str, Any] | None = None) -> None:
        """Move a request to `state`, merging `detail` (no-op if the request is unknown).

        The move is checked in the same atomic step against the request's
        current state (`lifecycle.check_request_move`): IllegalTransition if
        the lifecycle does not declare it.
        """

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

    # -- TTL locks: leader election, name locks, instance heartbeats, cancel marks ----
    @abc.abstractmethod
    def acquire_lock(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew the TTL lock `name` for `holder` for `ttl` seconds.

        True if `holder` holds it afterwards. A lock whose TTL has run out may
        be taken by anyone.
        """

    @abc.abstractmethod
    def release_lock(self, name: str, holder: str) -> None: ...

    @abc.abstractmethod
    def lock_holder(self, name: str) -> str | None:
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

    # -- writes waiting for the backend (an outbox in front of it) -------------------
    def pending(self) -> int:
        """How many writes wait to reach the backend (0 for a bare backend)."""
        return 0

    def replay(self) -> int:
        """Push waiting writes to the backend now; returns how many were applied."""
        return 0

    @property
    def direct(self) -> Store:
        """The backend itself: writes through it are made now or refused, never queued."""
        return self

    # -- connection -----------------------------------------------------------------
    def ping(self) -> None:  # noqa: B027 - optional for backends with nothing to check
        """Raise StoreUnavailable if the backend cannot be reached."""

    def ping_write(self) -> None:
        """Raise StoreUnavailable if the backend cannot be written (locked, full, read-only).

        Backends override it with a real, tiny write; by default a read is all we know.
        """
        self.ping()

    def close(self) -> None:  # noqa: B027 - optional for backends with nothing to release
        """Release connections."""
