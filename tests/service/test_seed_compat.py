"""dynvm as a drop-in for the seed's service, end to end on the simulator.

The seed's own INI serves; history documents have the seed's fields with the
seed's types; pools=, /releaseservers/<prefix>/available, format=short,
clone retry on the next host, SSH login for checkvms, networkid and
<os>.template.network.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from flask.testing import FlaskClient

from dynvm.core.services import Dynvm
from dynvm.runtime.bootstrap import build_service
from dynvm.sim import Farm
from dynvm.sim.farmgen import dhcp_range
from dynvm.sim.faults import FailRule
from testbed.inis import Ini
from testbed.processes import GroupProcess
from testbed.serving import serve_command, stop_group
from tests.service.conftest import FAST, FarmProbe, free_port, wait_until, write_ini

SEED_INI = Path(__file__).parents[1] / "fixtures" / "seed" / ".dynvmservice.ini"
GUEST_LOGIN = {"vm.linux.username": "root", "vm.linux.password": "dynvm"}  # what the farm's guests accept


@contextmanager
def serving(ini: Path) -> Iterator[tuple[Dynvm, FlaskClient]]:
    from dynvm.api import create_app

    svc = build_service(str(ini), timings=FAST)
    try:
        yield svc, create_app(service=svc).test_client()
    finally:
        from dynvm.core.release import release_lease

        for lease in svc.ctx.store.leases.find():
            try:
                release_lease(svc.ctx, lease, reason="test teardown")
            except Exception:
                pass
        svc.close()


def seed_ini_for(farm: Farm, tmp_path: Path, ssh_port: int) -> Path:
    """The seed's INI as it is, its bare host.name values pointing at the simulator."""
    ini = Ini.parse(SEED_INI.read_text())
    for n, pool in enumerate(farm.pools, start=1):
        bare = pool.master.url.removeprefix("http://")  # seed style: no scheme
        ini.set(f"xenhost{n}", {"host.name": bare, "host.password": "xenroot"})
    ini.set("common", {"vm.linux.password": "dynvm", "vm.network.timeout.secs": 20,
                       "vm.ssh.port": ssh_port})
    return ini.write(tmp_path / ".dynvmservice.ini")


@pytest.fixture
def seed_client(tmp_path: Path, farm: Farm, ssh_port: int,
                clean_farm: dict) -> Iterator[tuple[Dynvm, object]]:
    with serving(seed_ini_for(farm, tmp_path, ssh_port)) as pair:
        yield pair


def test_seed_ini_serves(seed_client) -> None:
    svc, client = seed_client
    cfg = svc.config()
    assert cfg.hosts[1].url.startswith("http://") and cfg.linux_login is not None
    r = client.get("/getservers/seedjob?os=centos&count=2&checkvms=true&format=detailed")
    assert r.status_code == 200, r.text
    body = json.loads(r.text)
    assert sorted(body) == ["seedjob1", "seedjob2"]
    assert r.text == json.dumps(body, indent=2, sort_keys=True)
    r = client.get("/releaseservers/seedjob?count=2")
    assert r.status_code == 200 and json.loads(r.text) == ["seedjob1", "seedjob2"]


@pytest.mark.served
def test_seed_ini_served_by_dynvm_serve(tmp_path: Path, farm: Farm, ssh_port: int) -> None:
    """`dynvm serve --config .dynvmservice.ini`, under gunicorn, as an operator would run it."""
    ini = seed_ini_for(farm, tmp_path, ssh_port)
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = GroupProcess(
            serve_command("--config", str(ini), "--bind", f"127.0.0.1:{port}", "--workers", "1"),
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def count() -> requests.Response | None:
        assert proc.poll() is None, log.read_text()
        try:
            return requests.get(base + "/getavailablecount/centos", timeout=30)
        except requests.ConnectionError:
            return None

    try:
        r = wait_until(count, timeout=60, what="dynvm serve to answer")
        assert r.status_code == 200 and int(r.text) > 0, r.text
        assert "no scheme: XAPI is spoken over plain http" in log.read_text()
    finally:
        stop_group(proc)


@pytest.fixture(autouse=True)
def _state_in_tmp(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the seed's INI has no [store]: .dynvm/ under the cwd


# ------------------------------------------------------------------ history


SEED_TYPES = {  # the seed's history document: field -> type, as it wrote them
    "ipaddr": str, "origin": str, "os": str, "state": str, "poolId": str, "prevUser": str,
    "username": str, "ver": str, "memory": str, "os_version": str, "name": str,
    "created_time": float, "create_duration_secs": int, "cpu": str, "disk": str,
    "expired_time": float,
}
SEED_DELETE_TYPES = {"deleted_time": float, "live_duration_secs": int,
                     "delete_duration_secs": int}


def seed_doc(probe: FarmProbe, name: str, ip: str, os_key: str) -> dict:
    """What the seed would have written for this VM, read from XenAPI the seed's way."""
    for i in range(len(probe.farm.pools)):
        s = probe.session(i)
        try:
            x = s.xenapi
            refs = [r for r in x.VM.get_by_name_label(name) if not x.VM.get_is_a_template(r)]
            if not refs:
                continue
            rec = x.VM.get_record(refs[0])
            disks = []
            for vbd in rec["VBDs"]:
                vdi = x.VBD.get_VDI(vbd)
                if vdi != "OpaqueRef:NULL":
                    disks.append(x.VDI.get_record(vdi)["virtual_size"])
            osv = x.VM_guest_metrics.get_os_version(rec["guest_metrics"])
            origin = x.host.get_name_label(rec["resident_on"])
            return {"ipaddr": ip, "origin": origin, "os": os_key, "state": "available",
                    "poolId": "dynamicpool", "prevUser": "", "username": name, "ver": "12",
                    "memory": rec["memory_static_max"], "os_version": osv.get("name"),
                    "name": name, "created_time": 1.5, "create_duration_secs": 1,
                    "cpu": rec["VCPUs_max"], "disk": ",".join(disks), "expired_time": 2.5}
        finally:
            s.xenapi.session.logout()
    raise AssertionError(f"no VM {name}")


def test_history_document_matches_the_seeds(client, service, probe) -> None:
    r = client.get("/getservers/histo?os=centos&expiresin=60")
    assert r.status_code == 200, r.text
    ip = json.loads(r.text)[0]
    doc = next(d for d in service.ctx.store.history.recent() if d["name"] == "histo")
    seed = seed_doc(probe, "histo", ip, "centos")
    assert set(seed) <= set(doc), set(seed) - set(doc)
    for key, value in seed.items():
        assert type(doc[key]) is type(value) is SEED_TYPES[key], (key, doc[key], value)
        if key not in ("created_time", "create_duration_secs", "expired_time"):
            assert doc[key] == value, key
    assert doc["created_time"] - doc["build_started"] == pytest.approx(
        doc["create_duration_exact_secs"], abs=0.01)  # created_time: when it was ready
    assert 0 < doc["expired_time"] - doc["created_time"] <= 3600
    assert doc["owner"] == "histo" and isinstance(doc["labels"], list)
    r = client.get("/releaseservers/histo")
    assert r.status_code == 200
    doc = service.ctx.store.history.get(doc["uuid"])
    assert doc["state"] == "deleted"
    for key, kind in SEED_DELETE_TYPES.items():
        assert type(doc[key]) is kind, (key, doc[key])


# ----------------------------------------------------------- routes and params


def test_format_short_is_the_ip_list(client) -> None:
    r = client.get("/getservers/shorty?os=centos&format=short")
    assert r.status_code == 200, r.text
    ips = json.loads(r.text)
    assert r.text == json.dumps(ips) and len(ips) == 1
    ipaddress.IPv4Address(ips[0])
    assert client.get("/releaseservers/shorty").status_code == 200


def test_release_prefix_available(client, probe) -> None:
    r = client.get("/getservers/avl?os=centos&count=3")
    assert r.status_code == 200, r.text
    r = client.get("/releaseservers/avl/available?count=2")  # count given: as ever
    assert r.status_code == 200 and json.loads(r.text) == ["avl1", "avl2"]
    r = client.get("/releaseservers/avl/available")  # no count: every avl<N>
    assert r.status_code == 200, r.text
    assert r.text == json.dumps(["avl3"], indent=2)
    assert probe.vms_named("avl") == []
    r = client.get("/releaseservers/avl/available")
    assert (r.status_code, r.text) == (404, "Error: VM avl doesn't exist")


def test_pools_put_static_documents_and_release_removes_them(client, service) -> None:
    r = client.get("/getservers/stat?os=centos&count=2&pools=regression,12hr_weekly")
    assert r.status_code == 200, r.text
    ips = json.loads(r.text)
    static = service.ctx.static_pools
    assert static is not None
    for ip in ips:
        doc = static.get(ip)
        assert doc is not None
        assert doc["poolId"] == ["regression", "12hr_weekly"] and doc["ipaddr"] == ip
        assert (doc["state"], doc["username"], doc["prevUser"], doc["os"]) == (
            "available", "", "", "centos")
        assert doc["ver"] == 12 and isinstance(doc["memory"], str) and doc["origin"]
    r = client.get("/releaseservers/stat?count=2")
    assert r.status_code == 200
    assert [static.get(ip) for ip in ips] == [None, None]


def test_bad_pools_value_is_refused(client, probe) -> None:
    r = client.get("/getservers/badpool?os=centos&pools=a,b%20c")
    assert r.status_code == 400 and "pools" in r.text
    assert probe.vms_named("badpool") == []


# --------------------------------------------------------------- clone retry


def test_first_clone_failure_no_longer_fails_a_two_vm_request(client, farm, service,
                                                             probe) -> None:
    farm.faults.add_rule(FailRule("VM.clone", 1, "INTERNAL_ERROR", ["injected clone failure"]))
    try:
        r = client.get("/getservers/retry?os=centos&count=2")
        assert r.status_code == 200, r.text
        assert r.text == json.dumps(json.loads(r.text)) and len(json.loads(r.text)) == 2
        assert farm.faults.take_failure("any", "VM.clone", "VM.clone") is None  # it did fail once
    finally:
        farm.faults.clear_rules()
    assert sorted(v["name_label"] for v in probe.vms_named("retry")) == ["retry1", "retry2"]
    docs = [d for d in service.ctx.store.history.recent() if d["name"].startswith("retry")]
    assert sorted(d["name"] for d in docs) == ["retry1", "retry2"]  # nothing half-built
    assert all(d["state"] == "available" for d in docs)
    assert client.get("/releaseservers/retry?count=2").status_code == 200


def test_a_start_refused_by_a_host_just_disabled_moves_to_another_member(
        client, farm, service, probe) -> None:
    """A host disabled (taken into maintenance) after placement chose it refuses
    VM.start_on with HOST_DISABLED: the VM is built again on another member."""
    farm.faults.add_rule(FailRule("VM.start_on", 1, "HOST_DISABLED", ["OpaqueRef:disabled"]))
    try:
        r = client.get("/getservers/moved?os=centos&count=1&format=detailed")
        assert r.status_code == 200, r.text
        assert farm.faults.take_failure("any", "VM.start_on", "VM.start_on") is None  # it failed
    finally:
        farm.faults.clear_rules()
    assert [v["name_label"] for v in probe.vms_named("moved")] == ["moved"]  # none left over
    docs = [d for d in service.ctx.store.history.recent() if d["name"] == "moved"]
    assert [d["state"] for d in docs] == ["available"]
    assert client.get("/releaseservers/moved").status_code == 200


def test_clone_failing_everywhere_still_fails_cleanly(client, farm, probe) -> None:
    farm.faults.add_rule(FailRule("VM.clone", 50, "INTERNAL_ERROR", ["clone broken"]))
    try:
        r = client.get("/getservers/broken?os=centos&count=2")
    finally:
        farm.faults.clear_rules()
    assert r.status_code == 499
    assert r.text.startswith("all vms couldn't be created successfully")
    assert probe.vms_named("broken") == []


# ------------------------------------------------------------ checkvms over SSH


def test_checkvms_logs_in_with_the_configured_credentials(tmp_path, farm, ssh_port,
                                                          clean_farm) -> None:
    good = write_ini(tmp_path, farm, common={"vm.ssh.port": ssh_port, **GUEST_LOGIN})
    with serving(good) as (_, c):
        r = c.get("/getservers/sshin?os=centos&checkvms=true")
        assert r.status_code == 200, r.text
        assert c.get("/releaseservers/sshin").status_code == 200
    bad = tmp_path / "bad"
    bad.mkdir()
    wrong = write_ini(bad, farm, common={"vm.ssh.port": ssh_port,
                                        "vm.linux.username": "root", "vm.linux.password": "wrong",
                                        "vm.windows.username": "root",
                                        "vm.windows.password": "dynvm"})
    with serving(wrong) as (_, c):
        r = c.get("/getservers/sshno?os=centos&checkvms=true")
        assert r.status_code == 499, r.text
        assert "refused" in r.text  # the port answered, the login did not pass
        r = c.get("/getservers/sshwin?os=windows&checkvms=true")  # windows: its own login
        assert r.status_code == 200, r.text
        assert c.get("/releaseservers/sshwin").status_code == 200


# ------------------------------------------------------------------ networks


def _network_index(ip: str, pool_index: int) -> int:
    for n in range(2):
        lo, hi = dhcp_range(pool_index, n)
        if int(ipaddress.IPv4Address(lo)) <= int(ipaddress.IPv4Address(ip)) <= int(
                ipaddress.IPv4Address(hi)):
            return n
    return -1


def test_networkid_and_template_network_pick_the_pif_device(tmp_path, farm, clean_farm) -> None:
    sections = Ini.of_farm(farm).set_hosts({"centos.template.network": "eth1"})
    ini = write_ini(tmp_path, farm, hosts=sections)
    with serving(ini) as (_, c):
        r = c.get("/getservers/neta?os=centos&xhostref=1")  # <os>.template.network
        assert r.status_code == 200, r.text
        assert _network_index(json.loads(r.text)[0], 0) == 1
        r = c.get("/getservers/netb?os=centos&xhostref=1&networkid=eth0")  # networkid first
        assert r.status_code == 200, r.text
        assert _network_index(json.loads(r.text)[0], 0) == 0
        assert c.get("/releaseservers/neta").status_code == 200
        assert c.get("/releaseservers/netb").status_code == 200
