"""`/getavailablecount` reads the store once per store generation, and still sees
every change of any process at its next answer."""

from __future__ import annotations

import time

from dynvm.api import create_app
from dynvm.core.capacity import host_key
from dynvm.core.clock import Clock
from dynvm.core.store_cache import PerGeneration
from dynvm.runtime.bootstrap import build_service
from dynvm.store.outbox import ResilientStore
from dynvm.store.sqlite import SqliteStore
from tests.service.conftest import FAST, write_ini
from tests.store.helpers import make_resv


def test_counts_read_the_store_once_per_generation(tmp_path, farm, clean_farm) -> None:
    # No background loops: their heartbeats would move the generation all the time.
    svc = build_service(str(write_ini(tmp_path, farm)), timings=FAST, background=False)
    store = svc.ctx.store
    assert isinstance(store, ResilientStore) and isinstance(store.primary, SqliteStore)
    other = SqliteStore(store.primary.path)  # another process on the same store
    try:
        client = create_app(service=svc).test_client()

        def count() -> int:
            r = client.get("/getavailablecount/centos")
            assert r.status_code == 200, r.text
            return int(r.text)

        first = count()
        assert first > 0
        statements: list[str] = []
        for db in (store.primary._db, store.outbox._db):
            db.conn().set_trace_callback(statements.append)  # this thread's connections
        assert [count() for _ in range(20)] == [first] * 20
        assert statements == []  # not even a query: the generation is the WAL index header

        hc = svc.ctx.config().hosts[1]
        member = svc.ctx.view(hc).hosts[0]
        key = host_key(hc.ref, member.uuid)
        taken = other.reservations.reserve(key, [make_resv(key, request_id="elsewhere")],
                                           lambda live: 10)
        assert len(taken) == 1
        assert count() < first  # seen at the next answer, not after a while
        assert other.reservations.drop_request("elsewhere") == 1
        assert count() == first
    finally:
        other.close()
        svc.close()


class _Clock(Clock):
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_value_is_read_again_once_its_deadline_passed(tmp_path) -> None:
    store = SqliteStore(str(tmp_path / "dynvm.sqlite"))
    clock = _Clock(time.time())
    reads: list[int] = []
    memo = PerGeneration(store, clock)

    def read() -> int:
        reads.append(1)
        return len(reads)

    try:
        lapse = clock.now + 60  # e.g. the first reservation's expiry
        assert memo.read("k", read, until=lambda _: lapse) == 1
        assert memo.read("k", read, until=lambda _: lapse) == 1
        clock.now = lapse
        assert memo.read("k", read, until=lambda _: lapse) == 2  # lapsed: read again
        store.documents.update("x", lambda d: {"a": 1})
        assert memo.read("k", read) == 3  # the store changed
        assert memo.read("k", read) == 3
    finally:
        store.close()
