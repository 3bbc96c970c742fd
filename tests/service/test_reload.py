"""INI changes take effect without a restart; a broken INI is refused.

The service runs on a clock the test moves (`ticking`): the watcher's check
interval and a changed file's settling period pass as the test looks, not in
real time.
"""

from __future__ import annotations

import json

from testbed.inis import Ini
from tests.service.conftest import FAST, wait_until, write_ini
from tests.support.clock import SteppedClock, ticking


def test_reload_adds_a_host_and_broken_file_is_refused(tmp_path, farm, clean_farm) -> None:
    from dynvm.api import create_app
    from dynvm.runtime.bootstrap import build_service

    ini = write_ini(tmp_path, farm, hosts=Ini.of_farm(farm).only("xenhost1"))
    clock = SteppedClock()
    svc = build_service(str(ini), timings=FAST, clock=clock)
    try:
        c = create_app(service=svc).test_client()
        assert sorted(json.loads(c.get("/showall").text)) == ["1"]

        full = write_ini(tmp_path, farm)  # same path, now with both hosts
        assert full == ini
        wait_until(ticking(clock, lambda: sorted(json.loads(c.get("/showall").text)) == ["1", "2"]),
                   timeout=10, what="the new host to appear")

        good = ini.read_text()
        Ini.parse(good).set("xenhost3", {"host.name": ""}).write(ini)  # missing keys: refused
        wait_until(ticking(clock, lambda: c.get("/health").get_json()["config"]["error"]),
                   timeout=10, what="the broken file to be reported")
        h = c.get("/health")
        assert h.status_code == 503
        assert "xenhost3" in h.get_json()["config"]["error"]
        assert sorted(json.loads(c.get("/showall").text)) == ["1", "2"]  # last good in force

        ini.write_text(good)
        wait_until(ticking(clock, lambda: c.get("/health").get_json()["config"]["error"] is None),
                   timeout=10, what="the fixed file to be accepted")
    finally:
        svc.close()


def test_draining_a_host_keeps_its_vms_but_takes_no_new_ones(tmp_path, farm, clean_farm,
                                                             probe) -> None:
    from dynvm.api import create_app
    from dynvm.runtime.bootstrap import build_service

    ini = write_ini(tmp_path, farm)
    clock = SteppedClock()
    svc = build_service(str(ini), timings=FAST, clock=clock)
    try:
        c = create_app(service=svc).test_client()
        assert c.get("/getservers/stay?os=centos&xhostref=2").status_code == 200
        both = int(c.get("/getavailablecount/centos").text)
        Ini.parse(ini.read_text()).set("xenhost2", {"host.drain": True}).write(ini)
        wait_until(ticking(clock, lambda: int(c.get("/getavailablecount/centos").text) < both),
                   timeout=10, what="the drained host to stop counting")
        r = c.get("/getservers/new?os=centos&xhostref=2")
        assert r.status_code == 503
        r = c.get("/getservers/elsewhere?os=centos&count=2&format=detailed")
        assert r.status_code == 200
        assert {lease.host_ref for n in ("elsewhere1", "elsewhere2")
                for lease in svc.ctx.store.leases.find(name=n)} == {1}
        rows = json.loads(c.get("/showall").text)["2"]
        assert [row["name"] for row in rows] == ["stay"]  # still running, still shown
        assert json.loads(c.get("/releaseservers/stay").text) == ["stay"]
        c.get("/releaseservers/elsewhere?count=2")
        assert probe.vms_named("stay") == []
    finally:
        svc.close()
