"""The request repository, on every backend (see conftest.py). Every request move: test_lifecycle.py."""

from __future__ import annotations

import time

from dynvm.core.store import RequestRecord, Store


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
