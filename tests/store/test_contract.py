"""The Store contract, run against every backend (see conftest.py)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from dynvm.core.store import (
    LEASE_ACTIVE,
    LEASE_PROVISIONING,
    LEASE_READY,
    LEASE_RELEASING,
    RequestRecord,
    Reservation,
    Store,
)
from tests.store.helpers import capped, make_lease, make_resv
from tests.support.harness import wait_until

# -- history ---------------------------------------------------------------------------


def seed_doc(name: str, created: float) -> dict:
    return {"ipaddr": "10.1.1.1", "origin": "xen1", "os": "centos", "state": "available",
            "poolId": "dynamicpool", "prevUser": "", "username": "job", "ver": "7",
            "memory": 4, "os_version": "7", "name": name, "created_time": created,
            "create_duration_secs": 30, "cpu": 8, "disk": 35, "expired_time": created + 60,
            "labels": ["fast"]}


def test_history_put_get_replace(store: Store) -> None:
    assert store.history.get("nope") is None
    store.history.put("u1", seed_doc("job1", 100.0))
    assert store.history.get("u1") == seed_doc("job1", 100.0)
    store.history.put("u1", {"name": "job1", "created_time": 100.0})
    assert store.history.get("u1") == {"name": "job1", "created_time": 100.0}


def test_history_update_merges_and_creates(store: Store) -> None:
    store.history.put("u1", seed_doc("job1", 100.0))
    store.history.update("u1", {"state": "deleted", "deleted_time": 200.0,
                                "live_duration_secs": 100})
    doc = store.history.get("u1")
    assert doc is not None
    assert doc["state"] == "deleted" and doc["deleted_time"] == 200.0
    assert doc["ipaddr"] == "10.1.1.1" and doc["name"] == "job1"  # untouched fields kept
    store.history.update("u2", {"name": "job2", "created_time": 50.0, "failure": "boom"})
    assert store.history.get("u2") == {"name": "job2", "created_time": 50.0, "failure": "boom"}


def test_history_newest_first_with_limit(store: Store) -> None:
    for i, created in enumerate([300.0, 100.0, 500.0, 200.0]):
        store.history.put(f"u{i}", seed_doc(f"job{i}", created))
    assert [d["created_time"] for d in store.history.recent()] == [500.0, 300.0, 200.0, 100.0]
    assert [d["name"] for d in store.history.recent(limit=2)] == ["job2", "job0"]
    store.history.update("u9", {"name": "late", "created_time": 900.0})
    assert store.history.recent(limit=1)[0]["name"] == "late"


def test_history_mark_changes_with_each_history_write_only(store: Store) -> None:
    first = store.history.mark()
    assert store.history.mark() == first  # reading changes nothing
    store.history.put("u1", seed_doc("job1", 100.0))
    after_put = store.history.mark()
    assert after_put != first
    store.history.update("u1", {"state": "deleted"})
    after_update = store.history.mark()
    assert after_update != after_put
    store.history.update("u1", {"state": "deleted"})  # even a write that changes no field
    assert store.history.mark() != after_update
    settled = store.history.mark()
    store.leases.put(make_lease("job1"))
    store.history.recent()
    store.history.get("u1")
    assert store.history.mark() == settled  # other subjects leave it alone


# -- leases --------------------------------------------------------------------------------


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


# -- reservations ---------------------------------------------------------------------------


def test_reserve_takes_what_fits(store: Store) -> None:
    seen: list[list[Reservation]] = []

    def free(live):
        seen.append(list(live))
        return 3 - len(live)

    first = store.reservations.reserve("1/a", [make_resv("1/a"), make_resv("1/a")], free)
    assert len(first) == 2 and seen[-1] == []
    wanted = [make_resv("1/a", request_id="req-2") for _ in range(3)]
    second = store.reservations.reserve("1/a", wanted, free)
    assert second == wanted[:1]
    assert {r.id for r in seen[-1]} == {r.id for r in first}
    assert store.reservations.reserve("1/a", [make_resv("1/a")], free) == []
    assert store.reservations.reserve("1/a", [make_resv("1/a")], lambda live: -5) == []
    assert {r.id for r in store.reservations.live("1/a")} == {r.id for r in first + second}
    # Other hosts are counted separately.
    other = store.reservations.reserve("2/b", [make_resv("2/b")], free)
    assert len(other) == 1
    assert len(store.reservations.live()) == 4
    assert [r.id for r in store.reservations.live("2/b")] == [other[0].id]
    assert store.reservations.live("9/none") == []


def test_reserve_retry_with_same_ids_is_idempotent(store: Store) -> None:
    wanted = [make_resv("1/a"), make_resv("1/a")]
    assert store.reservations.reserve("1/a", wanted, capped(2)) == wanted
    # A caller retrying after a lost answer gets the same slots, not new ones.
    assert {r.id for r in store.reservations.reserve("1/a", wanted, capped(2))} == {r.id for r in wanted}
    assert len(store.reservations.live("1/a")) == 2


def test_reservation_expiry_frees_slot(store: Store) -> None:
    stale = make_resv("1/a", expires_in=-1)
    assert store.reservations.reserve("1/a", [stale], lambda live: 1) == [stale]
    assert store.reservations.live("1/a") == []  # expired: not live
    fresh = store.reservations.reserve("1/a", [make_resv("1/a")], capped(1))
    assert len(fresh) == 1  # the expired one did not count


def test_settle_reservation(store: Store) -> None:
    a, b = make_resv("1/a", expires_in=0.3), make_resv("1/a")
    store.reservations.reserve("1/a", [a, b], capped(5))
    store.reservations.settle(a.id, vm_uuid="vm-a", settle_secs=30)
    got = {r.id: r for r in store.reservations.live("1/a")}
    assert got[a.id].vm_uuid == "vm-a" and (got[a.id].settle_until or 0.0) > time.time() + 20
    # settle_until, not the original expiry, now decides.
    wait_until(lambda: time.time() > a.expires, timeout=30, what="the original expiry")
    assert a.id in {r.id for r in store.reservations.live("1/a")}
    store.reservations.settle(b.id, settle_secs=0)
    assert [r.id for r in store.reservations.live("1/a")] == [a.id]
    store.reservations.settle("missing", settle_secs=5)  # no error
    store.reservations.settle(a.id, settle_secs=0.2)
    wait_until(lambda: store.reservations.live("1/a") == [], timeout=30, what="the settled slot")
    assert len(store.reservations.reserve("1/a", [make_resv("1/a")], capped(1))) == 1


def test_drop_reservations(store: Store) -> None:
    store.reservations.reserve("1/a", [make_resv("1/a", request_id="r1"), make_resv("1/a", request_id="r2")],
                               capped(5))
    store.reservations.reserve("2/b", [make_resv("2/b", request_id="r1")], capped(5))
    assert store.reservations.drop_request("r1") == 2
    assert [r.request_id for r in store.reservations.live()] == ["r2"]
    assert store.reservations.drop_request("r1") == 0


def test_reserve_atomic_across_threads(store: Store) -> None:
    barrier = threading.Barrier(20)

    def slow_capped(live: list[Reservation]) -> int:
        time.sleep(0.002)  # widen the read-to-write window a non-atomic reserve would lose
        return 5 - len(live)

    def grab(i: int) -> int:
        barrier.wait()
        return len(store.reservations.reserve("1/a", [make_resv("1/a", request_id=f"t{i}")], slow_capped))

    with ThreadPoolExecutor(20) as pool:
        got = sum(pool.map(grab, range(20)))
    assert got == 5
    assert len(store.reservations.live("1/a")) == 5


# -- requests ---------------------------------------------------------------------------------


def test_requests(store: Store) -> None:
    now = time.time()
    r1 = RequestRecord(id="r1", name="job", os="centos", count=2, instance="h:1", started=now)
    r2 = RequestRecord(id="r2", name="job", os="centos", count=1, instance="h:2",
                       started=now + 1, detail={"a": 1})
    store.requests.put(r1)
    store.requests.put(r2)
    assert [r.id for r in store.requests.find()] == ["r1", "r2"]
    assert store.requests.find("running") == [r1, r2]
    store.requests.finish("r2", "failed", {"error": "no capacity"})
    store.requests.finish("missing", "done")  # no error
    (done,) = store.requests.find("failed")
    assert done.id == "r2" and done.finished is not None and done.finished >= now
    assert done.detail == {"a": 1, "error": "no capacity"}
    assert [r.id for r in store.requests.find("running")] == ["r1"]


def test_request_vm_progress(store: Store) -> None:
    now = time.time()
    store.requests.put(RequestRecord(id="r1", name="job", os="centos", count=2,
                                     instance="h:1", started=now, detail={"a": 1}))
    store.requests.note_vm("r1", "job1", {"step": "cloning", "since": now})
    store.requests.note_vm("r1", "job2", {"step": "reserved", "since": now})
    store.requests.note_vm("r1", "job1", {"step": "ready", "ip": "10.0.0.5"})
    store.requests.note_vm("missing", "x", {"step": "ready"})  # no error, nothing created
    got = store.requests.get("r1")
    assert got is not None and got.detail == {"a": 1, "vms": {
        "job1": {"step": "ready", "since": now, "ip": "10.0.0.5"},
        "job2": {"step": "reserved", "since": now}}}
    assert store.requests.get("missing") is None
    store.requests.finish("r1", "done", {"failed": []})
    got = store.requests.get("r1")
    assert got is not None and got.state == "done" and got.detail["vms"]["job1"]["ip"] == "10.0.0.5"


# -- leader lock ----------------------------------------------------------------------------------


def test_leader_lock_acquire_renew_release(store: Store) -> None:
    assert store.locks.holder("expiry") is None
    assert store.locks.acquire("expiry", "a", ttl=30)
    assert store.locks.holder("expiry") == "a"
    assert not store.locks.acquire("expiry", "b", ttl=30)
    assert store.locks.acquire("expiry", "a", ttl=30)  # renew
    assert store.locks.acquire("other", "b", ttl=30)  # locks are independent
    store.locks.release("expiry", "b")  # not the holder: no effect
    assert store.locks.holder("expiry") == "a"
    store.locks.release("expiry", "a")
    assert store.locks.holder("expiry") is None
    assert store.locks.acquire("expiry", "b", ttl=30)
    assert store.locks.holder("expiry") == "b"


def test_leader_lock_expires_and_is_taken_over(store: Store) -> None:
    assert store.locks.acquire("expiry", "a", ttl=0.3)
    assert not store.locks.acquire("expiry", "b", ttl=0.3)
    wait_until(lambda: store.locks.holder("expiry") is None, timeout=30, what="the lock to lapse")
    assert store.locks.acquire("expiry", "b", ttl=30)
    assert store.locks.holder("expiry") == "b"
    assert not store.locks.acquire("expiry", "a", ttl=30)


def test_leader_lock_one_winner_under_race(store: Store) -> None:
    barrier = threading.Barrier(8)

    def take(i: int) -> bool:
        barrier.wait()
        return store.locks.acquire("expiry", f"w{i}", ttl=30)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(take, range(8)))
    assert results.count(True) == 1
    assert store.locks.holder("expiry") == f"w{results.index(True)}"


def test_ping(store: Store) -> None:
    store.ping()


def test_provisioning_state_roundtrip(store: Store) -> None:
    lease = make_lease("job7", state=LEASE_PROVISIONING)
    store.leases.put(lease)
    assert store.leases.find(state=LEASE_PROVISIONING) == [lease]
