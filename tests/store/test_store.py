"""The store as a whole: one repository per subject on every backend, the outbox wrapping
only what it queues, and a contract test module per subject."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynvm.core.store import Store, StoreUnavailable, subjects
from dynvm.store.couchbase import CouchbaseStore
from dynvm.store.outbox import WRAPPERS, ResilientStore
from dynvm.store.sqlite import SqliteStore
from tests.support.cb_standin import StandInCollection


def test_ping(store: Store) -> None:
    store.ping()
    store.ping_write()


def test_every_backend_has_every_subject(store: Store) -> None:
    for name, port in subjects().items():
        assert isinstance(getattr(store, name), port), name


def test_a_store_refuses_a_missing_or_foreign_repository(tmp_path: Path) -> None:
    sqlite = SqliteStore(str(tmp_path / "dynvm.sqlite"))
    repos = {name: getattr(sqlite, name) for name in subjects()}
    with pytest.raises(TypeError, match="exactly the repositories"):
        Store({k: v for k, v in repos.items() if k != "locks"})
    with pytest.raises(TypeError, match="the locks repository must be a Locks"):
        Store({**repos, "locks": repos["tokens"]})
    assert Store(repos).leases is sqlite.leases
    sqlite.close()


def test_the_outbox_wraps_only_what_it_queues(tmp_path: Path) -> None:
    primary = SqliteStore(str(tmp_path / "dynvm.sqlite"))
    store = ResilientStore(primary, str(tmp_path / "outbox.sqlite"))
    try:
        assert set(WRAPPERS) == {"history", "leases", "reservations", "requests"}
        for name in subjects():
            repo, own = getattr(store, name), getattr(primary, name)
            if name in WRAPPERS:
                assert repo is not own and repo.primary is own, name
            else:
                assert repo is own, name  # tokens, locks, documents, owner keys: the backend's own
        assert store.direct is primary
    finally:
        store.close()


def test_what_the_outbox_passes_through_is_refused_in_an_outage(tmp_path: Path) -> None:
    """Operators and new work must see a refusal, never a queue; an identity is never guessed."""
    coll = StandInCollection()
    store = ResilientStore(CouchbaseStore(coll, io_retries=1, backoff_secs=0.0),
                           str(tmp_path / "outbox.sqlite"))
    assert store.documents.deployment_id("a") == "a"
    assert store.documents.deployment_id("b") == "a"
    coll.offline = True
    for write in (lambda: store.documents.deployment_id("c"),
                  lambda: store.documents.update("hosts", lambda d: {"drained": {}}),
                  lambda: store.tokens.revoke("t1", 1.0),
                  lambda: store.locks.acquire("expiry", "me", ttl=10)):
        with pytest.raises(StoreUnavailable):
            write()
    assert store.pending() == 0
    store.close()


def test_each_subject_has_its_contract_tests() -> None:
    here = Path(__file__).parent
    missing = [name for name in subjects() if not (here / f"test_{name}.py").exists()]
    assert missing == []
