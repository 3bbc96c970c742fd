"""The TTL lock repository, on every backend (see conftest.py)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from dynvm.core.store import Store
from testbed.serving import wait_until


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
