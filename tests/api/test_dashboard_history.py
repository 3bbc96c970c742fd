"""The dashboard's history memo: every worker answers from the store's current history."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dynvm.api.dashboard_history import _HistoryMemo
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


class _Reads:
    """The service's history reads (`Dynvm.history_mark`, `Dynvm.history`) over one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def history_mark(self) -> str:
        return self.store.history.mark()

    def history(self, limit: int) -> list[dict]:
        return self.store.history.recent(limit=limit)


def _names(docs: list[dict]) -> list[str]:
    return [d["name"] for d in docs]


def test_a_write_by_another_worker_is_seen_at_once(two_workers) -> None:
    mine, other = two_workers
    memo = _HistoryMemo()
    svc: Any = _Reads(mine)  # all the memo reads of a service
    other.history.put("u1", {"name": "job1", "created_time": 100.0, "state": "available"})
    assert _names(memo.docs(svc)) == ["job1"]

    other.history.put("u2", {"name": "job2", "created_time": 200.0, "state": "available"})
    assert _names(memo.docs(svc)) == ["job2", "job1"]
    other.history.update("u1", {"state": "deleted"})
    assert [d["state"] for d in memo.docs(svc)] == ["available", "deleted"]


def test_unchanged_history_is_not_read_again(two_workers) -> None:
    mine, other = two_workers
    memo = _HistoryMemo()
    svc: Any = _Reads(mine)  # all the memo reads of a service
    other.history.put("u1", {"name": "job1", "created_time": 100.0})
    docs = memo.docs(svc)
    other.leases.put(make_lease("job1"))  # another subject: the history itself did not change
    assert memo.docs(svc) is docs
    calls: list[int] = []

    def count(d: list[dict]) -> int:
        calls.append(1)
        return len(d)

    assert memo.derived(docs, "n", count) == 1
    assert memo.derived(memo.docs(svc), "n", count) == 1
    assert calls == [1]  # derived once per read of the history

