"""Input rules end to end: Flask app -> core -> XenAPI -> simulated farm.

Bad input changes nothing: the farm's count of XenAPI write calls stays 0.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import XenAPI
from flask.testing import FlaskClient

from dynvm.api import create_app
from dynvm.config import ConfigWatcher
from dynvm.core.services import Dynvm
from dynvm.core.store import Reservations
from dynvm.runtime.bootstrap import adapters, build_service
from dynvm.sim import Farm
from dynvm.store.factory import open_store
from testbed.inis import Ini, farm_ini
from testbed.serving import wait_until

GIB = 1 << 30
SPEED = 200.0
READ_PREFIXES = ("get", "event", "login", "logout", "slave_local", "local_logout")
# The OS's sizes in the INI differ from the template's (8 vCPUs, 4 GiB, 35 GiB).
SIZES = {"centos.vcpus": 2, "centos.memory": 1, "centos.disk": 40}


def writes(farm: Farm) -> dict[str, int]:
    """XenAPI calls that could change something (everything but reads and the event feed)."""
    out: dict[str, int] = {}
    for per_host in farm.call_counts().values():
        for method, n in per_host.items():
            message = method.removeprefix("Async.").split(".", 1)[-1].split("_", 1)[0] \
                if "." in method else method
            if method.startswith(("event", "session.", "task.get")) or \
                    message.startswith(READ_PREFIXES):
                continue
            out[method] = out.get(method, 0) + n
    return out


def ini_text(farm: Farm, tmp: Path) -> str:
    return farm_ini(farm, tmp).set_hosts(SIZES).text()


@pytest.fixture(scope="module")
def farm() -> Iterator[Farm]:
    f = Farm.generate(pools=2, hosts=1, speed=SPEED).start()
    try:
        yield f
    finally:
        f.stop()


@pytest.fixture(scope="module")
def svc(farm: Farm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dynvm]:
    tmp = tmp_path_factory.mktemp("input")
    ini = tmp / "dynvm.ini"
    ini.write_text(ini_text(farm, tmp))
    service = build_service(str(ini), background=False)
    try:
        yield service
    finally:
        service.close()


@pytest.fixture(scope="module")
def client(svc: Dynvm) -> FlaskClient:
    c = create_app(service=svc).test_client()
    assert c.get("/getavailablecount/centos").status_code == 200  # inventories loaded
    return c


@pytest.fixture
def xapi(farm: Farm) -> Iterator[XenAPI.Session]:
    s = XenAPI.Session(farm.pools[0].master.url)
    s.login_with_password("root", "xenroot", "1.0", "dynvm-tests")
    try:
        yield s
    finally:
        s.xenapi.session.logout()


def vm_named(farm: Farm, name: str) -> list[dict[str, Any]]:
    out = []
    for pool in farm.pools:
        out += [r for r in pool.db.tables["VM"].values()
                if r.get("name_label") == name and not r.get("is_a_template")]
    return out


@pytest.mark.parametrize("query", [
    "count=%D9%A1",            # ARABIC-INDIC DIGIT ONE: built a VM before
    "count=%EF%BC%92",         # FULLWIDTH DIGIT TWO
    "cpus=%D9%A2", "mem=%D9%A1%D9%A0%D9%A0%D9%A0%D9%A0%D9%A0%D9%A0%D9%A0%D9%A0%D9%A0",
    "expiresin=%D9%A3%D9%A0", "xhostref=%D9%A1",
    "networkid=eth9",          # no such PIF on any host
    "networkid=xenbr0",        # a bridge, not a PIF device
    "os=%1bcentos",
])
def test_bad_input_makes_no_xenapi_write(client: FlaskClient, farm: Farm, query: str) -> None:
    farm.reset_call_counts()
    resp = client.get(f"/getservers/bad-in?{query}")
    body = resp.get_data(as_text=True)
    assert resp.status_code == 400, (query, resp.status_code, body)
    assert body.startswith("Error: bad parameter") and body.isprintable(), body
    assert writes(farm) == {}
    assert vm_named(farm, "bad-in") == []


def test_unknown_networkid_names_the_known_devices(client: FlaskClient, farm: Farm) -> None:
    body = client.get("/getservers/net?networkid=eth9").get_data(as_text=True)
    devices = sorted({p["device"] for p in farm.pools[0].db.tables["PIF"].values()})
    assert "'networkid'" in body and all(d in body for d in devices), body


def test_known_networkid_builds_on_that_network(client: FlaskClient, farm: Farm,
                                                xapi: XenAPI.Session) -> None:
    pifs = farm.pools[0].db.tables["PIF"].values()
    device = sorted(p["device"] for p in pifs)[-1]
    resp = client.get(f"/getservers/net-ok?networkid={device}&xhostref=1")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    xa = xapi.xenapi
    [vm] = xa.VM.get_by_name_label("net-ok")
    networks = {xa.VIF.get_network(v) for v in xa.VM.get_VIFs(vm)}
    wanted = {p["network"] for p in pifs if p["device"] == device}
    assert networks & wanted
    assert client.get("/releaseservers/net-ok").status_code == 200


@pytest.mark.parametrize("path", ["/getservers/head-probe", "/getservers/head-probe?count=2"])
def test_head_never_builds(client: FlaskClient, farm: Farm, path: str) -> None:
    farm.reset_call_counts()
    resp = client.head(path)
    assert resp.status_code == 405
    assert set(resp.headers["Allow"].split(", ")) == {"GET", "OPTIONS"}
    assert writes(farm) == {}
    assert vm_named(farm, "head-probe") == []


def test_head_never_releases_or_moves_expiry(client: FlaskClient, farm: Farm) -> None:
    assert client.get("/getservers/keepme").status_code == 200
    farm.reset_call_counts()
    assert client.head("/releaseservers/keepme").status_code == 405
    assert client.head("/setexpiry/keepme/1").status_code == 405
    assert client.open("/releaseservers/keepme", method="DELETE").status_code == 405
    assert writes(farm) == {}
    assert [v["power_state"] for v in vm_named(farm, "keepme")] == ["Running"]
    assert json.loads(client.get("/releaseservers/keepme").get_data(as_text=True)) == ["keepme"]


def vm_sizes(farm: Farm, name: str) -> tuple[int, int, int, int]:
    """(VCPUs_max, VCPUs_at_startup, memory_static_max, system disk size), read through
    the official client from whichever pool holds the VM."""
    for pool in farm.pools:
        s = XenAPI.Session(pool.master.url)
        s.login_with_password("root", "xenroot", "1.0", "dynvm-tests")
        try:
            xa = s.xenapi
            refs = [r for r in xa.VM.get_by_name_label(name) if not xa.VM.get_is_a_template(r)]
            if not refs:
                continue
            [vm] = refs
            r = xa.VM.get_record(vm)
            disks = [(not xa.VBD.get_bootable(b),
                      int(xa.VDI.get_virtual_size(xa.VBD.get_VDI(b))))
                     for b in r["VBDs"] if xa.VBD.get_type(b) == "Disk"]
            return (int(r["VCPUs_max"]), int(r["VCPUs_at_startup"]), int(r["memory_static_max"]),
                    min(disks)[1])
        finally:
            s.xenapi.session.logout()
    raise AssertionError(f"no VM named {name}")


def test_os_sizes_from_the_ini_size_the_built_vm(client: FlaskClient, farm: Farm,
                                                 svc: Dynvm) -> None:
    resp = client.get("/getservers/sized?xhostref=1")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert vm_sizes(farm, "sized") == (2, 2, 1 * GIB, 40 * GIB)
    [lease] = svc.ctx.store.leases.find(name="sized")
    [res] = [r for r in svc.ctx.store.reservations.live()  # what capacity counted
             if r.vm_uuid == lease.vm_uuid]
    assert (res.vcpus, res.memory_gib, res.disk_gib) == (2, 1, 40)
    assert client.get("/releaseservers/sized").status_code == 200


def test_asked_sizes_size_the_built_vm(client: FlaskClient, farm: Farm) -> None:
    resp = client.get("/getservers/asked?xhostref=1&cpus=3&mem=1610612736")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert vm_sizes(farm, "asked") == (3, 3, 1610612736, 40 * GIB)
    assert client.get("/releaseservers/asked").status_code == 200


def test_seed_helper_request_gets_the_seed_answer(client: FlaskClient, farm: Farm) -> None:
    resp = client.get("/getservers/helper?cpus=default&mem=default&format=detailed")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    [(name, ip)] = json.loads(resp.get_data(as_text=True)).items()
    assert name == "helper" and re.fullmatch(r"\d+\.\d+\.\d+\.\d+", ip)
    assert vm_sizes(farm, "helper") == (2, 2, GIB, 40 * GIB)  # `default`: the OS's sizes
    assert client.get("/releaseservers/helper?count=").status_code == 200


class RacingReservations:
    """The store's reservations, with a rival request that grabs every slot of the first
    host between this request's first look and its first reservation."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.raced = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _race(self, host_key: str, wanted: list, free_slots: Any) -> None:
        if not self.raced.is_set():
            self.raced.set()
            rival = [type(w)(**{**w.__dict__, "id": f"rival-{i}", "request_id": "rival"})
                     for i, w in enumerate(wanted * 40)]
            self._inner.reserve(host_key, rival, free_slots)

    def reserve(self, host_key: str, wanted: list, free_slots: Any, quota: Any = None) -> list:
        self._race(host_key, wanted, free_slots)
        return self._inner.reserve(host_key, wanted, free_slots, quota)

    def reserve_many(self, batches: list, quota: Any = None) -> list:
        self._race(*batches[0])
        return self._inner.reserve_many(batches, quota)


def test_no_capacity_503_gives_the_count_at_refusal(farm: Farm, tmp_path: Path) -> None:
    ini = tmp_path / "dynvm.ini"
    ini.write_text(ini_text(farm, tmp_path))
    watcher = ConfigWatcher(str(ini))
    store = open_store(watcher.current().store)
    racing = RacingReservations(store.reservations)
    store.reservations = cast(Reservations, racing)
    svc = Dynvm(watcher.current, adapters(watcher.current(), store), background=False)
    try:
        client = create_app(service=svc).test_client()
        before = int(client.get("/getavailablecount/centos").get_data(as_text=True))
        assert before >= 2
        farm.reset_call_counts()
        resp = client.get(f"/getservers/race?count={before}")
        body = resp.get_data(as_text=True)
        assert resp.status_code == 503, body
        assert racing.raced.is_set()
        m = re.search(r"(\d+) available", body)
        assert m, body
        now = int(client.get("/getavailablecount/centos").get_data(as_text=True))
        assert now < before
        assert int(m.group(1)) == now, (body, now)
        assert writes(farm) == {}
    finally:
        for r in store.reservations.live():
            if r.request_id == "rival":
                store.reservations.settle(r.id, settle_secs=0.0)
        svc.close()
    wait_until(lambda: not vm_named(farm, "race"), timeout=5, what="nothing built")


def test_each_host_builds_with_its_own_os_template_and_sizes(tmp_path: Path) -> None:
    """xenhost2 names its own centos template and sizes: a VM placed there is built
    from that template with those sizes, as /getavailablecount counted them."""
    farm = Farm.generate(pools=2, hosts=1, speed=SPEED).start()
    try:
        s = XenAPI.Session(farm.pools[1].master.url)
        s.login_with_password("root", "xenroot", "1.0", "dynvm-tests")
        try:
            [base] = [r for r in s.xenapi.VM.get_by_name_label("tmpl-cnt7.7")
                      if s.xenapi.VM.get_is_a_template(r)]
            s.xenapi.VM.clone(base, "tmpl-cnt7.7-big")  # the clone of a template is one
        finally:
            s.xenapi.session.logout()
        ini = Ini.of_farm(farm).sqlite_store(tmp_path).set("xenhost2", {
            "centos.template": "tmpl-cnt7.7-big", "centos.vcpus": 4, "centos.memory": 2,
            "centos.disk": 45, "host.labels": "big"}).write(tmp_path / "dynvm.ini")
        svc = build_service(str(ini), background=False)
        try:
            client = create_app(service=svc).test_client()
            before = int(client.get("/getavailablecount/centos?labels=big").get_data(as_text=True))
            resp = client.get("/getservers/het?labels=big&cpus=default&mem=default")
            assert resp.status_code == 200, resp.get_data(as_text=True)
            assert vm_sizes(farm, "het") == (4, 4, 2 * GIB, 45 * GIB)
            [vm] = vm_named(farm, "het")
            assert vm["name_description"].startswith("het from tmpl-cnt7.7-big on ")
            after = int(client.get("/getavailablecount/centos?labels=big").get_data(as_text=True))
            assert after == before - 1
            assert client.get("/releaseservers/het").status_code == 200
        finally:
            svc.close()
    finally:
        farm.stop()
