"""SQLite-specific guarantees: several processes on one file, forks, durability."""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from dynvm.core.store import RequestRecord, StoreUnavailable
from dynvm.store.sqlite import SqliteStore, state_file
from dynvm.store.sqlite.requests import REQUEST_KEEP_SECS
from tests.store.helpers import capped, make_lease, make_resv, reserve_in_process


def test_reserve_atomic_across_processes(tmp_path) -> None:
    path = str(tmp_path / "shared.sqlite")
    SqliteStore(path).ping()  # create the schema once, as the service does at start
    # Forked, as gunicorn makes its workers: each opens its own store on the same file
    # (a spawned process would import dynvm again, ~0.4 s of CPU each).
    ctx = multiprocessing.get_context("fork")
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
    assert len(SqliteStore(path).reservations.live("1/a")) == 10


def _child_after_fork(path: str, vm_uuid: str) -> None:
    # Uses the store object inherited from the parent: it must open its own connection.
    store = _inherited[0]
    store.leases.put(make_lease("child", vm_uuid=vm_uuid))
    store.reservations.reserve("1/a", [make_resv("1/a", request_id="child")], capped(5))


_inherited: list[SqliteStore] = []


def test_store_survives_fork(tmp_path) -> None:
    path = str(tmp_path / "fork.sqlite")
    store = SqliteStore(path)
    store.leases.put(make_lease("parent"))  # parent has an open connection now
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
    assert store.leases.get("vm-child") is not None
    assert [r.request_id for r in store.reservations.live("1/a")] == ["child"]
    assert len(store.leases.find()) == 2


def test_creates_directory_uses_wal_and_persists(tmp_path) -> None:
    path = tmp_path / "deep" / "er" / "dynvm.sqlite"
    store = SqliteStore(str(path))
    lease = make_lease("job1")
    store.leases.put(lease)
    store.history.put("u1", {"name": "job1", "created_time": 1.0})
    store.close()
    assert path.exists()
    mode = sqlite3.connect(str(path)).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    again = SqliteStore(str(path))
    assert again.leases.get(lease.vm_uuid) == lease
    assert again.history.get("u1") == {"name": "job1", "created_time": 1.0}


def test_two_store_objects_share_state(tmp_path) -> None:
    path = str(tmp_path / "s.sqlite")
    a, b = SqliteStore(path), SqliteStore(path)
    assert a.locks.acquire("expiry", f"a:{os.getpid()}", ttl=30)
    assert not b.locks.acquire("expiry", "b", ttl=30)
    assert b.locks.holder("expiry") == f"a:{os.getpid()}"


def _open_handles(path: str) -> int:
    """File descriptors of this process on the database file or its WAL."""
    fd_dir = "/proc/self/fd"
    count = 0
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(OSError):
            if os.readlink(os.path.join(fd_dir, fd)).startswith(path):
                count += 1
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_connection_closed_when_its_thread_ends(tmp_path) -> None:
    # Provisioning runs each request on a fresh thread pool: a connection per
    # thread that outlived its thread would exhaust file handles over time.
    path = str(tmp_path / "threads.sqlite")
    store = SqliteStore(path)
    store.leases.put(make_lease("main"))
    baseline = _open_handles(path)
    for i in range(40):
        t = threading.Thread(target=store.leases.put, args=(make_lease(f"t{i}"),))
        t.start()
        t.join()
    assert _open_handles(path) <= baseline + 1
    assert len(store.leases.find()) == 41
    store.close()
    assert _open_handles(path) == 0


def test_outage_inside_a_transaction_is_store_unavailable(tmp_path) -> None:
    store = SqliteStore(str(tmp_path / "full.sqlite"))
    lease = make_lease("job1")
    store.leases.put(lease)
    with pytest.raises(StoreUnavailable, match="disk is full"), store._db.tx() as c:
        c.execute("DELETE FROM leases")
        raise sqlite3.OperationalError("database or disk is full")
    # Rolled back, and the connection is usable again.
    assert store.leases.get(lease.vm_uuid) == lease
    # A transaction SQLite already ended reports its own error, not the rollback's.
    with pytest.raises(StoreUnavailable, match="disk I/O"), store._db.tx() as c:
        c.execute("ROLLBACK")
        raise sqlite3.OperationalError("disk I/O error")
    # A bug in a statement stays what it is.
    with pytest.raises(sqlite3.OperationalError, match="no such column"), store._db.tx() as c:
        c.execute("SELECT nope FROM leases")
    store.leases.put(lease.with_(ip="10.0.0.6"))
    assert store.leases.get(lease.vm_uuid).ip == "10.0.0.6"


def test_finished_requests_are_pruned(tmp_path) -> None:
    store = SqliteStore(str(tmp_path / "req.sqlite"))
    week_ago = time.time() - REQUEST_KEEP_SECS - 60
    store.requests.put(RequestRecord(id="old", name="job", os="centos", count=1, instance="h:1",
                                     started=week_ago, state="done", finished=week_ago))
    store.requests.put(RequestRecord(id="stuck", name="job", os="centos", count=1,
                                     instance="h:1", started=week_ago))
    store.requests.put(RequestRecord(id="new", name="job", os="centos", count=1, instance="h:1",
                                     started=time.time()))
    store.requests.finish("new", "done")
    # Old finished records go; running ones stay, however old (reconcile judges them).
    assert [r.id for r in store.requests.find()] == ["stuck", "new"]


def test_generation_moves_with_every_write_of_any_process_and_no_read(tmp_path) -> None:
    path = str(tmp_path / "dynvm.sqlite")
    mine, other = SqliteStore(path), SqliteStore(path)  # two processes' views of one file
    try:
        first = mine.generation()
        mine.reservations.live()
        mine.documents.get("hosts")
        assert mine.generation() == first  # reads change nothing
        other.documents.update("hosts", lambda d: {"drained": {"1": True}})
        moved = mine.generation()
        assert moved != first
        mine.documents.update("hosts", lambda d: {})
        assert mine.generation() != moved  # its own writes too
    finally:
        mine.close()
        other.close()


def test_generation_is_the_wal_index_header_and_moves_with_another_process(tmp_path) -> None:
    """The token is read from the WAL index without a query, and a commit of another
    process (not only another connection of this one) moves it."""
    path = str(tmp_path / "dynvm.sqlite")
    mine = SqliteStore(path)
    try:
        first = mine.generation()
        reader = state_file(path)
        assert isinstance(first, bytes) and first == reader.wal_header()
        reader.close()
        assert mine.generation() == first
        write = ("from dynvm.store.sqlite import SqliteStore; import sys; "
                 "s = SqliteStore(sys.argv[1]); "
                 "s.documents.update('hosts', lambda d: {'drained': {'2': True}}); s.close()")
        subprocess.run([sys.executable, "-c", write, path], check=True, timeout=120)
        moved = mine.generation()
        assert isinstance(moved, bytes) and moved != first
        assert mine.documents.get("hosts") == {"drained": {"2": True}}
    finally:
        mine.close()


def test_a_wal_index_header_caught_half_written_or_absent_is_not_trusted(tmp_path) -> None:
    """Two equal initialised copies are a token; differing copies (a commit rewriting
    them), an uninitialised or short header, or none at all fall back to the query."""
    db = state_file(str(tmp_path / "fake.sqlite"))
    shm = tmp_path / "fake.sqlite-shm"
    assert db.wal_header() is None  # no WAL index at all
    header = bytearray(48)
    header[12] = 1  # isInit
    header[8] = 7  # iChange
    shm.write_bytes(bytes(header) * 2 + b"rest")
    assert db.wal_header() == bytes(header)
    other = bytearray(header)
    other[8] = 8
    shm.write_bytes(bytes(other) + bytes(header))
    assert db.wal_header() is None
    uninit = bytearray(header)
    uninit[12] = 0
    shm.write_bytes(bytes(uninit) * 2)
    assert db.wal_header() is None
    shm.write_bytes(bytes(header))
    assert db.wal_header() is None
    db.close()


def test_the_wal_index_is_read_through_one_descriptor_closed_with_the_store(tmp_path) -> None:
    def shm_fds() -> int:
        return sum(1 for fd in os.listdir("/proc/self/fd")
                   if os.path.realpath(f"/proc/self/fd/{fd}").endswith("dynvm.sqlite-shm"))

    path = str(tmp_path / "dynvm.sqlite")
    store = SqliteStore(path)
    store.generation()
    opened = shm_fds()  # SQLite's own and ours
    for _ in range(5):
        store.generation()
    assert shm_fds() == opened
    store.close()
    assert shm_fds() == 0
    forgotten = SqliteStore(path)  # a store nobody closes does not keep its descriptor
    forgotten.generation()
    assert shm_fds() == opened
    del forgotten
    gc.collect()
    assert shm_fds() == 0


def test_generation_of_an_outbox_holding_writes_is_none(tmp_path) -> None:
    from dynvm.store.outbox import ResilientStore

    store = ResilientStore(SqliteStore(str(tmp_path / "dynvm.sqlite")),
                           str(tmp_path / "outbox.sqlite"))
    try:
        quiet = store.generation()
        assert quiet is not None and store.generation() == quiet
        # A write queued during an outage: every read must replay and merge it.
        store.outbox.enqueue("drop_reservations", "resv-request:r1", {"request_id": "r1"})
        assert store.generation() is None
        assert store.replay() == 1
        after = store.generation()
        assert after is not None and after != quiet
    finally:
        store.close()


def test_history_documents_share_their_keys(tmp_path) -> None:
    """Every worker keeps the whole history decoded: one string per key, not per document."""
    s = SqliteStore(str(tmp_path / "dynvm.sqlite"))
    try:
        for i in range(3):
            s.history.put(f"u{i}", {"name": f"job{i}", "created_time": 100.0 + i, "os": "centos"})
        docs = s.history.recent()
        assert [d["name"] for d in docs] == ["job2", "job1", "job0"]
        keys = [{k: k for k in d} for d in docs]
        assert all(keys[0][k] is other[k] for other in keys[1:] for k in keys[0])
    finally:
        s.close()
