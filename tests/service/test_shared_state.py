"""State of record in the store: several workers and instances agree, crashes are mended."""

from __future__ import annotations

import json
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from dynvm.config import load_config
from dynvm.sim import Farm
from dynvm.store.factory import open_store
from testbed.inis import Ini
from testbed.serving import side_by_side
from tests.service.conftest import SPEED, FarmProbe, served, wait_until, write_ini

pytestmark = pytest.mark.served

CAP = 5  # per host: two standalone hosts give room for exactly 10


@pytest.fixture(scope="module")
def small_farm():
    f = Farm.generate(pools=2, hosts=1, speed=SPEED).start()
    try:
        yield f
    finally:
        f.stop()


@pytest.fixture
def probe(small_farm):
    """The small farm must be exactly as before once the test is over."""
    p = FarmProbe(small_farm)
    before = p.state()
    yield p
    wait_until(lambda: p.state() == before, timeout=10, what="the farm to be clean")


def capped_ini(tmp_path, farm: Farm, common: dict[str, object] | None = None):
    hosts = Ini.of_farm(farm).set_hosts({"host.vms.max.centos": CAP})
    return write_ini(tmp_path, farm, hosts=hosts, common=common)


def tagged_vms(probe: FarmProbe) -> dict[str, list[str]]:
    """Per pool: every VM (templates included: a clone is one at first) dynvm tagged."""
    out = {}
    for i, pool in enumerate(probe.farm.pools):
        s = probe.session(i)
        try:
            out[pool.name] = [r["uuid"] for r in s.xenapi.VM.get_all_records().values()
                              if "dynvm_lease" in r["other_config"]]
        finally:
            s.xenapi.session.logout()
    return out


def test_forty_requests_for_ten_slots_under_four_workers(tmp_path, small_farm, probe) -> None:
    ini = capped_ini(tmp_path, small_farm)
    peak = {p.name: 0 for p in small_farm.pools}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for pool, uuids in tagged_vms(probe).items():
                peak[pool] = max(peak[pool], len(uuids))

    with served(ini, workers=4, log=tmp_path / "serve.log") as (base, _):
        assert requests.get(base + "/getavailablecount/centos", timeout=10).text == "10"
        watcher = threading.Thread(target=watch)
        watcher.start()
        barrier = threading.Barrier(40)

        def ask(i: int) -> requests.Response:
            barrier.wait()
            return requests.get(f"{base}/getservers/cc{i}?os=centos", timeout=300)

        try:
            with ThreadPoolExecutor(40) as pool:
                answers = list(pool.map(ask, range(40)))
        finally:
            stop.set()
            watcher.join()
        try:
            _check_forty(ini, probe, answers, peak)
        finally:  # whatever happened, leave the farm clean for the next test
            for i, r in enumerate(answers):
                if r.status_code == 200:
                    requests.get(f"{base}/releaseservers/cc{i}", timeout=60)


def _check_forty(ini, probe, answers, peak) -> None:
    """Exactly 10 built, 30 refused, no host over its cap, every VM leased."""
    codes = sorted(r.status_code for r in answers)
    assert codes.count(200) == 10, [(r.status_code, r.text) for r in answers]
    assert codes.count(503) == 30
    assert all(r.text.startswith("Error: No capacity is available!")
               for r in answers if r.status_code == 503)
    assert max(peak.values()) <= CAP, peak

    # every VM left is owned by a lease, and every lease by a VM
    store = open_store(load_config(ini).store)
    leased = {lease.vm_uuid for lease in store.leases.find()}
    in_xen = {u for uuids in tagged_vms(probe).values() for u in uuids}
    assert leased == in_xen and len(leased) == 10
    store.close()


def test_expiry_leader_takes_over_when_killed(tmp_path, small_farm, probe) -> None:
    ini = capped_ini(tmp_path, small_farm, common={"background.leader.ttl.secs": 2})
    store = open_store(load_config(ini).store)
    with side_by_side(served(ini, workers=1, log=tmp_path / "a.log"),
                      served(ini, workers=1, log=tmp_path / "b.log")) as [(a, proc_a),
                                                                          (b, proc_b)]:
        # both instances up; exactly one holds the background lock
        for base in (a, b):
            requests.get(base + "/health", timeout=10)
        leader = wait_until(lambda: store.locks.holder("background"), timeout=10,
                            what="a background leader")
        healths = [requests.get(base + "/health", timeout=10).json() for base in (a, b)]
        assert sorted(h["leader"] for h in healths) == [False, True]
        first = next(base for base, h in zip((a, b), healths, strict=True) if h["leader"])
        other = b if first == a else a
        doomed = proc_a if first == a else proc_b

        r = requests.get(other + "/getservers/exp?os=centos&count=2", timeout=120)
        assert r.status_code == 200, r.text
        os.killpg(doomed.pid, signal.SIGKILL)  # the leader dies without a word
        doomed.wait()
        r = requests.get(other + "/setexpiry/exp/0?count=2&from=created", timeout=30)
        assert r.status_code == 200, r.text
        wait_until(lambda: store.locks.holder("background") not in (None, leader), timeout=15,
                   what="the survivor to take the lock")
        wait_until(lambda: probe.vms_named("exp") == [], timeout=15,
                   what="the survivor to expire the VMs")
        assert requests.get(other + "/health", timeout=10).json()["leader"] is True
    docs = {d["name"]: d for d in store.history.recent()}
    assert docs["exp1"]["state"] == "deleted" and docs["exp1"]["delete_reason"] == "expired"
    store.close()


def test_kill_dash_nine_mid_request_is_reconciled(tmp_path, small_farm, probe) -> None:
    # One instance at a time: a short TTL (the dead one's heartbeat lapses after two) can
    # only make the new one wait less.
    ini = capped_ini(tmp_path, small_farm, common={"background.leader.ttl.secs": 1})
    store = open_store(load_config(ini).store)
    with served(ini, workers=1, log=tmp_path / "a.log") as (a, proc_a):
        small_farm.set_slow(small_farm.pools[0].master.name_label, 0.05)
        small_farm.set_slow(small_farm.pools[1].master.name_label, 0.05)
        try:
            t = threading.Thread(target=lambda: _swallow(
                lambda: requests.get(a + "/getservers/crash?os=centos&count=5", timeout=120)))
            t.start()
            wait_until(lambda: sum(len(v) for v in tagged_vms(probe).values()) >= 3,
                       timeout=30, what="the request to be half way")
            os.killpg(proc_a.pid, signal.SIGKILL)
            proc_a.wait()
            t.join()
        finally:
            small_farm.set_slow(small_farm.pools[0].master.name_label, 0)
            small_farm.set_slow(small_farm.pools[1].master.name_label, 0)
        assert any(tagged_vms(probe).values())  # the crash left VMs behind
        assert store.requests.find(state="running")
    # a new instance reconciles once the dead one's heartbeat lapses
    with served(ini, workers=1, log=tmp_path / "b.log") as (b, _):
        requests.get(b + "/health", timeout=10)
        wait_until(lambda: not any(tagged_vms(probe).values()), timeout=30,
                   what="orphans to be destroyed")
        wait_until(lambda: store.reservations.live() == [] and not store.requests.find(state="running"),
                   timeout=15, what="reservations and the request to be closed")
    assert [r.state for r in store.requests.find()] == ["interrupted"]
    # No VM is left at the step it was at when the process died.
    steps = {e["step"] for e in store.requests.find()[0].detail["vms"].values()}
    assert "interrupted" in steps and steps <= {"interrupted", "ready"}, steps
    assert store.leases.find() == []
    docs = [d for d in store.history.recent() if d["name"].startswith("crash")]
    assert docs and all(d["state"] in ("deleted", "failed") for d in docs)
    assert all("service stopped during provisioning" in
               (d.get("delete_reason") or d.get("failure_reason") or "") for d in docs)
    store.close()


def _swallow(fn) -> None:
    try:
        fn()
    except requests.RequestException:
        pass


def test_two_instances_one_sqlite_file_share_leases(tmp_path, small_farm, probe) -> None:
    ini = capped_ini(tmp_path, small_farm)
    with side_by_side(served(ini, workers=1), served(ini, workers=1)) as [(a, _), (b, _)]:
        r = requests.get(a + "/getservers/shared?os=centos&count=2", timeout=120)
        assert r.status_code == 200
        assert requests.get(b + "/getavailablecount/centos", timeout=10).text == "8"
        r = requests.get(b + "/releaseservers/shared?count=2", timeout=60)
        assert json.loads(r.text) == ["shared1", "shared2"]
