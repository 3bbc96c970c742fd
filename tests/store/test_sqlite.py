"""SQLite-specific guarantees: several processes on one file, forks, durability."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3

from dynvm.store.sqlite import SqliteStore
from tests.store.helpers import capped, make_lease, make_resv, reserve_in_process


def test_reserve_atomic_across_processes(tmp_path) -> None:
    path = str(tmp_path / "shared.sqlite")
    SqliteStore(path).ping()  # create the schema once, as the service does at start
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=reserve_in_process, args=(path, "1/a", 10, 10, start, results))
             for _ in range(4)]
    for p in procs:
        p.start()
    got = dict(results.get(timeout=30) for _ in procs)
    for p in procs:
        p.join(10)
        assert p.exitcode == 0
    assert sum(got.values()) == 10
    assert len(got) == 4
    assert len(SqliteStore(path).reservations("1/a")) == 10


def _child_after_fork(path: str, vm_uuid: str) -> None:
    # Uses the store object inherited from the parent: it must open its own connection.
    store = _inherited[0]
    store.put_lease(make_lease("child", vm_uuid=vm_uuid))
    store.reserve("1/a", [make_resv("1/a", request_id="child")], capped(5))


_inherited: list[SqliteStore] = []


def test_store_survives_fork(tmp_path) -> None:
    path = str(tmp_path / "fork.sqlite")
    store = SqliteStore(path)
    store.put_lease(make_lease("parent"))  # parent has an open connection now
    _inherited[:] = [store]
    try:
        proc = multiprocessing.get_context("fork").Process(
            target=_child_after_fork, args=(path, "vm-child"))
        proc.start()
        proc.join(20)
        assert proc.exitcode == 0
    finally:
        _inherited.clear()
    # The parent's connection still works and sees the child's writes.
    assert store.get_lease("vm-child") is not None
    assert [r.request_id for r in store.reservations("1/a")] == ["child"]
    assert len(store.leases()) == 2


def test_creates_directory_uses_wal_and_persists(tmp_path) -> None:
    path = tmp_path / "deep" / "er" / "dynvm.sqlite"
    store = SqliteStore(str(path))
    lease = make_lease("job1")
    store.put_lease(lease)
    store.put_history("u1", {"name": "job1", "created_time": 1.0})
    store.close()
    assert path.exists()
    mode = sqlite3.connect(str(path)).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    again = SqliteStore(str(path))
    assert again.get_lease(lease.vm_uuid) == lease
    assert again.get_history("u1") == {"name": "job1", "created_time": 1.0}


def test_two_store_objects_share_state(tmp_path) -> None:
    path = str(tmp_path / "s.sqlite")
    a, b = SqliteStore(path), SqliteStore(path)
    assert a.acquire_leader("expiry", f"a:{os.getpid()}", ttl=30)
    assert not b.acquire_leader("expiry", "b", ttl=30)
    assert b.leader("expiry") == f"a:{os.getpid()}"
