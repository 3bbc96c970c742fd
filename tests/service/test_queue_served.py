"""The queue across served instances on one store: a leader killed with SIGKILL loses no
queued request and serves none twice; the survivor serves the rest."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import requests

from dynvm.config import load_config
from dynvm.sim import Farm
from dynvm.store.factory import open_store
from testbed.inis import Ini
from tests.service.conftest import FarmProbe, served, wait_until, write_ini
from tests.service.test_browser import bearer
from tests.support.auth import token_for

pytestmark = pytest.mark.served


def test_a_killed_leader_loses_no_queued_request_and_serves_none_twice(
        tmp_path: Path, farm: Farm, probe: FarmProbe, clean_farm: dict) -> None:
    # Four centos VMs fit; the leader's duties pass to the other instance 2 s after it dies.
    ini = write_ini(tmp_path, farm, hosts=Ini.of_farm(farm).set_hosts({"host.vms.max.centos": 1}),
                    common={"background.leader.ttl.secs": 2})
    secret = token_for(ini, "ops", admin=True)
    h = bearer(secret)
    store = open_store(load_config(ini).store)
    try:
        with served(ini, workers=1, log=tmp_path / "a.log") as (a, proc_a), \
                served(ini, workers=1, log=tmp_path / "b.log") as (b, proc_b):
            leader = wait_until(lambda: store.locks.holder("background"), timeout=30,
                                what="a background leader")
            first = wait_until(lambda: next((base for base in (a, b) if requests.get(
                base + "/health", timeout=30).json()["leader"]), None), timeout=30,
                what="the leader to say so")
            other = b if first == a else a
            doomed = proc_a if first == a else proc_b

            def state(rid: str) -> str:
                return requests.get(f"{other}/api/v1/requests/{rid}?wait=5", headers=h,
                                    timeout=60).json()["state"]

            full = requests.post(other + "/api/v1/requests", headers=h, timeout=60,
                                 json={"os": "centos", "count": 4, "name": "full"}).json()
            wait_until(lambda: state(full["id"]) == "done", timeout=240,
                       what="the farm to be full")
            queued = []
            for i, base in enumerate((a, b, a)):  # asked through both instances
                r = requests.post(base + "/api/v1/requests", headers=h, timeout=60,
                                  json={"os": "centos", "name": f"kq{i}"})
                assert r.status_code == 202 and r.json()["state"] == "queued", r.text
                queued.append(r.json()["id"])
            # The leader serves the first as room frees...
            assert requests.delete(f"{other}/api/v1/vms/full1", headers=h,
                                   timeout=120).status_code == 200
            wait_until(lambda: state(queued[0]) == "done", timeout=240,
                       what="the leader to serve the first")
            # ...then dies without a word, with two requests waiting.
            os.killpg(doomed.pid, signal.SIGKILL)
            doomed.wait()
            for n in (2, 3):
                assert requests.delete(f"{other}/api/v1/vms/full{n}", headers=h,
                                       timeout=120).status_code == 200
            wait_until(lambda: store.locks.holder("background") not in (None, leader),
                       timeout=30, what="the survivor to lead")
            wait_until(lambda: all(state(rid) == "done" for rid in queued[1:]), timeout=240,
                       what="the survivor to serve what waited")
            assert store.queue.entries() == []
            # Each served once: one VM each, one lease each, and nothing else built.
            for i in range(3):
                assert len(store.leases.find(name=f"kq{i}")) == 1
                assert len(probe.vms_named(f"kq{i}")) == 1
            for name in ("kq0", "kq1", "kq2", "full4"):
                requests.delete(f"{other}/api/v1/vms/{name}", headers=h, timeout=120)
    finally:
        store.close()
