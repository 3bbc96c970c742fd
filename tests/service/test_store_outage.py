"""The store goes away: requests get a 503, releases and expiry still happen, nothing is lost.

The store here is dynvm's Couchbase adapter over the in-process stand-in for
the SDK's collection API (it honours CAS and expiry and can be taken
offline); Xen is the simulator over real XML-RPC as everywhere else.
"""

from __future__ import annotations

import json
import time

import pytest

from dynvm.api import create_app
from dynvm.config import ConfigWatcher
from dynvm.core.services import Dynvm
from dynvm.runtime.bootstrap import adapters
from dynvm.store.couchbase import CouchbaseStore
from dynvm.store.outbox import ResilientStore
from tests.service.conftest import FAST, wait_until, write_ini
from tests.support.cb_standin import StandInCollection


@pytest.fixture
def outage(tmp_path, farm, clean_farm):
    coll = StandInCollection()
    store = ResilientStore(CouchbaseStore(coll), str(tmp_path / "outbox.sqlite"))
    watcher = ConfigWatcher(str(write_ini(tmp_path, farm)))
    svc = Dynvm(watcher.current, adapters(watcher.current(), store), timings=FAST)
    try:
        yield svc, coll
    finally:
        coll.offline = False
        from tests.service.conftest import _release_everything

        _release_everything(svc)
        svc.close()


def test_outage_refuses_requests_but_releases_and_expires(outage, farm, probe) -> None:
    svc, coll = outage
    c = create_app(service=svc).test_client()
    assert c.get("/getservers/keep?os=centos&count=2").status_code == 200
    assert c.get("/getservers/late?os=centos").status_code == 200
    wait_until(lambda: svc.background.is_leader, timeout=60, what="leadership")

    lease = svc.ctx.store.leases.find(name="late")[0]

    coll.offline = True
    c.get("/getavailablecount/centos")
    farm.reset_call_counts()
    r = c.get("/getservers/refused?os=centos")
    assert r.status_code == 503
    assert "store" in r.text
    writes = [m for per in farm.call_counts().values() for m in per
              if not (m.startswith("event") or ".get_" in m or "_get_" in m)]
    assert writes == []
    assert probe.vms_named("refused") == []

    # "late" falls due during the outage: its lease (12 h) is only read while the store
    # answers; now only its tag is, and the tag says it is due. No clock decides.
    svc.ctx.pool(svc.config().hosts[lease.host_ref]).update(
        lease.vm_uuid, tags={"dynvm_expires": str(int(time.time() - 60))})

    r = c.get("/releaseservers/keep?count=2")
    assert r.status_code == 200, r.text
    assert json.loads(r.text) == ["keep1", "keep2"]
    assert probe.vms_named("keep") == []
    wait_until(lambda: probe.vms_named("late") == [], timeout=60,
               what="the VM to expire during the outage")
    assert svc.ctx.store.pending() > 0

    coll.offline = False
    wait_until(lambda: svc.ctx.store.pending() == 0, timeout=60, what="the outbox to drain")
    # the expiry may still be recording "late" (its store calls were retrying when it came back)
    wait_until(lambda: svc.ctx.store.leases.find() == [], timeout=60, what="every lease to be closed")
    docs = {d["name"]: d for d in svc.ctx.store.history.recent()}
    for name, reason in (("keep1", "released"), ("keep2", "released"), ("late", "expired")):
        d = docs[name]
        assert d["state"] == "deleted" and d["delete_reason"] == reason, d
        assert {"deleted_time", "live_duration_secs", "delete_duration_secs", "ipaddr",
                "created_time"} <= set(d)
    assert svc.ctx.store.leases.find() == []


def test_releasing_every_numbered_vm_of_a_prefix_works_during_an_outage(outage, probe) -> None:
    """`/releaseservers/<prefix>/available` finds the VMs by their tags when the store is down."""
    svc, coll = outage
    c = create_app(service=svc).test_client()
    assert c.get("/getservers/pfx?os=centos&count=2").status_code == 200
    assert c.get("/getservers/other?os=centos").status_code == 200
    coll.offline = True
    r = c.get("/releaseservers/pfx/available")
    assert r.status_code == 200, r.text
    assert json.loads(r.text) == ["pfx1", "pfx2"]
    assert probe.vms_named("pfx") == []
    assert [v["name_label"] for v in probe.vms_named("other")] == ["other"]
    coll.offline = False
    wait_until(lambda: svc.ctx.store.pending() == 0, timeout=60, what="the outbox to drain")
    docs = {d["name"]: d for d in svc.ctx.store.history.recent()}
    assert docs["pfx1"]["state"] == docs["pfx2"]["state"] == "deleted"
