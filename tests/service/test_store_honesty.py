"""A misbehaving SQLite store: locked, hung, deleted. Every answer is an honest 503 or works.

The store is dynvm's SQLite backend on a real file; the "other process"
holding the write lock is a second SQLite connection, which SQLite locks
exactly like another process. Xen is the simulator over real XML-RPC.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import dynvm.store.sqlite.db as sqlite_db
from dynvm.api import create_app
from dynvm.core.services import Dynvm
from dynvm.runtime.bootstrap import build_service
from dynvm.sim import Farm
from dynvm.store.sqlite import SqliteStore
from tests.service.conftest import FAST, _release_everything, wait_until, write_ini


@pytest.fixture
def quick_busy(monkeypatch) -> None:
    """A held lock is given up on after 0.3 s instead of 10 s, so the test runs quickly."""
    monkeypatch.setattr(sqlite_db, "BUSY_TIMEOUT_SECS", 0.3)


def _service(tmp_path: Path, farm: Farm) -> Dynvm:
    return build_service(str(write_ini(tmp_path, farm)), timings=FAST)


@pytest.fixture
def svc(tmp_path, farm, clean_farm, quick_busy) -> Iterator[Dynvm]:
    service = _service(tmp_path, farm)
    try:
        yield service
    finally:
        _release_everything(service)
        service.close()


class WriteLock:
    """Another writer holding the database's write lock until released."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def __enter__(self) -> WriteLock:
        self.conn.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


def _one_line_503(resp) -> str:
    text = resp.get_data(as_text=True)
    assert resp.status_code == 503, (resp.status_code, text)
    assert "\n" not in text.strip() and text.startswith("Error:"), text
    return text


def test_locked_store_answers_503_and_never_applies_later(svc, tmp_path, probe) -> None:
    client = create_app(service=svc).test_client()
    r = client.get("/getservers/lockd?os=centos")
    assert r.status_code == 200, r.get_data(as_text=True)
    before = svc.ctx.store.leases.find(name="lockd")[0].expires
    with WriteLock(tmp_path / "dynvm.sqlite"):
        _one_line_503(client.get("/getservers/lockd2?os=centos"))
        assert probe.vms_named("lockd2") == []  # refused before any XenAPI write
        text = _one_line_503(client.get("/setexpiry/lockd/5"))
        assert "store" in text
        health = client.get("/health")
        assert health.status_code == 503
        assert json.loads(health.get_data(as_text=True))["store"]["ok"] is False
        # Reads still work beside a writer (WAL).
        assert client.get("/showall").status_code == 200
        assert client.get("/getavailablecount/centos").status_code == 200
    svc.ctx.store.ping()  # would replay anything queued
    assert svc.ctx.store.leases.find(name="lockd")[0].expires == before  # the 503 meant "not done"
    assert client.get("/health").status_code == 200


def test_health_answers_in_bounded_time_when_the_store_hangs(tmp_path, farm, clean_farm,
                                                             monkeypatch) -> None:
    # The store waits "forever" (10 minutes) for the lock: /health must not.
    monkeypatch.setattr(sqlite_db, "BUSY_TIMEOUT_SECS", 600.0)
    service = _service(tmp_path, farm)
    client = create_app(service=service).test_client()
    try:
        assert client.get("/health").status_code == 200
        lock = WriteLock(tmp_path / "dynvm.sqlite").__enter__()
        try:
            health = client.get("/health")
            body = json.loads(health.get_data(as_text=True))
            assert health.status_code == 503
            assert "did not answer" in body["store"]["error"], body
            # A second check while the first probe still hangs shares its outcome.
            again = json.loads(client.get("/health").get_data(as_text=True))
            assert again["store"]["ok"] is False
        finally:
            lock.__exit__()
        wait_until(lambda: client.get("/health").status_code == 200, timeout=60,
                   what="the store to be healthy again")
    finally:
        service.close()


def test_deleted_store_file_is_recreated_whole_without_restart(svc, tmp_path, monkeypatch,
                                                               caplog) -> None:
    """The recreated file gets the whole schema: leases, and static-pool documents
    (pools=) too, which used to be dropped ("no such table") until a restart."""
    monkeypatch.setattr(sqlite_db, "IDENTITY_CHECK_SECS", 0.0)
    client = create_app(service=svc).test_client()
    r = client.get("/getservers/del1?os=centos&pools=regression&format=detailed")
    assert r.status_code == 200, r.get_data(as_text=True)
    assert svc.ctx.static_pools.get(json.loads(r.get_data(as_text=True))["del1"]) is not None
    assert client.get("/releaseservers/del1").status_code == 200
    db = tmp_path / "dynvm.sqlite"
    # The three files go as one (`rm dynvm.sqlite*`), under the lock the store recreates
    # the file under: a thread that recreated it between two unlinks would lose the new
    # file's WAL to the next one, and SQLite then answers "disk I/O error" (short read).
    with open(f"{db}.lock", "rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    r = client.get("/getservers/del2?os=centos&pools=regression&format=detailed")
    assert r.status_code == 200, r.get_data(as_text=True)
    assert db.exists()
    assert [lease.name for lease in svc.ctx.store.leases.find(name="del2")] == ["del2"]
    ip = json.loads(r.get_data(as_text=True))["del2"]
    doc = svc.ctx.static_pools.get(ip)
    assert doc is not None and doc["name"] == "del2" and doc["poolId"] == ["regression"]
    assert "no such table" not in caplog.text
    assert client.get("/health").status_code == 200
    assert client.get("/releaseservers/del2").status_code == 200
    assert svc.ctx.static_pools.get(ip) is None


def test_store_files_are_private(tmp_path) -> None:
    path = tmp_path / "state" / "sub" / "dynvm.sqlite"
    store = SqliteStore(str(path))
    try:
        store.ping_write()
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
        for f in path.parent.iterdir():
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    finally:
        store.close()


def test_store_failing_mid_build_answers_503_and_leaves_no_vm(svc, tmp_path, farm, probe) -> None:
    client = create_app(service=svc).test_client()
    answer: dict = {}
    clone = farm.hold("VM.clone")  # the build waits at its first XenAPI write until released

    def ask() -> None:
        r = client.get("/getservers/midway?os=centos")
        answer.update(status=r.status_code, text=r.get_data(as_text=True))

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        # Room is reserved and the clone is under way; the lease is written when it is
        # done, and that write finds the store locked.
        assert clone.reached.wait(120), "the build never reached its clone"
        assert svc.ctx.store.reservations.live()
        assert not svc.ctx.store.leases.find(name="midway")
        with WriteLock(tmp_path / "dynvm.sqlite"):
            clone.release()
            asker.join(timeout=300)
    finally:
        clone.release()
    assert answer.get("status") == 503, answer
    assert "store" in answer["text"], answer
    wait_until(lambda: probe.vms_named("midway") == [], timeout=60,
               what="the half-built VM to be destroyed")
