"""A leader busy on a slow host is never taken for dead by another instance.

Two instances share one store. The leader releases an expired VM on a host
whose every XenAPI answer is slow, which takes many times the heartbeat TTL,
while it also builds a VM for a live request on that host. Before the
heartbeat had a loop of its own, the other instance judged the busy leader
dead, took over and destroyed the VM being built: the client got a 499.
"""

from __future__ import annotations

import threading
from typing import Any

from dynvm.api import create_app
from dynvm.core.background import Timings
from dynvm.core.release import release_lease
from dynvm.runtime.bootstrap import build_service
from tests.service.conftest import wait_until, write_ini

SHORT = Timings(tick=0.1, leader_ttl=2.0, heartbeat_ttl=2.0, reconcile_every=0.3)
SLOW_SECS = 0.4  # per XenAPI answer: a release takes several heartbeat TTLs


def test_a_busy_leader_loses_no_vm_and_fails_no_request(tmp_path, farm, clean_farm,
                                                          probe) -> None:
    ini = write_ini(tmp_path, farm)
    a = build_service(str(ini), timings=SHORT)
    b = build_service(str(ini), timings=SHORT)
    master = farm.pools[0].master
    slow_ref = next(h.ref for h in a.config().hosts.values() if h.url == master.url)
    ca = create_app(service=a).test_client()
    took_over = threading.Event()
    done = threading.Event()
    try:
        a.background.ensure_started()
        wait_until(lambda: a.background.is_leader, timeout=20, what="a to lead")
        b.background.ensure_started()
        wait_until(lambda: b.background.beats > 0, timeout=20, what="b's first heartbeat")

        def watch() -> None:
            while not done.is_set():
                if b.background.is_leader:
                    took_over.set()
                done.wait(0.02)

        watcher = threading.Thread(target=watch)
        watcher.start()
        assert ca.get(f"/getservers/victim?os=centos&xhostref={slow_ref}").status_code == 200
        farm.set_slow(master.name_label, SLOW_SECS)
        answers: dict[str, Any] = {}
        build = threading.Thread(target=lambda: answers.update(busy=ca.get(
            f"/getservers/busy?os=centos&xhostref={slow_ref}")))
        build.start()
        # the leader now spends many heartbeat TTLs releasing this one
        assert ca.get("/setexpiry/victim/0?from=created").status_code == 200
        build.join()
        wait_until(lambda: probe.vms_named("victim") == [], timeout=120,
                   what="the expired VM to be released")
        done.set()
        watcher.join()
        r = answers["busy"]
        assert r.status_code == 200, r.text
        assert len(probe.vms_named("busy")) == 1  # no VM lost
        store = a.ctx.store
        assert [q.state for q in store.requests.find() if q.name in ("busy", "victim")] == \
            ["done", "done"]  # no request interrupted
        assert not took_over.is_set()
        assert [lease.state for lease in store.leases.find(name="busy")] == ["active"]
    finally:
        done.set()
        farm.set_slow(master.name_label, 0)
        for svc in (a, b):
            for lease in svc.ctx.store.leases.find():
                try:
                    release_lease(svc.ctx, lease, reason="test teardown")
                except Exception:
                    pass
        b.close()
        a.close()
