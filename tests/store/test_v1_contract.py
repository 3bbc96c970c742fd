"""Store additions for the v1 API (tokens, quota inside `reserve`), on every backend."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

from dynvm.core.store import LEASE_ACTIVE, LEASE_READY, QuotaCheck, Store, Token
from dynvm.store.outbox import ResilientStore
from dynvm.store.sqlite import SqliteStore
from tests.store.helpers import capped, make_lease, make_resv


def _vms_quota(owner: str, limit: int) -> QuotaCheck:
    return QuotaCheck(owner=owner, room=lambda res, leases: limit - len(res) - len(leases))


def test_tokens_roundtrip_and_revoke(store: Store) -> None:
    a = Token(id="t1", owner="team-a", hash="h" * 64, admin=False, created=1.0)
    b = Token(id="t2", owner="ops", hash="k" * 64, admin=True, created=2.0, expires=time.time() + 60)
    store.tokens.put(a)
    store.tokens.put(b)
    assert store.tokens.by_hash("h" * 64) == a
    assert store.tokens.by_hash("nope") is None
    assert [t.id for t in store.tokens.all()] == ["t1", "t2"]
    assert store.tokens.revoke("t1", 5.0) is True
    got = store.tokens.by_hash("h" * 64)
    assert got is not None and got.revoked == 5.0 and not got.valid()
    assert store.tokens.revoke("t1", 9.0) is True  # the first revocation time stays
    assert store.tokens.by_hash("h" * 64).revoked == 5.0
    assert store.tokens.revoke("missing", 1.0) is False
    assert store.tokens.by_hash("k" * 64).valid()


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


def test_outbox_passes_tokens_and_quota_through(tmp_path: Path) -> None:
    store = ResilientStore(SqliteStore(str(tmp_path / "p.sqlite")), str(tmp_path / "o.sqlite"))
    try:
        store.tokens.put(Token(id="t1", owner="a", hash="x" * 64))
        assert store.tokens.by_hash("x" * 64).owner == "a"
        assert [t.id for t in store.tokens.all()] == ["t1"]
        assert store.tokens.revoke("t1", 1.0)
        q = _vms_quota("a", 1)
        wanted = [replace(make_resv("1/a"), owner="a") for _ in range(2)]
        assert len(store.reservations.reserve("1/a", wanted, capped(5), q)) == 1
    finally:
        store.close()


def test_reserve_many_shares_one_quota_over_hosts(store: Store) -> None:
    q = _vms_quota("team-a", 3)
    batches = [(f"{i}/h", [replace(make_resv(f"{i}/h"), owner="team-a") for _ in range(2)],
                capped(1 if i == 0 else 5)) for i in range(3)]
    got = store.reservations.reserve_many(batches, q)
    assert [len(g) for g in got] == [1, 2, 0]  # host 0 fits one; the quota stops at three
    assert {r.host_key for g in got for r in g} == {"0/h", "1/h"}
    assert store.reservations.reserve_many([("9/h", [make_resv("9/h")], capped(2))]) == \
        [store.reservations.live("9/h")]
