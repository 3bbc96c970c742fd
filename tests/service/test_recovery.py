"""Recovery of work a dead process left half done, inside one running service."""

from __future__ import annotations

from dynvm.core.store import LEASE_ACTIVE, LEASE_RELEASING
from tests.service.conftest import wait_until


def test_a_release_cut_short_is_finished(client, service, probe) -> None:
    assert client.get("/getservers/cut?os=centos").status_code == 200
    lease = service.ctx.store.leases.find(name="cut")[0]
    # a releaser claimed it an hour ago and died before destroying anything
    claimed = service.ctx.store.leases.transition(
        lease.vm_uuid, LEASE_ACTIVE, LEASE_RELEASING,
        extra={"releasing_since": service.ctx.clock() - 3600})
    assert claimed is not None
    assert len(probe.vms_named("cut")) == 1
    wait_until(lambda: probe.vms_named("cut") == [], timeout=15,
               what="the background worker to finish the release")
    wait_until(lambda: service.ctx.store.leases.find(name="cut") == [], timeout=30,
               what="the lease to be closed")
    doc = service.ctx.store.history.get(lease.vm_uuid)
    assert doc["state"] == "deleted" and "interruption" in doc["delete_reason"]


def test_a_fresh_release_in_progress_is_left_alone(client, service, probe) -> None:
    assert client.get("/getservers/busy?os=centos").status_code == 200
    lease = service.ctx.store.leases.find(name="busy")[0]
    service.ctx.store.leases.transition(lease.vm_uuid, LEASE_ACTIVE, LEASE_RELEASING,
                                        extra={"releasing_since": service.ctx.clock()})
    bg = service.background
    wait_until(lambda: bg.is_leader, timeout=10, what="leadership")
    passes = bg.reconcile_passes
    wait_until(lambda: bg.reconcile_passes >= passes + 2, timeout=10,
               what="two reconcile passes")
    assert len(probe.vms_named("busy")) == 1
    service.ctx.store.leases.transition(lease.vm_uuid, LEASE_RELEASING, LEASE_ACTIVE)
    assert client.get("/releaseservers/busy").status_code == 200
