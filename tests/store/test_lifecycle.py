"""The lifecycle table, walked on every backend: each declared move works, every other is refused."""

from __future__ import annotations

import itertools

import pytest

from dynvm.core.lifecycle import (
    LEASE_BIRTH,
    LEASE_MOVES,
    REQUEST_MOVES,
    IllegalTransition,
    LeaseState,
    RequestState,
)
from dynvm.core.records import RequestRecord
from dynvm.core.store import Store
from dynvm.store.outbox import ResilientStore
from tests.store.helpers import make_lease

ALLOWED = {(m.src, m.dst) for m in LEASE_MOVES}
LEASE_PAIRS = list(itertools.product(LeaseState, LeaseState))
REQUEST_PAIRS = list(itertools.product(RequestState, RequestState))


def _lease_in(store: Store, state: LeaseState, name: str = "job1"):
    """A lease brought into `state` the way the service does: born, then moved."""
    born = state if state in LEASE_BIRTH else LeaseState.ACTIVE
    lease = make_lease(name, state=born)
    store.leases.put(lease)
    if state != born:
        moved = store.leases.transition(lease.vm_uuid, born, state)
        assert moved is not None and moved.state == state
    return store.leases.get(lease.vm_uuid)


def test_every_state_can_be_reached_and_left() -> None:
    reached = {dst for _, dst in ALLOWED} | set(LEASE_BIRTH)
    left = {src for src, _ in ALLOWED}
    assert reached == set(LeaseState) == left
    # Every request state is reached (running again, when a queued one is served).
    assert {dst for _, dst in REQUEST_MOVES} == set(RequestState)


@pytest.mark.parametrize(("src", "dst"), LEASE_PAIRS, ids=[f"{a}->{b}" for a, b in LEASE_PAIRS])
def test_lease_move(store: Store, src: LeaseState, dst: LeaseState) -> None:
    lease = _lease_in(store, src)
    if (src, dst) in ALLOWED:
        got = store.leases.transition(lease.vm_uuid, src, dst, ip="10.1.1.1")
        assert got is not None and got.state == dst and got.ip == "10.1.1.1"
        assert store.leases.get(lease.vm_uuid) == got
        # A compare-and-set: the same move again finds the lease elsewhere.
        assert store.leases.transition(lease.vm_uuid, src, dst) is None
    else:
        with pytest.raises(IllegalTransition):
            store.leases.transition(lease.vm_uuid, src, dst, ip="10.1.1.1")
        assert store.leases.get(lease.vm_uuid) == lease


@pytest.mark.parametrize("state", list(LeaseState))
def test_raw_state_writes_are_refused(store: Store, state: LeaseState) -> None:
    lease = _lease_in(store, LeaseState.ACTIVE)
    with pytest.raises(IllegalTransition):
        store.leases.update(lease.vm_uuid, state=state)
    with pytest.raises(IllegalTransition):
        store.leases.transition(lease.vm_uuid, LeaseState.ACTIVE, "leased")  # not a state at all
    assert store.leases.get(lease.vm_uuid) == lease
    fresh = make_lease("job2", state=state)
    if state in LEASE_BIRTH:
        store.leases.put(fresh)
        assert store.leases.get(fresh.vm_uuid) == fresh
    else:
        with pytest.raises(IllegalTransition):
            store.leases.put(fresh)
        assert store.leases.get(fresh.vm_uuid) is None
    with pytest.raises(IllegalTransition):
        store.leases.put(make_lease("job3", state="zombie"))


def _request_in(store: Store, state: RequestState, rid: str = "r1") -> RequestRecord:
    store.requests.put(RequestRecord(id=rid, name="job", os="centos", count=1,
                                     instance="h:1", started=1.0))
    if state == RequestState.CANCELLED:
        store.requests.finish(rid, RequestState.DONE)
    if state == RequestState.EXPIRED:  # only a queued request expires
        store.requests.finish(rid, RequestState.QUEUED)
    if state != RequestState.RUNNING:
        store.requests.finish(rid, state, {"how": str(state)})
    got = store.requests.get(rid)
    assert got is not None and got.state == state
    return got


@pytest.mark.parametrize(("src", "dst"), REQUEST_PAIRS,
                         ids=[f"{a}->{b}" for a, b in REQUEST_PAIRS])
def test_request_move(store: Store, src: RequestState, dst: RequestState) -> None:
    before = _request_in(store, src)
    if (src, dst) in REQUEST_MOVES:
        store.requests.finish("r1", dst, {"moved": True})
        got = store.requests.get("r1")
        assert got is not None and got.state == dst and got.detail["moved"] is True
    else:
        with pytest.raises(IllegalTransition):
            store.requests.finish("r1", dst, {"moved": True})
        assert store.requests.get("r1") == before
    with pytest.raises(IllegalTransition):
        store.requests.finish("r1", "finished")  # not a state at all


@pytest.mark.parametrize("src", list(RequestState), ids=str)
def test_request_move_expecting_a_state(store: Store, src: RequestState) -> None:
    """With `expect`, a declared move is made only from that state: a compare-and-set."""
    before = _request_in(store, src)
    dst = RequestState.CANCELLED
    if (src, dst) not in REQUEST_MOVES or src == dst:
        return
    if src != RequestState.QUEUED:
        with pytest.raises(IllegalTransition):
            store.requests.finish("r1", dst, {"moved": True}, expect=RequestState.QUEUED)
        assert store.requests.get("r1") == before
    else:
        store.requests.finish("r1", dst, {"moved": True}, expect=RequestState.QUEUED)
        got = store.requests.get("r1")
        assert got is not None and got.state == dst and got.finished is not None


def test_a_served_request_is_not_finished(store: Store) -> None:
    _request_in(store, RequestState.QUEUED)
    store.requests.finish("r1", RequestState.RUNNING, expect=RequestState.QUEUED)
    got = store.requests.get("r1")
    assert got is not None and got.state == RequestState.RUNNING and got.finished is None
    with pytest.raises(IllegalTransition):  # served once only
        store.requests.finish("r1", RequestState.RUNNING, expect=RequestState.QUEUED)


def test_every_move_through_the_outbox(tmp_path, store: Store) -> None:
    out = ResilientStore(store, str(tmp_path / "outbox.sqlite"))
    for move in LEASE_MOVES:
        lease = _lease_in(out, move.src, name=f"job-{move.src}-{move.dst}")
        got = out.leases.transition(lease.vm_uuid, move.src, move.dst)
        assert got is not None and got.state == move.dst
        assert store.leases.get(lease.vm_uuid).state == move.dst
    with pytest.raises(IllegalTransition):
        out.leases.transition(lease.vm_uuid, LeaseState.ACTIVE, LeaseState.READY)
    assert out.pending() == 0
