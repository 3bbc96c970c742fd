"""Snapshots through /api/v1 against the simulator: only the owner lists, takes and
reverts them, refusals are clear problems, at most `vm.snapshots.max` per VM, a revert
records the address the restarted VM gets, and a VM's snapshots go with it (release or
expiry) and count on its host's disk meanwhile."""

from __future__ import annotations

import ipaddress
from typing import Any

from flask.testing import FlaskClient

from dynvm.core.release import expire_due
from dynvm.core.services import Dynvm
from tests.service.conftest import wait_until
from tests.service.test_v1_api import api, bearer, finish, svc, tok  # noqa: F401 (fixtures)


def vm_named(api: FlaskClient, h: dict[str, str], name: str,  # noqa: F811
             **more: Any) -> dict[str, Any]:
    r = api.post("/api/v1/requests", json={"os": "centos", "name": name, **more}, headers=h)
    assert finish(api, r.headers["Location"], h)["state"] == "done"
    body = api.get(f"/api/v1/vms/{name}", headers=h).json
    assert body is not None
    return dict(body)


def xen(svc: Dynvm, host_ref: int) -> Any:  # noqa: F811
    """The pool's client, to read the farm's truth with its XenAPI calls."""
    return svc.ctx.pool(svc.ctx.config().hosts[host_ref])


def snapshots_of(svc: Dynvm, name: str) -> list[dict[str, Any]]:  # noqa: F811
    (lease,) = svc.ctx.store.leases.find(name=name)
    pool = xen(svc, lease.host_ref)
    ref = pool.call("VM.get_by_uuid", lease.vm_uuid)
    return [pool.call("VM.get_record", s) for s in pool.call("VM.get_snapshots", ref)]


def used_on_host(svc: Dynvm, host_ref: int) -> int:  # noqa: F811
    view = xen(svc, host_ref).view(max_age=0)
    return sum(used for h in view.hosts for _, used in h.srs.values())


def test_owner_snapshots_and_reverts_others_get_404(api, svc, tok) -> None:  # noqa: F811
    a, b = bearer(tok["team-a"]), bearer(tok["team-b"])
    vm = vm_named(api, a, "snapme")
    before = used_on_host(svc, vm["host"])
    for call in (lambda: api.post("/api/v1/vms/snapme/snapshots", json={}, headers=b),
                 lambda: api.post("/api/v1/vms/snapme/revert", json={}, headers=b),
                 lambda: api.post("/api/v1/vms/nosuch/snapshots", json={}, headers=a)):
        resp = call()
        assert resp.status_code == 404 and resp.mimetype == "application/problem+json"
    assert snapshots_of(svc, "snapme") == []
    none_yet = api.post("/api/v1/vms/snapme/revert", json={}, headers=a)
    assert none_yet.status_code == 404 and "no snapshot" in none_yet.json["detail"]

    r = api.post("/api/v1/vms/snapme/snapshots", json={"name": "clean"}, headers=a)
    assert r.status_code == 201, r.json
    assert (r.json["vm"], r.json["name"]) == ("snapme", "clean")
    (snap,) = snapshots_of(svc, "snapme")
    assert snap["uuid"] == r.json["uuid"] and snap["is_a_snapshot"]
    # The snapshot's disk counts against the host's disk as dynvm sees it.
    wait_until(lambda: used_on_host(svc, vm["host"]) > before, timeout=10,
               what="the snapshot's disk to show in the host's use")
    bad = api.post("/api/v1/vms/snapme/snapshots", json={"name": "no spaces"}, headers=a)
    assert bad.status_code == 422
    missing = api.post("/api/v1/vms/snapme/revert", json={"snapshot": "other"}, headers=a)
    assert missing.status_code == 404 and "'other'" in missing.json["detail"]

    back = api.post("/api/v1/vms/snapme/revert", json={}, headers=a)
    assert back.status_code == 200, back.json
    assert back.json["name"] == "clean"
    (lease,) = svc.ctx.store.leases.find(name="snapme")
    pool = xen(svc, lease.host_ref)
    vm_ref = pool.call("VM.get_by_uuid", lease.vm_uuid)
    assert pool.call("VM.get_power_state", vm_ref) == "Running"  # started again


def test_xapi_refusal_is_a_409(api, svc, tok) -> None:  # noqa: F811
    a = bearer(tok["team-a"])
    vm_named(api, a, "paused")
    (lease,) = svc.ctx.store.leases.find(name="paused")
    pool = xen(svc, lease.host_ref)
    pool.call("VM.suspend", pool.call("VM.get_by_uuid", lease.vm_uuid))
    r = api.post("/api/v1/vms/paused/snapshots", json={"name": "s"}, headers=a)
    assert r.status_code == 409 and "VM_BAD_POWER_STATE" in r.json["detail"], r.json
    assert snapshots_of(svc, "paused") == []


def test_release_and_expiry_destroy_snapshots_and_their_disks(
        api, svc, tok, clean_farm, probe) -> None:  # noqa: F811
    a = bearer(tok["team-a"])
    for name in ("gone1", "gone2"):
        vm_named(api, a, name)
        for label in ("one", "two"):
            r = api.post(f"/api/v1/vms/{name}/snapshots", json={"name": label}, headers=a)
            assert r.status_code == 201, r.json
        assert len(snapshots_of(svc, name)) == 2
    assert api.delete("/api/v1/vms/gone1", headers=a).status_code == 200
    (lease,) = svc.ctx.store.leases.find(name="gone2")
    svc.ctx.store.leases.update(lease.vm_uuid, expires=svc.ctx.clock() - 1)
    assert expire_due(svc.ctx) == 1
    wait_until(lambda: probe.state() == clean_farm, timeout=20,
               what="no VM, snapshot or disk left on the farm")


def test_reconciliation_leaves_snapshots_alone(api, svc, tok) -> None:  # noqa: F811
    """A snapshot carries its VM's dynvm tags: it must be neither adopted nor destroyed."""
    from dynvm.core.reconcile import Reconciler

    a = bearer(tok["team-a"])
    vm_named(api, a, "kept")
    assert api.post("/api/v1/vms/kept/snapshots", json={"name": "s"}, headers=a).status_code == 201
    rec = Reconciler(svc.ctx, orphan_grace=0.0)
    for _ in range(2):  # an orphan is noted on one pass, acted on at the next
        counts = rec.run()
        assert counts["adopted"] == 0 and counts["vms"] == 0, counts
    assert [s["name_label"] for s in snapshots_of(svc, "kept")] == ["s"]
    assert [lease.name for lease in svc.ctx.store.leases.find()] == ["kept"]


def test_snapshots_are_listed_oldest_first_and_limited_per_vm(api, svc, tok) -> None:  # noqa: F811
    a, b = bearer(tok["team-a"]), bearer(tok["team-b"])
    vm_named(api, a, "many")
    limit = svc.config().snapshots_max
    assert limit == 3  # the default
    listed = api.get("/api/v1/vms/many/snapshots", headers=a)
    assert listed.status_code == 200 and listed.json == {"vm": "many", "snapshots": [],
                                                         "max": limit}
    assert api.get("/api/v1/vms/many/snapshots", headers=b).status_code == 404
    for i in range(limit):
        assert api.post("/api/v1/vms/many/snapshots", json={"name": f"s{i}"},
                        headers=a).status_code == 201
    over = api.post("/api/v1/vms/many/snapshots", json={"name": "one-more"}, headers=a)
    assert over.status_code == 409 and over.mimetype == "application/problem+json"
    assert f"has {limit} snapshot(s), the most one VM may have (vm.snapshots.max={limit})" \
        in over.json["detail"], over.json
    snaps = api.get("/api/v1/vms/many/snapshots", headers=a).json["snapshots"]
    assert [s["name"] for s in snaps] == [f"s{i}" for i in range(limit)]  # none added
    assert [s["uuid"] for s in snaps] == [r["uuid"] for r in sorted(
        snapshots_of(svc, "many"), key=lambda r: r["snapshot_time"])]
    assert all(s["vm"] == "many" and s["taken"] for s in snaps)

    # Deleting one makes room for another, and gives its disk back to the SR.
    host = api.get("/api/v1/vms/many", headers=a).json["host"]
    used = used_on_host(svc, host)
    assert api.delete("/api/v1/vms/many/snapshots/s0", headers=b).status_code == 404
    unknown = api.delete("/api/v1/vms/many/snapshots/nosuch", headers=a)
    assert unknown.status_code == 404 and "'nosuch'" in unknown.json["detail"]
    gone = api.delete("/api/v1/vms/many/snapshots/s0", headers=a)
    assert gone.status_code == 200 and gone.json["uuid"] == snaps[0]["uuid"], gone.json
    assert sorted(r["name_label"] for r in snapshots_of(svc, "many")) == ["s1", "s2"]
    wait_until(lambda: used_on_host(svc, host) < used, timeout=10,
               what="the deleted snapshot's disk to leave the host's use")
    assert api.post("/api/v1/vms/many/snapshots", json={"name": "again"},
                    headers=a).status_code == 201


def test_a_revert_records_the_address_the_restarted_vm_gets(api, svc, tok) -> None:  # noqa: F811
    """XAPI leaves a reverted VM halted (a disk-only snapshot's power state) and its start
    clears the guest's metrics: the guest asks DHCP again, and may get another address."""
    a = bearer(tok["team-a"])
    first, second = (vm_named(api, a, name, host=1) for name in ("addr1", "addr2"))
    low, high = sorted((first, second), key=lambda vm: ipaddress.IPv4Address(vm["ip"]))
    assert api.post(f"/api/v1/vms/{high['name']}/snapshots", json={"name": "base"},
                    headers=a).status_code == 201
    # The lower address is given back: the restarted guest is offered it (lowest free first).
    assert api.delete(f"/api/v1/vms/{low['name']}", headers=a).status_code == 200
    r = api.post(f"/api/v1/vms/{high['name']}/revert", json={}, headers=a)
    assert r.status_code == 200, r.json
    new = r.json["ip"]
    assert new and new != high["ip"], (new, high["ip"])
    assert api.get(f"/api/v1/vms/{high['name']}", headers=a).json["ip"] == new
    (lease,) = svc.ctx.store.leases.find(name=high["name"])
    assert lease.ip == new
    assert svc.ctx.store.history.get(lease.vm_uuid)["ipaddr"] == new
    shown = api.get("/showall", headers=a).json
    assert any(vm["name"] == high["name"] and vm["networkinfo"] == new
               for vms in shown.values() for vm in vms), shown
