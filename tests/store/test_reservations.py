"""The reservation repository, quotas included, on every backend (see conftest.py)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from dynvm.core.store import LEASE_ACTIVE, LEASE_READY, QuotaCheck, Reservation, Store
from testbed.serving import wait_until
from tests.store.helpers import capped, make_lease, make_resv


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

# -- quotas: the owner's usage read in the same atomic step ---------------------------------

def _vms_quota(owner: str, limit: int) -> QuotaCheck:
    return QuotaCheck(owner=owner, room=lambda res, leases: limit - len(res) - len(leases))

def test_reserve_with_quota_counts_reservations_and_leases_once(store: Store) -> None:
    q = _vms_quota("team-a", 3)
    mine = replace(make_resv("1/a", request_id="r1"), owner="team-a")
    assert store.reservations.reserve("1/a", [mine], capped(10), q) == [mine]
    # The same VM once its lease exists: counted once, not twice.
    store.reservations.settle(mine.id, vm_uuid="vm-1", settle_secs=60)
    lease = replace(make_lease("job1", vm_uuid="vm-1"), owner="team-a")
    store.leases.put(lease)
    store.leases.put(replace(make_lease("warm", state=LEASE_READY), owner="team-a"))  # not counted
    store.leases.put(replace(make_lease("other"), owner="team-b"))  # someone else's
    wanted = [replace(make_resv("2/b", request_id="r2"), owner="team-a") for _ in range(3)]
    assert len(store.reservations.reserve("2/b", wanted, capped(10), q)) == 2
    assert store.reservations.reserve("1/a", [replace(make_resv("1/a"), owner="team-a")], capped(10), q) == []
    # Another owner is not held back, and capacity still applies.
    other = [replace(make_resv("1/a"), owner="team-b") for _ in range(5)]
    assert len(store.reservations.reserve("1/a", other, capped(4), _vms_quota("team-b", 10))) == 3
    # Releasing frees quota.
    store.leases.delete("vm-1")
    store.reservations.settle(mine.id, settle_secs=0)
    assert len(store.reservations.reserve("2/b", [replace(make_resv("2/b"), owner="team-a")],
                                          capped(10), q)) == 1
    assert {lease.state for lease in store.leases.find()} == {LEASE_ACTIVE, LEASE_READY}

def test_quota_atomic_across_threads_and_hosts(store: Store) -> None:
    barrier = threading.Barrier(16)
    got: list[int] = []
    lock = threading.Lock()

    def slow(res, leases) -> int:
        time.sleep(0.002)  # widen the read-to-write window: a non-atomic check would overbook
        return 5 - len(res) - len(leases)
    q = QuotaCheck(owner="team-a", room=slow)

    def worker(i: int) -> None:
        host = f"{i % 4}/h"
        barrier.wait()
        taken = store.reservations.reserve(host, [replace(make_resv(host, request_id=f"r{i}"),
                                                          owner="team-a")], capped(100), q)
        with lock:
            got.append(len(taken))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(got) == 5
    assert len([r for r in store.reservations.live() if r.owner == "team-a"]) == 5

def test_reserve_many_shares_one_quota_over_hosts(store: Store) -> None:
    q = _vms_quota("team-a", 3)
    batches = [(f"{i}/h", [replace(make_resv(f"{i}/h"), owner="team-a") for _ in range(2)],
                capped(1 if i == 0 else 5)) for i in range(3)]
    got = store.reservations.reserve_many(batches, q)
    assert [len(g) for g in got] == [1, 2, 0]  # host 0 fits one; the quota stops at three
    assert {r.host_key for g in got for r in g} == {"0/h", "1/h"}
    assert store.reservations.reserve_many([("9/h", [make_resv("9/h")], capped(2))]) == \
        [store.reservations.live("9/h")]
