"""Store outage: release and expiry writes queue locally and replay in order."""

from __future__ import annotations

import pytest

from dynvm.config import CouchbaseConfig, StoreConfig
from dynvm.core.store import (
    LEASE_ACTIVE,
    LEASE_PROVISIONING,
    LEASE_RELEASING,
    RequestRecord,
    StoreUnavailable,
)
from dynvm.store import ResilientStore, open_store
from dynvm.store.couchbase import CouchbaseStore
from dynvm.store.sqlite import SqliteStore
from tests.store.helpers import capped, make_lease, make_resv
from tests.support.cb_standin import StandInCollection


@pytest.fixture
def coll() -> StandInCollection:
    return StandInCollection()


@pytest.fixture
def primary(coll: StandInCollection) -> CouchbaseStore:
    return CouchbaseStore(coll, io_retries=2, backoff_secs=0.001)


@pytest.fixture
def outbox_path(tmp_path) -> str:
    return str(tmp_path / "outbox" / "outbox.sqlite")


@pytest.fixture
def store(primary: CouchbaseStore, outbox_path: str) -> ResilientStore:
    return ResilientStore(primary, outbox_path)


def test_online_writes_go_straight_through(store: ResilientStore,
                                           primary: CouchbaseStore) -> None:
    lease = make_lease("job1")
    store.leases.put(lease)
    assert store.leases.update(lease.vm_uuid, ip="1.2.3.4").ip == "1.2.3.4"
    store.history.update(lease.vm_uuid, {"state": "available", "created_time": 1.0})
    assert store.pending() == 0
    assert primary.leases.get(lease.vm_uuid).ip == "1.2.3.4"
    assert primary.history.get(lease.vm_uuid) == {"state": "available", "created_time": 1.0}


def test_new_work_is_refused_while_offline(store: ResilientStore,
                                           coll: StandInCollection) -> None:
    coll.offline = True
    with pytest.raises(StoreUnavailable):
        store.reservations.reserve("1/a", [make_resv("1/a")], capped(5))
    with pytest.raises(StoreUnavailable):
        store.requests.put(RequestRecord(id="r", name="job", os="centos", count=1,
                                         instance="h:1", started=0.0))
    with pytest.raises(StoreUnavailable):
        store.leases.find()
    with pytest.raises(StoreUnavailable):
        store.locks.acquire("expiry", "me", ttl=10)
    assert store.pending() == 0


def test_outage_queues_then_replays_in_order(store: ResilientStore, primary: CouchbaseStore,
                                             coll: StandInCollection, outbox_path: str) -> None:
    # Before the outage: two live VMs, their history, a request and reservations.
    gone, kept = make_lease("job1", state=LEASE_PROVISIONING), make_lease("job2")
    for lease in (gone, kept):
        store.leases.put(lease)
        store.history.put(lease.vm_uuid, {"name": lease.name, "state": "available",
                                          "created_time": lease.created})
    store.requests.put(RequestRecord(id="req-1", name="job", os="centos", count=2,
                                     instance="h:1", started=1.0))
    r1, r2 = make_resv("1/a", request_id="req-1"), make_resv("1/a", request_id="req-2")
    store.reservations.reserve("1/a", [r1, r2], capped(5))
    assert store.leases.get(gone.vm_uuid) == gone  # this process has seen it

    coll.offline = True
    # The build of `gone` ends, then its release carries on, without the store.
    built = store.leases.transition(gone.vm_uuid, LEASE_PROVISIONING, LEASE_ACTIVE)
    assert built == gone.with_(state=LEASE_ACTIVE)  # best effort, from what we saw
    store.history.update(gone.vm_uuid, {"state": "deleted", "deleted_time": 10.0})
    store.history.update(gone.vm_uuid, {"delete_duration_secs": 4})
    store.leases.delete(gone.vm_uuid)
    store.leases.update(kept.vm_uuid, expires=kept.expires + 600)
    store.requests.finish("req-1", "done", {"vms": 2})
    store.reservations.settle(r1.id, vm_uuid="vm-x", settle_secs=0)
    assert store.reservations.drop_request("req-2") == 0  # not known until replay
    store.history.put("vm-failed", {"name": "job3", "state": "failed", "created_time": 5.0})
    assert store.pending() == 9
    assert store.replay() == 0  # still offline: nothing lost, nothing applied
    assert store.pending() == 9

    # The outbox is durable: a fresh process (new object, same file) sees it.
    coll.offline = False
    again = ResilientStore(primary, outbox_path)
    assert again.pending() == 9
    assert primary.leases.get(gone.vm_uuid) is not None  # not applied yet
    assert again.replay() == 9
    assert again.pending() == 0 and store.pending() == 0

    assert primary.leases.get(gone.vm_uuid) is None
    assert primary.leases.get(kept.vm_uuid).expires == kept.expires + 600
    doc = primary.history.get(gone.vm_uuid)
    assert doc["state"] == "deleted" and doc["deleted_time"] == 10.0
    assert doc["delete_duration_secs"] == 4 and doc["name"] == "job1"
    assert primary.history.get("vm-failed")["state"] == "failed"
    (req,) = primary.requests.find()
    assert req.state == "done" and req.detail == {"vms": 2}
    assert primary.reservations.live("1/a") == []
    assert [lease.vm_uuid for lease in primary.leases.find()] == [kept.vm_uuid]


def test_reads_apply_queued_changes(store: ResilientStore, primary: CouchbaseStore,
                                    coll: StandInCollection) -> None:
    gone, kept = make_lease("job1", expires_in=-5), make_lease("job2", expires_in=-5)
    for lease in (gone, kept):
        store.leases.put(lease)
    r1 = make_resv("1/a", request_id="req-1")
    store.reservations.reserve("1/a", [r1], capped(5))
    store.requests.put(RequestRecord(id="req-1", name="job", os="centos", count=1,
                                     instance="h:1", started=1.0))
    store.history.put("vm-h", {"name": "job1", "state": "available", "created_time": 1.0})
    coll.offline = True
    store.leases.delete(gone.vm_uuid)
    store.leases.transition(kept.vm_uuid, LEASE_PROVISIONING, LEASE_ACTIVE)
    store.reservations.drop_request("req-1")
    store.requests.finish("req-1", "done")
    store.history.update("vm-h", {"state": "deleted"})
    coll.offline = False
    # Another replayer holds the outbox, so the queue cannot drain yet.
    assert store.outbox.take_replay_lock("someone-else")
    assert store.pending() == 5
    assert store.leases.get(gone.vm_uuid) is None
    assert store.leases.get(kept.vm_uuid).state == LEASE_ACTIVE
    assert [lease.vm_uuid for lease in store.leases.find()] == [kept.vm_uuid]
    assert store.leases.find(state=LEASE_PROVISIONING) == []
    assert [lease.vm_uuid for lease in store.leases.due(now=kept.expires + 100)] == [kept.vm_uuid]
    assert store.reservations.live("1/a") == []
    assert store.requests.find("running") == [] and store.requests.find("done")[0].id == "req-1"
    assert store.requests.get("req-1").state == "done"
    assert primary.requests.get("req-1").state == "running"
    assert store.history.get("vm-h")["state"] == "deleted"
    # A compare-and-set on a lease with queued changes would judge stale state.
    with pytest.raises(StoreUnavailable):
        store.leases.transition(kept.vm_uuid, LEASE_ACTIVE, LEASE_RELEASING)
    # Writes made now queue behind the older ones instead of overtaking them.
    store.history.update("vm-h", {"deleted_time": 9.0})
    assert store.pending() == 6
    assert primary.history.get("vm-h")["state"] == "available"
    store.outbox.drop_replay_lock("someone-else")
    assert store.leases.get(gone.vm_uuid) is None  # a read triggers the replay
    assert store.pending() == 0
    assert primary.history.get("vm-h") == {"name": "job1", "state": "deleted",
                                           "created_time": 1.0, "deleted_time": 9.0}
    assert primary.leases.get(kept.vm_uuid).state == LEASE_ACTIVE


def test_replay_stops_at_outage_and_resumes(store: ResilientStore, primary: CouchbaseStore,
                                            coll: StandInCollection) -> None:
    coll.offline = True
    for i in range(5):
        store.history.update("vm-1", {f"step{i}": i, "last": i, "created_time": 1.0})
    assert store.pending() == 5
    coll.offline = False

    applied = []
    real_update = primary.history.update

    def update_then_fail(vm_uuid, patch):
        real_update(vm_uuid, patch)
        applied.append(patch["last"])
        if len(applied) == 2:
            coll.offline = True  # the store goes away again mid-replay

    primary.history.update = update_then_fail  # type: ignore[method-assign]
    assert store.replay() == 2
    assert store.pending() == 3
    coll.offline = False
    assert store.replay() == 3
    assert applied == [0, 1, 2, 3, 4]  # each write once, in the order it was made
    assert primary.history.get("vm-1")["last"] == 4
    assert store.pending() == 0


def test_rejected_write_is_set_aside_not_lost(store: ResilientStore,
                                              coll: StandInCollection) -> None:
    lease = make_lease("job1")
    store.leases.put(lease)
    with pytest.raises(TypeError):  # a bad call fails at once, it is never queued
        store.leases.update(lease.vm_uuid, no_such_field=1)
    coll.offline = True
    store.leases.update(lease.vm_uuid, ip="5.5.5.5")
    # A row the backend will never take (say, written by a newer dynvm) must not
    # block the queue behind it.
    with store.outbox._db.tx() as c:
        c.execute("UPDATE outbox SET op='from_the_future'")
    store.leases.update(lease.vm_uuid, ip="6.6.6.6")
    coll.offline = False
    assert store.replay() == 1
    assert store.leases.get(lease.vm_uuid).ip == "6.6.6.6"
    (bad,) = store.outbox.failed()
    assert bad["op"] == "from_the_future" and bad["args"]["changes"] == {"ip": "5.5.5.5"}
    assert store.pending() == 0


def test_update_lease_unknown_while_offline_returns_none(store: ResilientStore,
                                                         coll: StandInCollection) -> None:
    coll.offline = True
    assert store.leases.transition("never-seen", LEASE_PROVISIONING, LEASE_ACTIVE) is None
    assert store.pending() == 1


def test_open_store_sqlite(tmp_path) -> None:
    cfg = StoreConfig(backend="sqlite", sqlite_path=str(tmp_path / "a" / "db.sqlite"),
                      outbox_path=str(tmp_path / "b" / "outbox.sqlite"))
    store = open_store(cfg)
    assert isinstance(store, ResilientStore) and isinstance(store.primary, SqliteStore)
    store.leases.put(make_lease("job1"))
    assert len(store.leases.find()) == 1 and store.pending() == 0
    store.close()


def test_open_store_couchbase_is_lazy_and_reports_outage(tmp_path) -> None:
    cfg = StoreConfig(backend="couchbase", outbox_path=str(tmp_path / "outbox.sqlite"),
                      couchbase=CouchbaseConfig(server="couchbase://127.0.0.1:1", bucket="b",
                                                username="u", password="p"))
    lazy = open_store(cfg)  # no connection attempt yet
    assert isinstance(lazy.primary, CouchbaseStore)
    lazy.close()
    assert cfg.couchbase is not None
    store = ResilientStore(CouchbaseStore.connect(cfg.couchbase, connect_secs=0.2),
                           cfg.outbox_path)
    with pytest.raises(StoreUnavailable):
        store.ping()
    store.history.update("vm-1", {"state": "deleted"})  # queued, not lost
    assert store.pending() == 1


def test_open_store_rejects_bad_config(tmp_path) -> None:
    with pytest.raises(ValueError):
        open_store(StoreConfig(backend="mongo", outbox_path=str(tmp_path / "o.sqlite")))
    with pytest.raises(ValueError):
        open_store(StoreConfig(backend="couchbase", outbox_path=str(tmp_path / "o.sqlite")))


def test_update_lease_queued_behind_others_then_replayed(store: ResilientStore,
                                                         coll: StandInCollection) -> None:
    lease = make_lease("job1", state=LEASE_PROVISIONING)
    store.leases.put(lease)
    coll.offline = True
    store.history.update(lease.vm_uuid, {"state": "deleted"})
    coll.offline = False
    # Something is queued, so this write queues too; the replay it triggers
    # applies both, and the answer is the backend's lease.
    got = store.leases.transition(lease.vm_uuid, LEASE_PROVISIONING, LEASE_ACTIVE)
    assert got == lease.with_(state=LEASE_ACTIVE)
    assert store.pending() == 0


def test_claims_are_never_queued(store: ResilientStore, coll: StandInCollection) -> None:
    """A claim must reach the backend now; the claim holder's next move may wait."""
    lease = make_lease("job1", state=LEASE_PROVISIONING)
    store.leases.put(lease)
    coll.offline = True
    with pytest.raises(StoreUnavailable):
        store.leases.transition(lease.vm_uuid, LEASE_PROVISIONING, LEASE_RELEASING)
    assert store.pending() == 0
    got = store.leases.transition(lease.vm_uuid, LEASE_PROVISIONING, LEASE_ACTIVE)
    assert got == lease.with_(state=LEASE_ACTIVE) and store.pending() == 1
    coll.offline = False
    assert store.replay() == 1
    assert store.leases.get(lease.vm_uuid).state == LEASE_ACTIVE


def test_state_changes_queued_before_transitions_replay(store: ResilientStore,
                                                        primary: CouchbaseStore) -> None:
    """An outbox written by an older dynvm (a raw state change) replays as its transition."""
    lease = make_lease("job1", state=LEASE_PROVISIONING)
    store.leases.put(lease)
    store.outbox.enqueue("update_lease", f"lease:{lease.vm_uuid}",
                         {"vm_uuid": lease.vm_uuid, "changes": {"state": "active", "ip": "10.2.2.2"}})
    assert store.replay() == 1
    got = primary.leases.get(lease.vm_uuid)
    assert got.state == LEASE_ACTIVE and got.ip == "10.2.2.2"
