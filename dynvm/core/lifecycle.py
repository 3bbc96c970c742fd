"""Every vocabulary of dynvm, in one place: each state, its allowed moves, and the moves.

A lease (one VM dynvm owns) and a request (one getservers call) each move
through a small declared set of states. Every change of state goes through
`store.leases.transition` / `store.requests.finish`, which refuse any move not in
the tables below, so no code path can invent a state or skip one. Below them:
the VM's own `dynvm_state` tag (`TagState`), history documents
(`HistoryState`), rolling reboots (`RunState`), a VM's build steps (`Step`),
the words the dashboard and /metrics show (`VmShown`, `PoolShown`,
`MemberShown`) and the events the core reports (`CoreEvent`). No state is
written as a raw string anywhere else (`tests/core/test_vocabulary.py`).
Over 400 lines on purpose: one file that holds every vocabulary and every move
is the point of it.

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
    QUEUED = "queued"  # fits its owner's quota, waits for room: holds nothing yet
    EXPIRED = "expired"  # waited in the queue its longest (`[queue] max_wait_minutes`)


class FleetState(enum.StrEnum):
    """Where a fleet VM's record is: claimed while one process builds or destroys it."""

    CREATING = "creating"  # claimed: one process builds it (until its claim lapses)
    PRESENT = "present"  # built (or adopted) for the fleet; its VM carries the fleet tag
    REMOVING = "removing"  # claimed: one process destroys it (its file was removed, --prune)


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
    Move(_L.PROVISIONING, _L.READY, False,
         "built for the warm pool, or a claimed warm VM given back unused"),
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
                         _R.REFUSED, _R.EXPIRED})
REQUEST_MOVES: frozenset[tuple[RequestState, RequestState]] = frozenset(
    {(_R.RUNNING, end) for end in REQUEST_END - {_R.EXPIRED}}
    # No room now, within its owner's quota: it waits in the queue, holding nothing...
    | {(_R.RUNNING, _R.QUEUED)}
    # ...until it is dispatched (the one claim: a second dispatch finds it running), its
    # owner cancels it, it waits too long, or it can no longer be served at all.
    | {(_R.QUEUED, _R.RUNNING), (_R.QUEUED, _R.CANCELLED), (_R.QUEUED, _R.EXPIRED),
       (_R.QUEUED, _R.REFUSED), (_R.QUEUED, _R.FAILED)}
    # A finished request's VMs can still be released by cancelling it.
    | {(_R.DONE, _R.CANCELLED), (_R.PARTIAL, _R.CANCELLED)}
    # Closing a request again the same way is a repeat (an outbox replay), not a move.
    | {(end, end) for end in REQUEST_END}
)


_F = FleetState
# (src, dst) -> why. A move into CREATING or REMOVING is a claim: compare-and-set in the
# store, so exactly one process builds or destroys a fleet VM.
FLEET_MOVES: dict[tuple[FleetState, FleetState], str] = {
    (_F.CREATING, _F.PRESENT): "built",
    (_F.PRESENT, _F.CREATING): "missing: claimed to be built again",
    (_F.PRESENT, _F.REMOVING): "its file was removed: claimed to be destroyed (--prune)",
    (_F.REMOVING, _F.PRESENT): "destroy failed: still there",
}
# A record is born claimed for a build, or present (a VM of the fleet found without one).
FLEET_BIRTH = frozenset({_F.CREATING, _F.PRESENT})
# It ends when a build failed (nothing left) or its VM was destroyed.
FLEET_END = frozenset({_F.CREATING, _F.REMOVING})


def check_fleet_move(src: str, dst: str) -> None:
    try:
        if (FleetState(src), FleetState(dst)) in FLEET_MOVES:
            return
    except ValueError:
        pass
    raise IllegalTransition("a fleet record", src, dst)


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


def is_request_end(state: str) -> bool:
    """Whether a request in `state` has ended (its record's `finished` is set)."""
    return state in REQUEST_END


def check_request_move(src: str, dst: str, expect: str | None = None) -> None:
    """IllegalTransition unless `src -> dst` is declared (and `src` is `expect`, if given)."""
    try:
        if (RequestState(src), RequestState(dst)) in REQUEST_MOVES \
                and (expect is None or src == RequestState(expect)):
            return
    except ValueError:
        pass
    raise IllegalTransition("a request", src, dst)


def check_changes(changes: dict[str, Any]) -> None:
    """Plain field updates may not touch the state: that is what `transition` is for."""
    if "state" in changes:
        raise IllegalTransition("a lease", "(any)", f"{changes['state']} without a transition")


# -- the VM's own tag ---------------------------------------------------------------------

class TagState(enum.StrEnum):
    """What a VM's `dynvm_state` tag says: how far its build got, written on the VM itself,
    so reconciliation can tell after a crash or with a lost store."""

    PROVISIONING = "provisioning"  # cloned, being configured, provisioned, started
    STARTED = "started"  # started, its address (and SSH) not seen yet: not built yet
    ACTIVE = "active"  # built (or handed out) for its caller
    READY = "ready"  # built for the warm pool


_T = TagState
# (None: a VM with no tag yet, as the clone is tagged.)
TAG_MOVES: frozenset[tuple[TagState | None, TagState]] = frozenset({
    (None, _T.PROVISIONING),  # the clone is tagged
    (_T.PROVISIONING, _T.STARTED),  # the build started it
    (_T.STARTED, _T.ACTIVE), (_T.STARTED, _T.READY),  # built (`finish_build`)
    (_T.READY, _T.ACTIVE),  # a warm VM handed out (`hand_out`)
})
# The tag a lease's VM carries once built: the same word as the lease.
TAG_OF_LEASE = {LeaseState.ACTIVE: _T.ACTIVE, LeaseState.READY: _T.READY}
WARM_REQUEST_PREFIX = "warm-"  # request ids of warm-pool refills


def is_warm_request(request_id: str) -> bool:
    """Whether `request_id` names a warm-pool refill (not a caller's request)."""
    return request_id.startswith(WARM_REQUEST_PREFIX)


def tag_state(value: str, request_id: str) -> TagState | None:
    """A VM's state tag as a TagState (None: no tag, or one no dynvm writes).

    Before `started` existed, a started build was tagged `ready` too: `ready` on a
    VM whose lease tag is not a warm-pool refill's is such a build, started and
    not finished.
    """
    try:
        state = TagState(value)
    except ValueError:
        return None
    if state is _T.READY and not is_warm_request(request_id):
        return _T.STARTED
    return state


def check_tag_move(src: TagState | None, dst: TagState) -> None:
    if (src, dst) not in TAG_MOVES:
        raise IllegalTransition("a VM's tag", str(src), dst)


# -- history documents --------------------------------------------------------------------

class HistoryState(enum.StrEnum):
    """A history document's `state`, in the seed's words: what became of the VM."""

    AVAILABLE = "available"  # alive and handed out
    READY = "ready"  # a warm-pool VM, built, waiting to be handed out
    FAILED = "failed"  # could not be built (or was found abandoned): no VM is left
    DELETED = "deleted"  # released, expired or vanished: no VM is left


_H = HistoryState
# A document is written whole in any of these (a VM released before its build recorded
# one is born `deleted`); then it moves only so:
HISTORY_MOVES: frozenset[tuple[HistoryState, HistoryState]] = frozenset({
    (_H.READY, _H.AVAILABLE),  # a warm VM handed out
    (_H.AVAILABLE, _H.DELETED), (_H.READY, _H.DELETED),  # released, expired, recycled
    (_H.FAILED, _H.DELETED),  # a failed build whose lease outlived it, closed by reconciliation
    (_H.DELETED, _H.DELETED),  # closed again (a release finished after an interruption)
})
HISTORY_OF_LEASE = {LeaseState.ACTIVE: _H.AVAILABLE, LeaseState.READY: _H.READY}
GONE = frozenset({_H.FAILED, _H.DELETED})  # no VM left behind the document


def check_history_move(src: str | None, dst: HistoryState) -> None:
    """`src` None: a new document (or one whose state is unknown)."""
    if src is None:
        return
    try:
        if (HistoryState(src), dst) in HISTORY_MOVES:
            return
    except ValueError:
        pass
    raise IllegalTransition("a history document", src, dst)


# -- rolling reboots ------------------------------------------------------------------------

class RunState(enum.StrEnum):
    """A rolling reboot's `state` in its status document (`maintenance:<N>`)."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # stopped part way: the document says where and what to do
    # Never stored: how a `running` run reads once no live process holds its lock.
    INTERRUPTED = "interrupted"


_M = RunState
RUN_MOVES: frozenset[tuple[RunState | None, RunState]] = frozenset(
    # A run starts on a pool that never had one, after one that ended, or resumes one
    # that stopped (failed, or interrupted: still `running` in the store).
    {(src, _M.RUNNING) for src in (None, _M.DONE, _M.FAILED, _M.RUNNING)}
    | {(_M.RUNNING, _M.DONE)}
    # It fails from where it was, even before it could say it was running.
    | {(src, _M.FAILED) for src in (None, _M.DONE, _M.FAILED, _M.RUNNING)}
)
STOPPED_RUNS = frozenset({_M.INTERRUPTED, _M.FAILED})  # stopped half way, no longer held


class RunStep(enum.StrEnum):
    """Where a rolling reboot is (its status document's `step`), in the order of one host;
    a run resumed after a crash reads it to know what was asked already."""

    START = "start"
    HA_OFF = "ha-off"
    PLACEMENT_OFF = "placement-off"  # the host is out of dynvm's placement
    DISABLE = "disable"
    EVACUATE = "evacuate"  # warm VMs destroyed
    MIGRATE = "migrate"
    DRAIN = "drain"  # waiting for leases to end
    MASTER = "master"  # the pool master role moves
    REBOOT = "reboot"  # asked, perhaps not done
    WAIT = "wait"  # the reboot was asked: waiting for the host to come back
    ENABLE = "enable"
    PLACEMENT_ON = "placement-on"
    HA_ON = "ha-on"
    DONE = "done"


def check_run_move(src: str | None, dst: str) -> None:
    try:
        if (None if src is None else RunState(src), RunState(dst)) in RUN_MOVES:
            return
    except ValueError:
        pass
    raise IllegalTransition("a rolling reboot", str(src), dst)


# -- a VM's build steps ---------------------------------------------------------------------

class Step(enum.StrEnum):
    """A VM's steps, in the order a build goes through them (its request's `vms`)."""

    RESERVED = "reserved"
    CLONING = "cloning"
    PROVISIONING = "provisioning"
    STARTING = "starting"
    WAITING_IP = "waiting for IP"
    CHECKING_SSH = "checking SSH"
    READY = "ready"
    FAILED = "failed"  # could not be built (or was released while being built): `reason` says why
    CANCELLED = "cancelled"  # its request was cancelled: destroyed with its disks
    INTERRUPTED = "interrupted"  # the process building it stopped before it was ready


FINAL_STEPS = frozenset({Step.READY, Step.FAILED, Step.CANCELLED, Step.INTERRUPTED})


# -- what operators see -----------------------------------------------------------------------

class VmShown(enum.StrEnum):
    """A VM's state on the dashboard and in /metrics' `dynvm_vms`."""

    BUILDING = "building"
    READY = "ready"
    LEASED = "leased"
    RELEASING = "releasing"
    FOREIGN = "foreign"  # not dynvm's
    UNTRACKED = "untracked"  # dynvm's by its tags, with no lease
    UNKNOWN = "unknown"  # dynvm's, the store unread and its tag says nothing known
    FLEET = "fleet"  # a long-lived VM of the fleet directory (no lease, never expires)


VM_SHOWN_OF_LEASE = {LeaseState.PROVISIONING: VmShown.BUILDING, LeaseState.READY: VmShown.READY,
                     LeaseState.ACTIVE: VmShown.LEASED, LeaseState.RELEASING: VmShown.RELEASING}
VM_SHOWN_OF_TAG = {TagState.PROVISIONING: VmShown.BUILDING, TagState.STARTED: VmShown.BUILDING,
                   TagState.ACTIVE: VmShown.LEASED, TagState.READY: VmShown.READY}


class FleetDrift(enum.StrEnum):
    """How a fleet VM stands against its file (the dashboard, `dynvm fleet status`, `dynvm
    hosts`)."""

    OK = "ok"  # as declared
    DRIFTED = "drifted"  # elsewhere, halted, of another size...: `why` says
    MISSING = "missing"  # built for the fleet once, gone now
    ABSENT = "absent"  # declared, never built: `dynvm fleet apply` builds it
    BUILDING = "building"  # a process holds the claim to build it
    BLOCKED = "blocked"  # cannot be checked or built: `why` says (a pool down, a same-named VM)
    KEPT = "kept"  # its file was removed; `apply --prune` destroys it
    STOPPED = "stopped"  # halted, and its file says autostart=false


class PoolShown(enum.StrEnum):
    """A [xenhostN] pool's state on the dashboard (`dynvm_host_up` is 0 when unreachable)."""

    UP = "up"
    DRAINED = "drained"
    UNREACHABLE = "unreachable"


class MemberShown(enum.StrEnum):
    """A member host's state on the dashboard (`dynvm_member_enabled`)."""

    UP = "up"
    DRAINED = "drained"
    DISABLED = "disabled"
    IN_MAINTENANCE = "in maintenance"
    UNKNOWN = "unknown"  # its pool does not answer: shown as last read


# -- what the core reports ---------------------------------------------------------------------

class CoreEvent(enum.StrEnum):
    """Noteworthy things the core reports as they happen, for metrics."""

    ADOPTED = "adopted"  # a VM of this deployment found without a lease: its lease recreated
    VANISHED = "vanished"  # a lease whose VM no longer exists: closed
    # Told with `os` (and `step` / `seconds` where they say so), once, where they happen:
    HANDED_OUT = "handed out"  # a VM became its requester's (built, or a warm one)
    RELEASED = "released"  # a VM destroyed by any release (caller, expiry, rollback, recycle)
    EXPIRED = "expired"  # ... because its lease ran out
    VM_FAILED = "vm failed"  # a VM a request asked for could not be had
    BUILT = "built"  # a VM's build finished (`seconds` from its start to usable)
    STEP_DONE = "step done"  # a VM left build `step` after `seconds`
    QUEUE_EXPIRED = "queue-expired"  # a request waited its longest for room: it ended
    QUEUE_LEFT = "queue-left"  # a request left the queue (`seconds` it waited)


# -- the moves, as the core performs them ------------------------------------------------

def take_warm(store: Store, lease: Lease, **changes: Any) -> Lease | None:
    """Claim a ready warm VM for a request; None if another worker took it first."""
    return store.leases.transition(lease.vm_uuid, LeaseState.READY, LeaseState.PROVISIONING,
                                   **changes)


def return_warm(store: Store, before: Lease) -> Lease | None:
    """A claimed warm VM its request will not use goes back to the pool as it was (the VM
    itself was never renamed); None if it is no longer the request's to give back."""
    return store.leases.transition(before.vm_uuid, LeaseState.PROVISIONING, LeaseState.READY,
                                   name=before.name, owner=before.owner,
                                   request_id=before.request_id, expires=before.expires,
                                   labels=list(before.labels))


def finish_build(store: Store, pool: XenPool, vm_uuid: str, dst: LeaseState | str,
                 **changes: Any) -> Lease | None:
    """A VM is built (or handed out): its lease and its tag say `dst` together."""
    tag = TAG_OF_LEASE[LeaseState(dst)]
    check_tag_move(TagState.STARTED, tag)
    done = store.leases.transition(vm_uuid, LeaseState.PROVISIONING, dst, **changes)
    pool.update(vm_uuid, tags={TAG_STATE: tag.value})
    return done


def hand_out(store: Store, pool: XenPool, vm_uuid: str, *, name: str, description: str,
             tags: dict[str, str]) -> Lease | None:
    """A claimed warm VM becomes its caller's: renamed and tagged `active`, then its lease.

    The VM first: should it fail, the lease is still being handed out and the
    caller recycles it; the VM never reads as its caller's while the lease does not.
    """
    check_tag_move(TagState.READY, TagState.ACTIVE)
    pool.update(vm_uuid, name=name, description=description,
                tags={**tags, TAG_STATE: TagState.ACTIVE.value})
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


def queue_request(store: Store, request_id: str, detail: dict[str, Any]) -> None:
    """A request with no room now waits in the queue (its entry is added by the caller)."""
    store.requests.finish(request_id, RequestState.QUEUED.value, detail,
                          expect=RequestState.RUNNING.value)


def leave_queue(store: Store, request_id: str, state: RequestState,
                detail: dict[str, Any]) -> bool:
    """A queued request moves on (dispatched: `running`; or cancelled, expired, refused):
    True for exactly one caller however many try at once, False if it had left already."""
    try:
        store.requests.finish(request_id, state.value, detail, expect=RequestState.QUEUED.value)
    except IllegalTransition:
        return False
    return True
