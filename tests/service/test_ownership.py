"""A deployment acts only on its own VMs: other deployments' are left alone, its own adopted.

Each test runs real services against the simulated farm over XML-RPC, with
a reconcile grace of zero, so that anything reconciliation would wrongly
destroy is destroyed at once rather than after two minutes.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

from dynvm.api import create_app
from dynvm.core.background import Timings
from dynvm.core.ports import TAG_DEPLOYMENT
from dynvm.core.services import Dynvm
from dynvm.core.store import Leases
from dynvm.runtime.bootstrap import build_service
from tests.service.conftest import FarmProbe, wait_until, write_ini

EAGER = Timings(tick=0.1, leader_ttl=2.0, heartbeat_ttl=2.0, reconcile_every=0.3,
                orphan_grace=0.0)


@contextmanager
def deployment(tmp: Path, farm) -> Iterator[Dynvm]:
    """A service with a store of its own (tmp is its state directory)."""
    tmp.mkdir(parents=True, exist_ok=True)
    svc = build_service(str(write_ini(tmp, farm)), timings=EAGER)
    svc.background.ensure_started()
    try:
        yield svc
    finally:
        release_all(svc)
        svc.close()


def release_all(svc: Dynvm) -> None:
    from dynvm.core.release import release_lease

    for lease in svc.ctx.store.leases.find():
        try:
            release_lease(svc.ctx, lease, reason="test teardown")
        except Exception:
            pass


def passes(svc: Dynvm, n: int) -> None:
    """Wait until this service's leader has reconciled `n` more times."""
    bg = svc.background
    wait_until(lambda: bg.is_leader, timeout=20, what="leadership")
    start = bg.reconcile_passes
    wait_until(lambda: bg.reconcile_passes >= start + n, timeout=30,
               what=f"{n} reconcile passes")


def vm_uuids(probe: FarmProbe, prefix: str) -> set[str]:
    return {r["uuid"] for r in probe.vms_named(prefix)}


def test_vms_carry_the_deployment_identity(tmp_path, farm, clean_farm, probe) -> None:
    with deployment(tmp_path, farm) as svc:
        client = create_app(service=svc).test_client()
        assert client.get("/getservers/ident?os=centos").status_code == 200
        (rec,) = probe.vms_named("ident")
        assert rec["other_config"][TAG_DEPLOYMENT] == svc.ctx.deployment()
        assert svc.ctx.store.documents.deployment_id(None) == svc.ctx.deployment()


def test_another_deployments_vms_are_never_touched(tmp_path, farm, clean_farm, probe) -> None:
    with deployment(tmp_path / "a", farm) as a, deployment(tmp_path / "b", farm) as b:
        assert a.ctx.deployment() != b.ctx.deployment()
        ca = create_app(service=a).test_client()
        assert ca.get("/getservers/mine?os=centos&count=2").status_code == 200
        owned = vm_uuids(probe, "mine")
        assert len(owned) == 2
        passes(b, 3)
        assert vm_uuids(probe, "mine") == owned
        assert b.ctx.store.leases.find() == [] and b.ctx.store.history.recent() == []
        # and b builds and releases its own next to them
        cb = create_app(service=b).test_client()
        assert cb.get("/getservers/theirs?os=centos").status_code == 200
        passes(a, 3)
        assert len(probe.vms_named("theirs")) == 1
        assert [lease.name for lease in a.ctx.store.leases.find(name="theirs")] == []
        assert cb.get("/releaseservers/theirs").status_code == 200
        assert vm_uuids(probe, "mine") == owned


def test_a_vm_without_identity_is_reported_never_destroyed(tmp_path, farm, clean_farm,
                                                           probe) -> None:
    with deployment(tmp_path, farm) as svc:
        client = create_app(service=svc).test_client()
        assert client.get("/getservers/legacyvm?os=centos").status_code == 200
        (lease,) = svc.ctx.store.leases.find(name="legacyvm")
        # as a VM built before identities existed, and whose lease was lost
        for i in range(len(farm.pools)):
            s = probe.session(i)
            try:
                for ref in s.xenapi.VM.get_by_name_label("legacyvm"):
                    s.xenapi.VM.remove_from_other_config(ref, TAG_DEPLOYMENT)
            finally:
                s.xenapi.session.logout()
        svc.ctx.store.leases.delete(lease.vm_uuid)
        passes(svc, 3)
        assert vm_uuids(probe, "legacyvm") == {lease.vm_uuid}  # not destroyed
        assert svc.ctx.store.leases.find(name="legacyvm") == []  # and not adopted either
        svc.ctx.store.leases.put(lease)  # so the test can release it


def test_store_loss_adopts_every_vm_with_its_lease_end(tmp_path, farm, clean_farm,
                                                       probe) -> None:
    ini = write_ini(tmp_path, farm)
    first = build_service(str(ini), timings=EAGER)
    try:
        client = create_app(service=first).test_client()
        assert client.get("/getservers/keep?os=centos&count=3").status_code == 200
        assert client.get("/setexpiry/keep2/90").status_code == 200
        identity = first.ctx.deployment()
        before = {lease.name: (lease.vm_uuid, int(lease.expires), lease.owner, lease.host_ref)
                  for lease in first.ctx.store.leases.find()}
        assert len(set(e for _, e, _, _ in before.values())) == 2  # keep2 has its own end
    finally:
        first.close()
    for f in tmp_path.glob("*.sqlite*"):  # the store is lost
        f.unlink()

    second = build_service(str(ini), timings=EAGER)
    try:
        c2 = create_app(service=second).test_client()
        store = second.ctx.store
        documented_first: list[bool] = []
        put_lease = store.leases.put

        def watched_put(lease, *args, **kwargs):
            documented_first.append(store.history.get(lease.vm_uuid) is not None)
            return put_lease(lease, *args, **kwargs)

        store.leases.put = watched_put  # type: ignore[method-assign]
        second.background.ensure_started()
        assert second.ctx.deployment() == identity
        wait_until(lambda: len(second.ctx.store.leases.find()) == 3, timeout=30,
                   what="the three VMs to be adopted")
        after = {lease.name: (lease.vm_uuid, int(lease.expires), lease.owner, lease.host_ref)
                 for lease in second.ctx.store.leases.find()}
        assert after == before
        # whoever sees an adopted lease sees its history document: it is written first
        assert documented_first == [True, True, True]
        assert vm_uuids(probe, "keep") == {u for u, _, _, _ in before.values()}  # none destroyed
        for vm_uuid, _, _, _ in before.values():
            doc = second.ctx.store.history.get(vm_uuid)
            assert doc is not None and doc["adopted_time"] > 0 and "adopt_reason" in doc
        wait_until(lambda: 'dynvm_reconciled_vms_total{event="adopted"}' in
                   c2.get("/metrics").text, timeout=10, what="the adoptions to be counted")
        # the adopted leases work like any other
        assert c2.get("/getservers/keep1?os=centos").status_code == 409
        assert c2.get("/releaseservers/keep?count=3").status_code == 200
        assert probe.vms_named("keep") == []
    finally:
        release_all(second)
        second.close()


def test_two_deployments_share_one_farm_under_mixed_traffic(tmp_path, farm, clean_farm,
                                                            probe) -> None:
    """Both build, extend and release at once; neither ever touches the other's VMs."""
    rounds = 12  # per client: bounded, not timed
    with deployment(tmp_path / "a", farm) as a, deployment(tmp_path / "b", farm) as b:
        clients = {"a": create_app(service=a).test_client(),
                   "b": create_app(service=b).test_client()}
        # long-lived VMs of each, which must survive the whole run
        for key, c in clients.items():
            assert c.get(f"/getservers/hold{key}?os=centos&count=2").status_code == 200
        held = {key: vm_uuids(probe, f"hold{key}") for key in clients}
        errors: list[str] = []

        # One app per thread, made before the threads start: CPython 3.11 may raise a spurious
        # SystemError ("AST constructor recursion depth mismatch", python/cpython#106905) when
        # threads build ASTs at once, as werkzeug does for each route of a new app.
        own = {(key, w): create_app(service=a if key == "a" else b).test_client()
               for key in clients for w in range(2)}

        def traffic(key: str, worker: int) -> None:
            try:
                run(key, worker)
            except Exception as exc:  # a thread's failure must fail the test
                errors.append(f"{key}{worker}: {exc!r}")

        def run(key: str, worker: int) -> None:
            c = own[(key, worker)]
            rng = random.Random(f"{key}{worker}")
            for i in range(rounds):
                name = f"mix{key}{worker}x{i}"
                r = c.get(f"/getservers/{name}?os=centos&count={rng.choice([1, 2])}")
                if r.status_code != 200:
                    if r.status_code != 503:  # no room is fine on a shared farm
                        errors.append(f"{name}: {r.status_code} {r.text}")
                    continue
                n = len(r.get_json())
                if rng.random() < 0.5:
                    r = c.get(f"/setexpiry/{name}/30?count={n}")
                    if r.status_code != 200:
                        errors.append(f"setexpiry {name}: {r.status_code} {r.text}")
                r = c.get(f"/releaseservers/{name}?count={n}")
                if r.status_code != 200:
                    errors.append(f"release {name}: {r.status_code} {r.text}")

        threads = [threading.Thread(target=traffic, args=(key, w))
                   for key in clients for w in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        passes(a, 2)
        passes(b, 2)
        assert errors == []
        assert {key: vm_uuids(probe, f"hold{key}") for key in clients} == held
        for svc, key in ((a, "a"), (b, "b")):
            other = "b" if key == "a" else "a"
            assert {lease.vm_uuid for lease in svc.ctx.store.leases.find()} == held[key]
            assert not any(d["uuid"] in held[other] for d in svc.ctx.store.history.recent()
                           if "uuid" in d)


def test_adoption_waits_for_a_second_sighting(tmp_path, farm, clean_farm, probe) -> None:
    """Reconciliation driven by hand: a VM seen once without a lease is only noted."""
    from dynvm.core.reconcile import Reconciler

    svc = build_service(str(write_ini(tmp_path, farm)), background=False)
    try:
        client = create_app(service=svc).test_client()
        assert client.get("/getservers/twice?os=centos").status_code == 200
        (lease,) = svc.ctx.store.leases.find(name="twice")
        svc.ctx.store.leases.delete(lease.vm_uuid)  # as if the store had lost it
        rec = Reconciler(svc.ctx, orphan_grace=0.0)
        assert rec.run()["adopted"] == 0
        assert svc.ctx.store.leases.get(lease.vm_uuid) is None
        assert rec.run()["adopted"] == 1
        adopted = svc.ctx.store.leases.get(lease.vm_uuid)
        assert adopted is not None and adopted.name == "twice" and adopted.state == "active"
        assert int(adopted.expires) == int(lease.expires) and adopted.owner == lease.owner
        assert rec.run()["adopted"] == 0  # once is enough
        assert client.get("/releaseservers/twice").status_code == 200
    finally:
        release_all(svc)
        svc.close()


def test_a_half_built_vm_is_destroyed_only_once_its_builder_is_dead(tmp_path, farm, clean_farm,
                                                                    probe) -> None:
    """No request record (the store was lost): the builder's heartbeat decides."""
    from dynvm.core.ports import TAG_BUILDER, TAG_LEASE, TAG_STATE
    from dynvm.core.reconcile import Reconciler

    svc = build_service(str(write_ini(tmp_path, farm)), background=False)
    try:
        client = create_app(service=svc).test_client()
        assert client.get("/getservers/half?os=centos").status_code == 200
        (lease,) = svc.ctx.store.leases.find(name="half")
        svc.ctx.store.leases.delete(lease.vm_uuid)
        pool = svc.ctx.pool(svc.config().hosts[lease.host_ref])
        # as a build cut short, whose request record went with the store
        pool.update(lease.vm_uuid, tags={TAG_STATE: "provisioning", TAG_LEASE: "unrecorded",
                                         TAG_BUILDER: svc.ctx.instance})
        rec = Reconciler(svc.ctx, orphan_grace=0.0)
        for _ in range(3):  # its builder (this very instance) is alive: left alone
            assert rec.run() == {"requests": 0, "vms": 0, "leases": 0, "adopted": 0,
                                 "vanished": 0, "foreign": 0, "names": 0}
        assert vm_uuids(probe, "half") == {lease.vm_uuid}
        pool.update(lease.vm_uuid, tags={TAG_BUILDER: "elsewhere:1:gone00"})
        assert rec.run()["vms"] == 1
        assert probe.vms_named("half") == []
        doc = svc.ctx.store.history.get(lease.vm_uuid)
        assert doc["delete_reason"] == "left half built by an instance that stopped"
    finally:
        release_all(svc)
        svc.close()


def test_a_vm_completed_after_the_lease_snapshot_is_never_destroyed(tmp_path, farm, clean_farm,
                                                                    probe) -> None:
    """The pass reads the leases, then lists the VMs: a hand-out (or a build) that
    completes in between is seen as a VM still building whose request is done."""
    import dataclasses

    from dynvm.core.reconcile import Reconciler
    from dynvm.core.store import LEASE_PROVISIONING

    svc = build_service(str(write_ini(tmp_path, farm)), background=False)
    try:
        client = create_app(service=svc).test_client()
        assert client.get("/getservers/late?os=centos").status_code == 200
        (lease,) = svc.ctx.store.leases.find(name="late")
        real = svc.ctx.store.leases

        class StaleLeases:
            """The leases, but `find` answers as they stood while the VM was building."""

            def __getattr__(self, name: str):
                return getattr(real, name)

            def find(self, **kw):
                return [dataclasses.replace(x, state=LEASE_PROVISIONING)
                        if x.vm_uuid == lease.vm_uuid else x for x in real.find(**kw)]

        svc.ctx.store.leases = cast(Leases, StaleLeases())
        try:
            assert Reconciler(svc.ctx, orphan_grace=0.0).run()["vms"] == 0
        finally:
            svc.ctx.store.leases = real
        assert vm_uuids(probe, "late") == {lease.vm_uuid}
        assert real.get(lease.vm_uuid).state == "active"
        assert client.get("/releaseservers/late").status_code == 200
    finally:
        release_all(svc)
        svc.close()
