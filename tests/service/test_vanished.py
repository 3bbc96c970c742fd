"""Leases whose VM is gone, and names a dead request held, are closed by reconciliation."""

from __future__ import annotations

import uuid

from dynvm.api import create_app
from dynvm.core.getservers import NAME_LOCK
from dynvm.core.liveness import HEARTBEAT_PREFIX
from dynvm.core.reconcile import Reconciler
from dynvm.core.store import LEASE_PROVISIONING, Lease, RequestRecord
from dynvm.runtime.bootstrap import build_service
from tests.service.conftest import FarmProbe, wait_until, write_ini


def destroy_behind_dynvms_back(probe: FarmProbe, name: str) -> str:
    """As an admin would with xe: hard shutdown, destroy the VM, then its disks."""
    for i in range(len(probe.farm.pools)):
        s = probe.session(i)
        try:
            x = s.xenapi
            for ref in x.VM.get_by_name_label(name):
                rec = x.VM.get_record(ref)
                if rec["is_a_template"]:
                    continue
                vdis = [x.VBD.get_VDI(vbd) for vbd in rec["VBDs"]
                        if x.VBD.get_type(vbd) == "Disk"]
                if rec["power_state"] == "Running":
                    x.VM.hard_shutdown(ref)
                x.VM.destroy(ref)
                for vdi in vdis:
                    x.VDI.destroy(vdi)
                return rec["uuid"]
        finally:
            s.xenapi.session.logout()
    raise AssertionError(f"no VM named {name}")


def test_a_vm_destroyed_outside_dynvm_frees_its_name(client, service, probe) -> None:
    assert client.get("/getservers/gone?os=centos").status_code == 200
    assert client.get("/getservers/gone?os=centos").status_code == 409
    vm_uuid = destroy_behind_dynvms_back(probe, "gone")
    wait_until(lambda: service.ctx.store.leases.find(name="gone") == [], timeout=30,
               what="the vanished lease to be closed")
    doc = service.ctx.store.history.get(vm_uuid)
    assert doc["state"] == "deleted" and doc["delete_reason"] == "vanished"
    assert client.get("/setexpiry/gone/60").status_code == 404
    assert client.get("/releaseservers/gone").status_code == 404
    wait_until(lambda: 'dynvm_reconciled_vms_total{event="vanished"}' in
               client.get("/metrics").text, timeout=10, what="the vanished lease to be counted")
    r = client.get("/getservers/gone?os=centos")  # the name is free again
    assert r.status_code == 200, r.text
    assert client.get("/releaseservers/gone").status_code == 200


def test_one_listing_without_the_vm_is_not_enough(tmp_path, farm, clean_farm, probe) -> None:
    """Reconciliation driven by hand: the first pass that misses the VM only notes it."""
    svc = build_service(str(write_ini(tmp_path, farm)), background=False)
    try:
        client = create_app(service=svc).test_client()
        assert client.get("/getservers/blink?os=centos").status_code == 200
        (lease,) = svc.ctx.store.leases.find(name="blink")
        rec = Reconciler(svc.ctx)
        assert rec.run()["vanished"] == 0
        destroy_behind_dynvms_back(probe, "blink")
        wait_until(lambda: lease.vm_uuid not in svc.ctx.view(svc.config().hosts[lease.host_ref]).vms,
                   timeout=10, what="the inventory to see the VM gone")
        assert rec.run()["vanished"] == 0  # first sighting
        assert svc.ctx.store.leases.get(lease.vm_uuid) is not None
        assert rec.run()["vanished"] == 1  # second sighting
        assert svc.ctx.store.leases.get(lease.vm_uuid) is None
    finally:
        svc.close()


def test_a_provisioning_lease_whose_vm_is_lost_is_closed(client, service) -> None:
    store = service.ctx.store
    rid = uuid.uuid4().hex
    store.requests.put(RequestRecord(id=rid, name="lost", os="centos", count=1,
                                     instance=service.ctx.instance, started=service.ctx.clock()))
    store.requests.finish(rid, "failed", {"error": "its cleanup failed"})
    service.background.ensure_started()
    ghost = str(uuid.uuid4())
    now = service.ctx.clock()
    store.leases.put(Lease(vm_uuid=ghost, name="lost", owner="lost", host_ref=1, host_uuid="",
                           vm_ref="OpaqueRef:gone", os="centos", request_id=rid, created=now,
                           expires=now + 3600, state=LEASE_PROVISIONING))
    wait_until(lambda: store.leases.get(ghost) is None, timeout=30,
               what="the provisioning lease of a lost VM to be closed")
    assert store.history.get(ghost)["failure_reason"] == "vanished"


def test_names_held_by_a_dead_worker_are_freed(client, service) -> None:
    store = service.ctx.store
    rid = uuid.uuid4().hex
    dead = "elsewhere:4242:dead01"  # an instance with no heartbeat: killed
    assert store.locks.holder(HEARTBEAT_PREFIX + dead) is None
    store.requests.put(RequestRecord(id=rid, name="held", os="centos", count=2,
                                     instance=dead, started=service.ctx.clock()))
    for n in ("held1", "held2"):
        assert store.locks.acquire(NAME_LOCK + n, rid, 2100)  # 35 minutes, as a request does
    service.background.ensure_started()
    wait_until(lambda: store.requests.get(rid).state == "interrupted", timeout=30,
               what="the dead request to be reconciled")
    assert store.locks.holder(NAME_LOCK + "held1") is None and store.locks.holder(NAME_LOCK + "held2") is None
    r = client.get("/getservers/held?os=centos&count=2")
    assert r.status_code == 200, r.text
    assert client.get("/releaseservers/held?count=2").status_code == 200
