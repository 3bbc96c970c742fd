"""The VM lifecycle: every lease and request state, every allowed move, and the moves themselves.

A lease (one VM dynvm owns) and a request (one getservers call) each move
through a small declared set of states. Every change of state goes through
`store.leases.transition` / `store.requests.finish`, which refuse any move not in
the tables below, so no code path can invent a state or skip one. The VM's own
`dynvm_state` tag speaks the same vocabulary as its lease.

    (new) -> provisioning -> active ------------> releasing -> (deleted)
                  |    ^                              |
                  v    | (warm VM handed out)         | destroy failed:
                ready -+                              v back to where it was

A move marked `claim` hands exclusive ownership of the VM to its caller (a
warm VM to exactly one request, a VM to exactly one releaser): it must reach
the store now and is never queued; the others are made by the holder of the
claim and may wait in the outbox during a store outage.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dynvm.core.ports import TAG_STATE

if TYPE_CHECKING:
    from dynvm.core.ports import XenPool
    from dynvm.core.records import Lease
    from dynvm.core.store import Store


class LeaseState(enum.StrEnum):
    """Where a dynvm VM is in its life; stored in its lease and its `dynvm_state` tag."""

    PROVISIONING = "provisioning"  # being built for a caller (or a warm VM being handed out)
    ACTIVE = "active"  # handed out, counting down to expiry
    READY = "ready"  # warm-pool VM, owned by nobody yet
    RELEASING = "releasing"  # being destroyed


class RequestState(enum.StrEnum):
    """Where a getservers request is: running until it ends in one of the others."""

    RUNNING = "running"
    DONE = "done"  # every VM was built
    PARTIAL = "partial"  # allornone=false and some VMs failed: the others were kept
    FAILED = "failed"  # nothing was kept
    CANCELLED = "cancelled"  # cancelled by its caller; what it built was released
    INTERRUPTED = "interrupted"  # the process running it stopped (found by reconciliation)
    REFUSED = "refused"  # turned down before any VM was built (quota, capacity, name): holds nothing


class IllegalTransition(ValueError):
    """A move the lifecycle does not declare: a bug in the caller, never retried."""

    def __init__(self, kind: str, src: str, dst: str) -> None:
        super().__init__(f"{kind} cannot move from {src!r} to {dst!r}")
        self.kind, self.src, self.dst = kind, src, dst


@dataclass(frozen=True)
class Move:
    src: LeaseState
    dst: LeaseState
    claim: bool  # hands the VM to exactly one caller: compare-and-set now, never queued
    why: str


_L = LeaseState
LEASE_MOVES: tuple[Move, ...] = (
    Move(_L.PROVISIONING, _L.ACTIVE, False, "built (or handed out) for its caller"),
    Move(_L.PROVISIONING, _L.READY, False, "built for the warm pool"),
    Move(_L.READY, _L.PROVISIONING, True, "a warm VM is taken for a request"),
    Move(_L.PROVISIONING, _L.RELEASING, True, "release of a VM being built or handed out"),
    Move(_L.ACTIVE, _L.RELEASING, True, "release or expiry of a handed-out VM"),
    Move(_L.READY, _L.RELEASING, True, "a warm VM is recycled"),
    Move(_L.RELEASING, _L.PROVISIONING, False, "destroy failed: back to being built"),
    Move(_L.RELEASING, _L.ACTIVE, False, "destroy failed: still handed out"),
    Move(_L.RELEASING, _L.READY, False, "destroy failed: still in the warm pool"),
)
_LEASE_TABLE = {(m.src, m.dst): m for m in LEASE_MOVES}

# A lease is born building, or adopted (reconciliation) as its VM's tag tells.
LEASE_BIRTH = frozenset({_L.PROVISIONING, _L.ACTIVE, _L.READY})

_R = RequestState
REQUEST_END = frozenset({_R.DONE, _R.PARTIAL, _R.FAILED, _R.CANCELLED, _R.INTERRUPTED,
                         _R.REFUSED})
REQUEST_MOVES: frozenset[tuple[RequestState, RequestState]] = frozenset(
    {(_R.RUNNING, end) for end in REQUEST_END}
    # A finished request's VMs can still be released by cancelling it.
    | {(_R.DONE, _R.CANCELLED), (_R.PARTIAL, _R.CANCELLED)}
    # Closing a request again the same way is a repeat (an outbox replay), not a move.
    | {(end, end) for end in REQUEST_END}
)


def lease_move(src: str, dst: str) -> Move:
    """The declared move from `src` to `dst`, or IllegalTransition."""
    try:
        return _LEASE_TABLE[(LeaseState(src), LeaseState(dst))]
    except (KeyError, ValueError):
        raise IllegalTransition("a lease", src, dst) from None


def check_birth(state: str) -> None:
    """A new lease must start in a declared state (never `releasing`)."""
    try:
        if LeaseState(state) in LEASE_BIRTH:
            return
    except ValueError:
        pass
    raise IllegalTransition("a lease", "(new)", state)


def check_request_move(src: str, dst: str) -> None:
    try:
        if (RequestState(src), RequestState(dst)) in REQUEST_MOVES:
            return
    except ValueError:
        pass
    raise IllegalTransition("a request", src, dst)


def check_changes(changes: dict[str, Any]) -> None:
    """Plain field updates may not touch the state: that is what `transition` is for."""
    if "state" in changes:
        raise IllegalTransition("a lease", "(any)", f"{changes['state']} without a transition")


# -- the moves, as the core performs them ------------------------------------------------

def take_warm(store: Store, lease: Lease, **changes: Any) -> Lease | None:
    """Claim a ready warm VM for a request; None if another worker took it first."""
    return store.leases.transition(lease.vm_uuid, LeaseState.READY, LeaseState.PROVISIONING,
                                   **changes)


def finish_build(store: Store, pool: XenPool, vm_uuid: str, dst: LeaseState | str,
                 **changes: Any) -> Lease | None:
    """A VM is built (or handed out): its lease and its tag say `dst` together."""
    done = store.leases.transition(vm_uuid, LeaseState.PROVISIONING, dst, **changes)
    pool.update(vm_uuid, tags={TAG_STATE: LeaseState(dst).value})
    return done


def hand_out(store: Store, pool: XenPool, vm_uuid: str, *, name: str, description: str,
             tags: dict[str, str]) -> Lease | None:
    """A claimed warm VM becomes its caller's: renamed and tagged `active`, then its lease.

    The VM first: should it fail, the lease is still being handed out and the
    caller recycles it; the VM never reads as its caller's while the lease does not.
    """
    pool.update(vm_uuid, name=name, description=description,
                tags={**tags, TAG_STATE: LeaseState.ACTIVE.value})
    return store.leases.transition(vm_uuid, LeaseState.PROVISIONING, LeaseState.ACTIVE)


def begin_release(store: Store, lease: Lease, at: float) -> Lease | None:
    """Claim a VM for destruction; None if another process is releasing it."""
    if lease.state == LeaseState.RELEASING:
        return None
    return store.leases.transition(lease.vm_uuid, lease.state, LeaseState.RELEASING,
                                   extra={**lease.extra, "releasing_since": at})


def undo_release(store: Store, vm_uuid: str, previous: str) -> Lease | None:
    """The VM could not be destroyed: its lease goes back to where it was."""
    return store.leases.transition(vm_uuid, LeaseState.RELEASING, previous)


def end_request(store: Store, request_id: str, state: RequestState | str,
                detail: dict[str, Any] | None = None) -> None:
    """Close a request (checked by the store against `REQUEST_MOVES`)."""
    store.requests.finish(request_id, RequestState(state).value, detail)
