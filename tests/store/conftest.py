"""Backends for the store contract suite (`test_<subject>.py`, one per repository).

Every contract test runs against SQLite, against the Couchbase adapter on the
in-process stand-in collection, through the outbox in front of that adapter
(as the service runs it), and against a real Couchbase cluster when
DYNVM_TEST_COUCHBASE (a couchbase:// connection string) is set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynvm.config import CouchbaseConfig
from dynvm.core.store import Store
from dynvm.store.couchbase import CouchbaseStore
from dynvm.store.outbox import ResilientStore
from dynvm.store.sqlite import SqliteStore
from tests.support.cb_standin import StandInCollection


def real_couchbase_config() -> CouchbaseConfig | None:
    url = os.environ.get("DYNVM_TEST_COUCHBASE")
    if not url:
        return None
    return CouchbaseConfig(
        server=url,
        bucket=os.environ.get("DYNVM_TEST_COUCHBASE_BUCKET", "dynvm_test"),
        username=os.environ.get("DYNVM_TEST_COUCHBASE_USER", "Administrator"),
        password=os.environ.get("DYNVM_TEST_COUCHBASE_PASSWORD", "password"),
    )


def _tmp_path(request: pytest.FixtureRequest) -> Path:
    """The test's own directory, made only for the backends that keep files."""
    return request.getfixturevalue("tmp_path")


@pytest.fixture(params=["sqlite", "couchbase-standin", "outbox",
                        pytest.param("couchbase-real", marks=pytest.mark.couchbase)])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    kind = request.param
    if kind == "sqlite":
        s: Store = SqliteStore(str(_tmp_path(request) / "db" / "dynvm.sqlite"))
    elif kind == "couchbase-standin":
        s = CouchbaseStore(StandInCollection(latency=0.0005))
    elif kind == "outbox":
        s = ResilientStore(CouchbaseStore(StandInCollection(latency=0.0005)),
                           str(_tmp_path(request) / "outbox" / "outbox.sqlite"))
    else:
        cfg = real_couchbase_config()
        if cfg is None:
            pytest.skip("DYNVM_TEST_COUCHBASE not set: real Couchbase backend not tested")
        # A fresh key prefix per test keeps runs apart in a shared bucket.
        s = CouchbaseStore.connect(cfg, prefix=f"test-{uuid.uuid4().hex[:12]}::")
        s.ping()
    yield s
    s.close()
