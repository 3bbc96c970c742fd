"""One rule for every health answer: a pool down, a store that cannot be written, or a rolling
reboot stopped with HA off makes `/health` degraded (503), the reasons first.

dynvm runs on the simulator over real XML-RPC, with its SQLite store on a real file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import dynvm.store.sqlite.db as sqlite_db
from dynvm.api import create_app
from dynvm.core.maintenance import state as S
from dynvm.core.services import Dynvm
from dynvm.sim import Farm
from testbed.inis import Ini
from tests.service.conftest import dynvm_on, wait_until, write_ini
from tests.service.test_store_honesty import WriteLock


@pytest.fixture
def one_pool(tmp_path: Path, farm: Farm, clean_farm) -> Iterator[Dynvm]:
    """dynvm with a single pool: the farm's first."""
    with dynvm_on(write_ini(tmp_path, farm, hosts=Ini.of_farm(farm).only("xenhost1"))) as svc:
        yield svc


def _answer(resp) -> dict:
    """The JSON body, checked to name its reasons first (on its first line)."""
    text = resp.get_data(as_text=True)
    body = json.loads(text)
    assert next(iter(body)) == "reasons", text
    assert text.lstrip("{ \n").startswith('"reasons"'), text
    return body


def test_health_is_degraded_while_its_only_pool_does_not_answer(one_pool, farm) -> None:
    client = create_app(service=one_pool).test_client()
    ok = client.get("/health")
    assert ok.status_code == 200, ok.text
    assert _answer(ok)["reasons"] == [] and ok.json["status"] == "ok"
    master = farm.pools[0].master.name_label
    farm.set_unreachable(master, True)
    try:
        down = wait_until(lambda: (lambda r: r if r.status_code == 503 else None)(
            client.get("/health")), timeout=30, what="/health to see the pool down")
        body = _answer(down)
        assert body["status"] == "degraded"
        assert body["reasons"][0].startswith("xenhost1 ") and "does not answer" in \
            body["reasons"][0], body["reasons"]
        assert body["hosts"]["1"]["ok"] is False
        ready = client.get("/health/ready")  # its only pool: it cannot serve either
        assert ready.status_code == 503
        assert _answer(ready)["reasons"] == ["no configured pool answers"]
    finally:
        farm.set_unreachable(master, False)
    wait_until(lambda: client.get("/health").status_code == 200, timeout=60,
               what="/health to be ok once the pool answers again")


def test_one_pool_down_among_two_degrades_health_but_not_readiness(service, client,
                                                                    farm) -> None:
    master = farm.pools[1].master.name_label
    farm.set_unreachable(master, True)
    try:
        down = wait_until(lambda: (lambda r: r if r.status_code == 503 else None)(
            client.get("/health")), timeout=30, what="/health to see the pool down")
        assert [r.split(" ")[0] for r in _answer(down)["reasons"]] == ["xenhost2"]
        ready = client.get("/health/ready")
        assert ready.status_code == 200, ready.text  # the other pool serves
        assert _answer(ready)["checks"]["hosts"]["reachable"] == [1]
    finally:
        farm.set_unreachable(master, False)


def test_a_rolling_reboot_stopped_with_ha_off_degrades_health(service, client) -> None:
    assert client.get("/health").status_code == 200
    # What a run's process leaves when it dies mid-run with HA off (its lock lapsed).
    S.put_status(service.ctx.store, 1, state="running", ha_off=True, hosts_done=["h1"],
                 run="r1")
    resp = client.get("/health")
    assert resp.status_code == 503, resp.text
    body = _answer(resp)
    assert body["status"] == "degraded"
    assert len(body["reasons"]) == 1
    assert "HA of xenhost1 is OFF" in body["reasons"][0]
    assert "dynvm maintenance reboot 1 --exec" in body["reasons"][0]
    assert body["maintenance"]["1"]["state"] == "interrupted"
    # The instance can still serve: readiness is unaffected.
    assert client.get("/health/ready").status_code == 200
    # A run that stopped with HA back on is history, not a problem.
    S.put_status(service.ctx.store, 1, state="failed", ha_off=False)
    assert client.get("/health").status_code == 200


def test_readiness_checks_the_store_can_be_written(service, client, tmp_path,
                                                   monkeypatch) -> None:
    monkeypatch.setattr(sqlite_db, "BUSY_TIMEOUT_SECS", 0.3)
    assert client.get("/health/ready").status_code == 200
    with WriteLock(tmp_path / "dynvm.sqlite"):  # readable beside it, not writable
        ready = client.get("/health/ready")
        assert ready.status_code == 503, ready.text
        body = _answer(ready)
        assert body["checks"]["store"]["ok"] is False
        assert body["reasons"][0].startswith("the state store cannot be read and written")
        health = client.get("/health")
        assert health.status_code == 503
        assert _answer(health)["reasons"] == [body["reasons"][0]]  # one rule, one reason
    wait_until(lambda: client.get("/health/ready").status_code == 200, timeout=30,
               what="readiness once the lock is gone")
