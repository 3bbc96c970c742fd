"""pools= documents: the seed's static-pool bucket (Couchbase) or a table beside SQLite state."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynvm.api.errors import status_of
from dynvm.config import CouchbaseConfig, StaticPoolConfig, StoreConfig
from dynvm.core.staticpool import static_doc
from dynvm.store.couchbase.static_pools import CouchbaseStaticPools
from dynvm.store.sqlite import SqliteStaticPools, state_file
from dynvm.store.static_pool import open_static_pools
from tests.support.cb_standin import StandInCollection

HISTORY = {"ipaddr": "10.0.0.7", "origin": "xen-a", "os": "centos7", "memory": "4294967296",
           "os_version": "CentOS Linux release 7.9.2009 (Core)", "name": "job1"}


def test_static_doc_is_the_seeds() -> None:
    doc = static_doc(HISTORY, ("regression", "12hr"), "uuid-1")
    assert doc["os"] == "centos"  # the static pools know CentOS 7 as centos, as the seed wrote
    assert (doc["ipaddr"], doc["origin"], doc["state"], doc["prevUser"], doc["username"]) == (
        "10.0.0.7", "xen-a", "available", "", "")
    assert doc["poolId"] == ["regression", "12hr"] and doc["ver"] == 12
    assert doc["memory"] == "4294967296" and doc["os_version"].startswith("CentOS")


@pytest.fixture(params=["sqlite", "couchbase"])
def pools(request, tmp_path: Path):
    if request.param == "sqlite":
        return SqliteStaticPools(state_file(str(tmp_path / "state.sqlite")))
    return CouchbaseStaticPools(StandInCollection())


def test_add_get_remove_only_the_vms_own(pools) -> None:
    doc = static_doc(HISTORY, ("p",), "uuid-1")
    pools.add("10.0.0.7", doc)
    assert pools.get("10.0.0.7") == doc
    assert pools.remove("10.0.0.7", "uuid-other") is False  # the address went to another VM
    assert pools.get("10.0.0.7") == doc
    assert pools.remove("10.0.0.7", "uuid-1") is True
    assert pools.get("10.0.0.7") is None
    assert pools.remove("10.0.0.7", "uuid-1") is False


def test_unreachable_static_cluster_fails_fast_after_the_first_try() -> None:
    calls: list[int] = []

    def factory():
        calls.append(1)
        raise TimeoutError("connect timed out")

    pools = CouchbaseStaticPools(factory=factory, retry_secs=60.0)
    for _ in range(3):
        with pytest.raises(OSError):
            pools.add("10.0.0.7", {"vm_uuid": "u"})
    assert len(calls) == 1


def test_where_static_documents_go(tmp_path: Path) -> None:
    sqlite = StoreConfig(sqlite_path=str(tmp_path / "s.sqlite"))
    assert isinstance(open_static_pools(sqlite), SqliteStaticPools)
    cb = CouchbaseConfig("127.0.0.1", "b", "u", "p")
    assert open_static_pools(StoreConfig(backend="couchbase", couchbase=cb)) is None
    static = StaticPoolConfig("127.0.0.1", "QE-server-pool", "u", "p")
    for cfg in (StoreConfig(backend="couchbase", couchbase=cb, static_pool=static),
                StoreConfig(sqlite_path=str(tmp_path / "s.sqlite"), static_pool=static)):
        assert isinstance(open_static_pools(cfg), CouchbaseStaticPools)  # the seed's keys win


def test_pools_refused_before_any_build_without_a_target() -> None:
    from types import SimpleNamespace

    from dynvm.core.answers import ServersRequest
    from dynvm.core.errors import BadRequest
    from dynvm.core.getservers import check_static_pools

    ctx = SimpleNamespace(static_pools=None)
    with pytest.raises(BadRequest, match=r"static\.\* keys") as err:
        check_static_pools(ctx, ServersRequest("x", static_pools=("regression",)))  # type: ignore[arg-type]
    assert status_of(err.value) == 400
    check_static_pools(ctx, ServersRequest("x"))  # type: ignore[arg-type]  # no pools=: fine
