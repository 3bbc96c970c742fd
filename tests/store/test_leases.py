"""The lease repository, on every backend (see conftest.py). Every lifecycle move: test_lifecycle.py."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from dynvm.core.store import (
    LEASE_ACTIVE,
    LEASE_PROVISIONING,
    LEASE_READY,
    LEASE_RELEASING,
    Store,
)
from tests.store.helpers import make_lease


def test_lease_roundtrip_update_delete(store: Store) -> None:
    lease = make_lease("job1")
    assert store.leases.get(lease.vm_uuid) is None
    store.leases.put(lease)
    assert store.leases.get(lease.vm_uuid) == lease
    updated = store.leases.update(lease.vm_uuid, ip="10.0.0.9", expires=lease.expires + 60)
    assert updated == lease.with_(ip="10.0.0.9", expires=lease.expires + 60)
    assert store.leases.get(lease.vm_uuid) == updated
    assert store.leases.update("missing", ip="x") is None
    store.leases.delete(lease.vm_uuid)
    assert store.leases.get(lease.vm_uuid) is None
    store.leases.delete(lease.vm_uuid)  # idempotent
    assert store.leases.find() == []

def test_leases_filters(store: Store) -> None:
    a = make_lease("job1", os="centos", state=LEASE_ACTIVE)
    b = make_lease("job2", os="windows", state=LEASE_READY)
    c = make_lease("job1", os="windows", state=LEASE_ACTIVE)
    for lease in (a, b, c):
        store.leases.put(lease)

    def ids(leases):
        return {lease.vm_uuid for lease in leases}

    assert ids(store.leases.find()) == {a.vm_uuid, b.vm_uuid, c.vm_uuid}
    assert ids(store.leases.find(name="job1")) == {a.vm_uuid, c.vm_uuid}
    assert ids(store.leases.find(state=LEASE_READY)) == {b.vm_uuid}
    assert ids(store.leases.find(os="windows")) == {b.vm_uuid, c.vm_uuid}
    assert ids(store.leases.find(name="job1", os="windows", state=LEASE_ACTIVE)) == {c.vm_uuid}
    assert store.leases.find(name="nobody") == []

def test_due_leases_only_active_and_expired(store: Store) -> None:
    now = time.time()
    due = make_lease("job1", expires_in=-10)
    edge = make_lease("job2", expires_in=0)
    later = make_lease("job3", expires_in=600)
    ready_old = make_lease("job4", state=LEASE_READY, expires_in=-10)
    releasing_old = make_lease("job5", expires_in=-10)
    for lease in (due, edge, later, ready_old, releasing_old):
        store.leases.put(lease)
    assert store.leases.transition(releasing_old.vm_uuid, LEASE_ACTIVE, LEASE_RELEASING) is not None
    got = store.leases.due(max(now, edge.expires))
    assert [lease.vm_uuid for lease in got] == [due.vm_uuid, edge.vm_uuid]

def test_transition_compare_and_set(store: Store) -> None:
    lease = make_lease("job1", state=LEASE_READY)
    store.leases.put(lease)
    assert store.leases.transition(lease.vm_uuid, LEASE_ACTIVE, LEASE_RELEASING) is None
    got = store.leases.transition(lease.vm_uuid, LEASE_READY, LEASE_PROVISIONING, owner="bob")
    assert got is not None and got.state == LEASE_PROVISIONING and got.owner == "bob"
    assert store.leases.transition(lease.vm_uuid, LEASE_READY, LEASE_PROVISIONING) is None
    assert store.leases.transition("missing", LEASE_READY, LEASE_PROVISIONING) is None
    assert store.leases.get(lease.vm_uuid) == got

def test_transition_exactly_once_under_race(store: Store) -> None:
    lease = make_lease("job1", state=LEASE_READY)
    store.leases.put(lease)
    barrier = threading.Barrier(12)

    def claim(i: int):
        barrier.wait()
        return store.leases.transition(lease.vm_uuid, LEASE_READY, LEASE_PROVISIONING, owner=f"w{i}")

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(claim, range(12)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert store.leases.get(lease.vm_uuid).owner == winners[0].owner

def test_provisioning_state_roundtrip(store: Store) -> None:
    lease = make_lease("job7", state=LEASE_PROVISIONING)
    store.leases.put(lease)
    assert store.leases.find(state=LEASE_PROVISIONING) == [lease]
