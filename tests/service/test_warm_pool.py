"""Warm pools and parallel provisioning, end to end."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from dynvm.api import create_app
from dynvm.core.demand import HOUR, WEEK
from dynvm.core.store import LEASE_READY
from dynvm.runtime.bootstrap import build_service
from tests.service.conftest import (
    FAST,
    _release_everything,
    stop_filling,
    wait_until,
    write_ini,
)

POOL = "\n[pool centos]\nready=2\nready.ttl.minutes=60\n"


@pytest.fixture
def warm(tmp_path, farm, clean_farm):
    svc = build_service(str(write_ini(tmp_path, farm, extra=POOL)), timings=FAST)
    try:
        yield svc
    finally:
        stop_filling(svc)
        _release_everything(svc)
        svc.close()


def ready(svc) -> list:
    return svc.ctx.store.leases.find(state=LEASE_READY, os="centos")


def test_fill_hand_out_and_refill(warm, probe) -> None:
    c = create_app(service=warm).test_client()
    assert c.get("/getavailablecount/centos").status_code == 200
    wait_until(lambda: len(ready(warm)) == 2, timeout=20, what="the pool to fill")
    pool_uuids = {lease.vm_uuid for lease in ready(warm)}
    clones = {d["uuid"]: d for d in warm.ctx.store.history.recent()}

    r = c.get("/getservers/hot?os=centos&format=detailed")
    assert r.status_code == 200, r.text
    ip = json.loads(r.text)["hot"]
    lease = warm.ctx.store.leases.find(name="hot")[0]
    assert lease.vm_uuid in pool_uuids and lease.ip == ip
    vm = probe.vms_named("hot")
    assert len(vm) == 1 and vm[0]["uuid"] == lease.vm_uuid
    assert vm[0]["other_config"]["dynvm_owner"] == "hot"
    assert vm[0]["name_description"].startswith("hot from tmpl-cnt7.7 on ")
    doc = warm.ctx.store.history.get(lease.vm_uuid)
    assert doc["name"] == "hot" and doc["username"] == "hot" and doc["from_warm_pool"] is True
    assert doc["created_time"] == clones[lease.vm_uuid]["created_time"]
    assert doc["create_duration_secs"] == clones[lease.vm_uuid]["create_duration_secs"]
    assert "handed_out_time" in doc and "handout_duration_secs" in doc

    wait_until(lambda: len(ready(warm)) == 2, timeout=20, what="the pool to refill")
    assert lease.vm_uuid not in {x.vm_uuid for x in ready(warm)}
    # ready VMs are nobody's: they cannot be released by name
    name = ready(warm)[0].name
    assert c.get(f"/releaseservers/{name}").status_code == 404
    assert c.get("/releaseservers/hot").status_code == 200


def test_available_count_includes_ready_vms(tmp_path, farm, clean_farm) -> None:
    cold = build_service(str(write_ini(tmp_path, farm)), timings=FAST, background=False)
    try:
        before = cold.legacy.available("centos", frozenset(), False).count
    finally:
        cold.close()
    (tmp_path / "w").mkdir()
    svc = build_service(str(write_ini(tmp_path / "w", farm, extra=POOL)), timings=FAST)
    try:
        svc.legacy.available("centos", frozenset(), False)
        wait_until(lambda: len(ready(svc)) == 2, timeout=20, what="the pool to fill")
        wait_until(lambda: svc.legacy.available("centos", frozenset(), False).count == before,
                   timeout=10, what="ready VMs to count as available")
    finally:
        stop_filling(svc)
        _release_everything(svc)
        svc.close()


def test_stale_and_dead_ready_vms_are_recycled(warm, probe) -> None:
    warm.legacy.available("centos", frozenset(), False)
    wait_until(lambda: len(ready(warm)) == 2, timeout=20, what="the pool to fill")
    old, dead = ready(warm)
    warm.ctx.store.leases.update(old.vm_uuid, created=old.created - 2 * 3600)  # past its TTL
    s = probe.session(0 if old.host_ref == 1 else 1)
    s.xenapi.VM.hard_shutdown(s.xenapi.VM.get_by_uuid(dead.vm_uuid))  # guest went away
    s.xenapi.session.logout()
    wait_until(lambda: {x.vm_uuid for x in ready(warm)}.isdisjoint({old.vm_uuid, dead.vm_uuid})
               and len(ready(warm)) == 2, timeout=30, what="both to be replaced")
    docs = {d["uuid"]: d for d in warm.ctx.store.history.recent()}
    assert "older than its TTL" in docs[old.vm_uuid]["delete_reason"]
    assert "stopped answering" in docs[dead.vm_uuid]["delete_reason"]


def test_one_request_builds_on_every_host_at_once(client, service) -> None:
    r = client.get("/getservers/par?os=centos&count=4&ignorelabels=true")
    assert r.status_code == 200, r.text
    leases = [service.ctx.store.leases.find(name=f"par{i}")[0] for i in range(1, 5)]
    assert len({lease.host_uuid for lease in leases}) == 4  # one per member host
    docs = [service.ctx.store.history.get(lease.vm_uuid) for lease in leases]
    starts = [d["build_started"] for d in docs]
    ends = [d["build_finished"] for d in docs]
    assert max(starts) < min(ends)  # every build was under way before any finished
    client.get("/releaseservers/par?count=4")


def test_only_the_shortfall_is_built(warm) -> None:
    c = create_app(service=warm).test_client()
    c.get("/getavailablecount/centos")
    wait_until(lambda: len(ready(warm)) == 2, timeout=20, what="the pool to fill")
    r = c.get("/getservers/mix?os=centos&count=3&format=detailed")
    assert r.status_code == 200, r.text
    assert sorted(json.loads(r.text)) == ["mix1", "mix2", "mix3"]
    docs = {d["name"]: d for d in warm.ctx.store.history.recent() if d["name"].startswith("mix")}
    assert sorted(bool(d.get("from_warm_pool")) for d in docs.values()) == [False, True, True]
    assert c.get("/releaseservers/mix?count=3").status_code == 200


def test_checkvms_hand_out_checks_the_ready_vm(tmp_path, farm, ssh_port, clean_farm) -> None:
    ini = write_ini(tmp_path, farm, extra=POOL, common={"vm.ssh.port": ssh_port})
    svc = build_service(str(ini), timings=FAST)
    try:
        c = create_app(service=svc).test_client()
        c.get("/getavailablecount/centos")
        wait_until(lambda: len(ready(svc)) == 2, timeout=20, what="the pool to fill")
        r = c.get("/getservers/sshwarm?os=centos&checkvms=true")
        assert r.status_code == 200, r.text
        lease = svc.ctx.store.leases.find(name="sshwarm")[0]
        assert svc.ctx.store.history.get(lease.vm_uuid)["from_warm_pool"] is True
        assert c.get("/releaseservers/sshwarm").status_code == 200
    finally:
        stop_filling(svc)
        _release_everything(svc)
        svc.close()


def test_removing_a_pool_recycles_its_ready_vms(tmp_path, farm, clean_farm, probe) -> None:
    ini = write_ini(tmp_path, farm, extra=POOL)
    svc = build_service(str(ini), timings=FAST)
    try:
        svc.legacy.available("centos", frozenset(), False)
        wait_until(lambda: len(ready(svc)) == 2, timeout=20, what="the pool to fill")
        write_ini(tmp_path, farm)  # same file, no [pool centos] any more
        wait_until(lambda: ready(svc) == [] and not probe.vms_named("dynvm-ready-"),
                   timeout=20, what="the ready VMs to be destroyed")
    finally:
        stop_filling(svc)
        _release_everything(svc)
        svc.close()


def test_a_warm_vm_being_handed_out_is_never_reconciled_away(warm, probe) -> None:
    """Claimed for a request, a warm VM still wears the tag of the (done) request that
    filled the pool until the hand-out retags it: reconciliation must judge it by its
    lease, which names the live request it is being handed to."""
    from dynvm.core import lifecycle
    from dynvm.core.reconcile import Reconciler
    from dynvm.core.store import RequestRecord

    assert create_app(service=warm).test_client().get("/getavailablecount/centos").status_code == 200
    wait_until(lambda: len(ready(warm)) == 2, timeout=60, what="the pool to fill")
    stop_filling(warm)
    lease = ready(warm)[0]
    store = warm.ctx.store
    store.requests.put(RequestRecord(id="b" * 32, name="taking", os="centos", count=1,
                                     instance=warm.ctx.instance, started=warm.ctx.clock()))
    claimed = lifecycle.take_warm(store, lease, name="taking", owner="taking",
                                  request_id="b" * 32, expires=warm.ctx.clock() + 3600, labels=[])
    assert claimed is not None
    assert Reconciler(warm.ctx, orphan_grace=0.0).run()["vms"] == 0
    assert {v["uuid"] for v in probe.vms_named("")} >= {lease.vm_uuid}
    assert store.leases.get(lease.vm_uuid).state == "provisioning"
    lifecycle.end_request(store, "b" * 32, lifecycle.RequestState.FAILED)



def test_adopted_and_warm_pool_documents_have_the_seeds_types(tmp_path, farm,
                                                              clean_farm) -> None:
    """Whoever writes a history document (a build for a caller, the warm pool, its
    hand-out, reconciliation adopting the VMs of a lost store) writes the seed's fields
    with the seed's types: one function builds them all."""
    from tests.service.test_ownership import EAGER
    from tests.service.test_seed_compat import SEED_TYPES

    ini = write_ini(tmp_path, farm, extra=POOL)
    first = build_service(str(ini), timings=FAST)
    try:
        c = create_app(service=first).test_client()
        first.background.ensure_started()
        wait_until(lambda: len(ready(first)) == 2, timeout=20, what="the pool to fill")
        docs = {"warm, ready": first.ctx.store.history.get(ready(first)[0].vm_uuid)}
        assert c.get("/getservers/handed?os=centos").status_code == 200
        (handed,) = first.ctx.store.leases.find(name="handed")
        docs["warm, handed out"] = first.ctx.store.history.get(handed.vm_uuid)
        assert c.get("/getservers/built?os=centos&cpus=2").status_code == 200  # built now
        (built,) = first.ctx.store.leases.find(name="built")
        docs["built"] = first.ctx.store.history.get(built.vm_uuid)
        stop_filling(first)
        kept = {lease.vm_uuid: lease.state for lease in first.ctx.store.leases.find()}
    finally:
        first.close()
    for f in tmp_path.glob("*.sqlite*"):  # the store is lost, the VMs stay
        f.unlink()

    second = build_service(str(ini), timings=EAGER)  # its pool is full: nothing recycled
    try:
        second.background.ensure_started()
        wait_until(lambda: {x.vm_uuid for x in second.ctx.store.leases.find()} >= set(kept),
                   timeout=30, what="every VM to be adopted")
        for vm_uuid, state in kept.items():
            if vm_uuid == built.vm_uuid or (state == "ready" and "adopted, ready" not in docs):
                what = "adopted" if vm_uuid == built.vm_uuid else "adopted, ready"
                docs[what] = second.ctx.store.history.get(vm_uuid)
    finally:
        stop_filling(second)
        _release_everything(second)
        second.close()

    assert set(docs) == {"warm, ready", "warm, handed out", "built", "adopted",
                         "adopted, ready"}
    for what, doc in docs.items():
        assert doc is not None and "uuid" in doc, what
        unmeasured = {"create_duration_secs"} if what.startswith("adopted") else set()
        assert set(SEED_TYPES) - set(doc) == unmeasured, (what, set(SEED_TYPES) - set(doc))
        for key, kind in SEED_TYPES.items():
            if key in doc:
                assert type(doc[key]) is kind, (what, key, doc[key])
        assert doc["name"] == doc["username"], what  # the seed's `username`: the VM's name
    assert docs["adopted"]["state"] == "available" and docs["adopted, ready"]["state"] == "ready"
    assert docs["adopted"]["cpu"] == docs["built"]["cpu"] == "2"
    assert docs["adopted"]["origin"] == docs["built"]["origin"]
    assert docs["adopted"]["disk"] == docs["built"]["disk"]

def test_farm_table_adds_up_with_warm_vms(warm) -> None:
    """A pool's per-OS figure is the sum of its members' (free slots plus warm VMs ready on
    each), and the warm share is shown, not folded in silently."""
    c = create_app(service=warm).test_client()
    assert c.get("/getavailablecount/centos").status_code == 200  # a request wakes the filler
    wait_until(lambda: len(ready(warm)) == 2, timeout=20, what="the pool to fill")
    farm_view = warm.dashboard.hosts()
    warm_total = 0
    for pool in farm_view["pools"]:
        for os_key, n in pool["available"].items():
            assert n == sum(m["available"].get(os_key, 0) for m in pool["members"]), pool
        for m in pool["members"]:
            for os_key, w in m["warm"].items():
                assert m["available"][os_key] >= w
        warm_total += pool["warm"].get("centos", 0)
        assert pool["warm"].get("centos", 0) == sum(m["warm"].get("centos", 0)
                                                    for m in pool["members"])
    assert warm_total == 2
    html = c.get("/").text
    assert html.count("warm)</span>") >= 2  # the pool's row and a member's carry the hint


def test_a_pool_sized_from_demand(tmp_path, farm, clean_farm) -> None:
    """ready=auto: last week at this hour, 300 VMs were asked for (and the hour after, in
    case the hour turns during the test), each built in a minute: the rule asks for 6 ready,
    kept to the pool's max of 3; the dashboard and /metrics show that target."""
    ini = write_ini(tmp_path, farm, extra="\n[pool centos]\nready=auto\nmin=1\nmax=3\n")
    svc = build_service(str(ini), timings=FAST, background=False)
    try:
        now = time.time()
        for start in (now - WEEK, now - WEEK + HOUR):
            for i in range(300):
                t = start + i
                svc.ctx.store.history.put(uuid.uuid4().hex, {
                    "os": "centos", "owner": "ci", "state": "deleted", "build_started": t,
                    "created_time": t + 60, "create_duration_secs": 60, "name": f"ci{i}"})
    finally:
        svc.close()
    svc = build_service(str(ini), timings=FAST)
    try:
        c = create_app(service=svc).test_client()
        svc.background.ensure_started()
        wait_until(lambda: len(ready(svc)) == 3, timeout=60, what="the pool to fill to 3")
        (pool,) = c.get("/ui/api/warmpools").get_json()["pools"]
        assert (pool["target"], pool["auto"]) == (3, True), pool
        assert 'dynvm_warm_pool_target{os="centos"} 3.0' in c.get("/metrics").text
    finally:
        stop_filling(svc)
        _release_everything(svc)
        svc.close()
