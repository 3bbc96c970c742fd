"""The history subject's memo: every worker answers from the store's current history."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from dynvm.core.services.base import Runtime
from dynvm.core.services.history import History
from dynvm.core.store import Store
from dynvm.store.couchbase import CouchbaseStore
from dynvm.store.sqlite import SqliteStore
from tests.store.helpers import make_lease
from tests.support.cb_standin import StandInCollection


def _sqlite_pair(tmp_path) -> tuple[Store, Store]:
    path = str(tmp_path / "dynvm.sqlite")
    return SqliteStore(path), SqliteStore(path)


def _couchbase_pair(tmp_path) -> tuple[Store, Store]:
    coll = StandInCollection(latency=0.0)
    return CouchbaseStore(coll), CouchbaseStore(coll)


@pytest.fixture(params=[_sqlite_pair, _couchbase_pair], ids=["sqlite", "couchbase-standin"])
def two_workers(request: pytest.FixtureRequest, tmp_path) -> Iterator[tuple[Store, Store]]:
    """Two store clients on one backend, as two gunicorn workers hold them."""
    make: Callable[..., tuple[Store, Store]] = request.param
    mine, other = make(tmp_path)
    yield mine, other
    mine.close()
    other.close()


def _history(store: Store) -> History:
    """The history subject of a service over `store` (all it reads of its runtime)."""
    rt: Any = SimpleNamespace(ctx=SimpleNamespace(store=store), read=Runtime.read)
    return History(rt)


def _names(docs: list[dict]) -> list[str]:
    return [d["name"] for d in docs]


def test_a_write_by_another_worker_is_seen_at_once(two_workers) -> None:
    mine, other = two_workers
    memo = _history(mine)
    other.history.put("u1", {"name": "job1", "created_time": 100.0, "state": "available"})
    assert _names(memo.docs()) == ["job1"]

    other.history.put("u2", {"name": "job2", "created_time": 200.0, "state": "available"})
    assert _names(memo.docs()) == ["job2", "job1"]
    other.history.update("u1", {"state": "deleted"})
    assert [d["state"] for d in memo.docs()] == ["available", "deleted"]


def test_unchanged_history_is_not_read_again(two_workers) -> None:
    mine, other = two_workers
    memo = _history(mine)
    other.history.put("u1", {"name": "job1", "created_time": 100.0})
    docs = memo.docs()
    other.leases.put(make_lease("job1"))  # another subject: the history itself did not change
    assert memo.docs() is docs
    calls: list[int] = []

    def count(d: list[dict]) -> int:
        calls.append(1)
        return len(d)

    assert memo.derived(docs, "n", count) == 1
    assert memo.derived(memo.docs(), "n", count) == 1
    assert calls == [1]  # derived once per read of the history

