"""The Couchbase adapter on the SDK stand-in: key layout, CAS, expiry, outages."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from couchbase.exceptions import (
    AuthenticationException,
    CasMismatchException,
    DocumentExistsException,
    DocumentNotFoundException,
    UnAmbiguousTimeoutException,
)
from couchbase.options import InsertOptions, RemoveOptions, ReplaceOptions

from dynvm.core.store import LEASE_ACTIVE, Conflict, StoreUnavailable
from dynvm.store.couchbase import CouchbaseStore, connection_string
from testbed.serving import wait_until
from tests.store.helpers import capped, make_lease, make_resv
from tests.support.cb_standin import StandInCollection

# -- the stand-in itself behaves like the server ---------------------------------------------


def test_standin_cas_and_existence() -> None:
    coll = StandInCollection()
    res = coll.insert("k", {"a": 1})
    with pytest.raises(DocumentExistsException):
        coll.insert("k", {"a": 2})
    got = coll.get("k")
    assert got.content_as[dict] == {"a": 1} and got.cas == res.cas
    coll.replace("k", {"a": 3}, ReplaceOptions(cas=got.cas))
    with pytest.raises(CasMismatchException):
        coll.replace("k", {"a": 4}, ReplaceOptions(cas=got.cas))  # stale CAS
    with pytest.raises(CasMismatchException):
        coll.remove("k", RemoveOptions(cas=got.cas))
    coll.remove("k", RemoveOptions(cas=coll.get("k").cas))
    with pytest.raises(DocumentNotFoundException):
        coll.get("k")
    with pytest.raises(DocumentNotFoundException):
        coll.replace("k", {"a": 5})


def test_standin_returns_copies() -> None:
    coll = StandInCollection()
    doc = {"items": [1]}
    coll.upsert("k", doc)
    doc["items"].append(2)
    got = coll.get("k").content_as[dict]
    got["items"].append(3)
    assert coll.get("k").content_as[dict] == {"items": [1]}


def test_standin_expiry() -> None:
    now = [1000.0]
    coll = StandInCollection(clock=lambda: now[0])
    coll.insert("k", {"a": 1}, InsertOptions(expiry=timedelta(seconds=5)))
    now[0] += 4.9
    assert coll.get("k").content_as[dict] == {"a": 1}
    now[0] += 0.2
    with pytest.raises(DocumentNotFoundException):
        coll.get("k")
    coll.insert("k", {"a": 2})  # an expired key is free again
    assert coll.keys() == ["k"]


def test_standin_offline_raises_sdk_timeout() -> None:
    coll = StandInCollection()
    coll.offline = True
    with pytest.raises(UnAmbiguousTimeoutException):
        coll.get("k")
    with pytest.raises(UnAmbiguousTimeoutException):
        coll.upsert("k", {})
    coll.offline = False
    coll.upsert("k", {})


# -- adapter: key layout in the seed's shape -------------------------------------------------------


def test_key_layout() -> None:
    coll = StandInCollection()
    store = CouchbaseStore(coll)
    doc = {"name": "job1", "state": "available", "poolId": "dynamicpool", "created_time": 5.0}
    store.history.put("vm-1", doc)
    lease = make_lease("job1", vm_uuid="vm-1")
    store.leases.put(lease)
    store.reservations.reserve("1/host-a", [make_resv("1/host-a")], capped(3))
    store.locks.acquire("expiry", "me", ttl=30)
    # History documents sit at the bare VM uuid, exactly as given (N1QL reports read them).
    assert coll.raw("vm-1") == doc
    # dynvm's own documents nest their data, so they never look like history.
    assert coll.raw("lease::vm-1") == {"dynvm": "lease", "lease": lease.to_dict()}
    assert "state" not in coll.raw("lease::vm-1")
    assert list(coll.raw("leases::index")["keys"]) == ["vm-1"]
    assert [r["host_key"] for r in coll.raw("resv::1/host-a")["items"]] == ["1/host-a"]
    assert coll.raw("lock::expiry")["holder"] == "me"
    assert "state" not in coll.raw("history::mark")
    assert set(coll.keys()) == {"vm-1", "lease::vm-1", "leases::index", "history::index",
                                "history::mark", "resv::1/host-a", "resv::hosts", "lock::expiry"}


def test_prefix_isolates_stores() -> None:
    coll = StandInCollection()
    a, b = CouchbaseStore(coll, prefix="a::"), CouchbaseStore(coll, prefix="b::")
    a.leases.put(make_lease("job1"))
    assert len(a.leases.find()) == 1 and b.leases.find() == []
    assert all(k.startswith("a::") for k in coll.keys())


def test_lock_document_expires_on_server() -> None:
    now = [1000.0]
    coll = StandInCollection(clock=lambda: now[0])
    store = CouchbaseStore(coll)
    assert store.locks.acquire("expiry", "a", ttl=10)
    now[0] += 30  # holder vanished: the server drops the document on its own
    assert coll.raw("lock::expiry") is None


def test_connection_string() -> None:
    assert connection_string("127.0.0.1") == "couchbase://127.0.0.1"
    assert connection_string("couchbases://cb.example.com") == "couchbases://cb.example.com"


# -- adapter: CAS conflicts, outages, lazy connect ------------------------------------------------------


class RacingCollection(StandInCollection):
    """Another writer touches every document between our read and our write."""

    def __init__(self, races: int) -> None:
        super().__init__()
        self.races = races

    def get(self, key: str, *options: Any, **kwargs: Any):
        result = super().get(key, *options, **kwargs)
        if self.races > 0:
            self.races -= 1
            super().upsert(key, result.content_as[dict])  # same content, new CAS
        return result


def test_cas_conflict_is_retried() -> None:
    coll = RacingCollection(races=0)
    store = CouchbaseStore(coll, backoff_secs=0.001)
    lease = make_lease("job1")
    store.leases.put(lease)
    coll.races = 3
    assert store.leases.update(lease.vm_uuid, ip="10.9.9.9").ip == "10.9.9.9"
    assert store.leases.get(lease.vm_uuid).ip == "10.9.9.9"


def test_cas_conflict_gives_up_with_conflict() -> None:
    coll = RacingCollection(races=0)
    store = CouchbaseStore(coll, cas_retries=4, backoff_secs=0.001)
    lease = make_lease("job1")
    store.leases.put(lease)
    coll.races = 100
    with pytest.raises(Conflict):
        store.leases.update(lease.vm_uuid, ip="10.9.9.9")
    coll.races = 0
    assert store.leases.get(lease.vm_uuid).ip == lease.ip


def test_offline_is_store_unavailable() -> None:
    coll = StandInCollection()
    store = CouchbaseStore(coll, io_retries=3, backoff_secs=0.001)
    store.leases.put(make_lease("job1"))
    coll.offline = True
    before = coll.calls
    with pytest.raises(StoreUnavailable):
        store.leases.find()
    assert coll.calls - before == 3  # bounded retries
    with pytest.raises(StoreUnavailable):
        store.reservations.reserve("1/a", [make_resv("1/a")], capped(1))
    with pytest.raises(StoreUnavailable):
        store.ping()
    coll.offline = False
    assert len(store.leases.find(state=LEASE_ACTIVE)) == 1


class FlakyCollection(StandInCollection):
    """Times out a given number of calls, then answers."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def _check(self) -> None:
        super()._check()
        if self.failures > 0:
            self.failures -= 1
            raise UnAmbiguousTimeoutException(message="timeout")


def test_transient_timeouts_are_retried() -> None:
    coll = FlakyCollection(failures=0)
    store = CouchbaseStore(coll, io_retries=3, backoff_secs=0.001)
    coll.failures = 2
    store.history.put("u1", {"name": "x", "created_time": 1.0})
    coll.failures = 2
    assert store.history.get("u1") == {"name": "x", "created_time": 1.0}


def test_breaker_fails_fast_then_recovers() -> None:
    coll = StandInCollection()
    store = CouchbaseStore(coll, io_retries=2, backoff_secs=0.001, breaker_secs=0.3)
    coll.offline = True
    with pytest.raises(StoreUnavailable):
        store.ping()
    coll.offline = False
    calls = coll.calls
    with pytest.raises(StoreUnavailable):
        store.ping()  # refused at once, without touching the cluster
    assert coll.calls == calls

    def recovered() -> bool:
        try:
            store.ping()
        except StoreUnavailable:
            return False
        return True

    wait_until(recovered, timeout=30, what="the breaker to let calls through again")


def test_lazy_connect_failure_is_unavailable_and_retried() -> None:
    attempts: list[int] = []
    coll = StandInCollection()

    def factory() -> StandInCollection:
        attempts.append(1)
        if len(attempts) == 1:
            raise AuthenticationException(message="cluster not reachable")
        return coll

    store = CouchbaseStore(factory=factory)
    assert attempts == []  # nothing happens at construction
    with pytest.raises(StoreUnavailable):
        store.ping()
    store.ping()
    store.leases.put(make_lease("job1"))
    assert len(attempts) == 2 and len(store.leases.find()) == 1


def test_constructor_needs_exactly_one_source() -> None:
    with pytest.raises(ValueError):
        CouchbaseStore()
    with pytest.raises(ValueError):
        CouchbaseStore(StandInCollection(), factory=StandInCollection)
