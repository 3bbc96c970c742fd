"""The history repository, on every backend (see conftest.py)."""

from __future__ import annotations

from dynvm.core.store import Store
from tests.store.helpers import make_lease


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
