"""How a VM gets its owner's keys when the easy way is not there, in process on the
simulator, the guests checked with paramiko: a warm VM that cannot take them (no
credentials, or credentials its sshd refuses) is not handed out and the VM is built
cold; a template without cloud-init gets them over SSH once built; an OS no host can
give keys to is refused on v1 and served as before on a legacy request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from flask.testing import FlaskClient

from dynvm.api import create_app
from dynvm.core import tokens
from dynvm.core.services import Dynvm
from dynvm.core.store import LEASE_READY
from dynvm.sim import Farm
from testbed.inis import Ini
from tests.service.conftest import FarmProbe, dynvm_on, stop_filling, wait_until, write_ini
from tests.support.guest_ssh import can_log_in

AUTH = "[auth]\nlegacy=mutating\n"
POOL = "\n[pool centos]\nready=1\nready.ttl.minutes=60\n"
USER, PASSWORD = "root", "dynvm"  # what the simulated guests accept


def line(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()} owner@laptop"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def registered(svc: Dynvm, api: FlaskClient, owner: str, key: paramiko.PKey) -> str:
    """A token of `owner`, who registered `key`."""
    secret, _ = tokens.create(svc.ctx.store, owner)
    assert api.post("/api/v1/keys", json={"key": line(key)}, headers=bearer(secret)).status_code \
        == 201
    return secret


def ready(svc: Dynvm) -> list:
    return svc.ctx.store.leases.find(state=LEASE_READY, os="centos")


def drives(probe: FarmProbe) -> int:
    return sum("dynvm_config_drive" in r["other_config"]
               for x in probe.each_pool() for r in x.VDI.get_all_records().values())


def reported_hostname(probe: FarmProbe, name: str) -> str:
    """What the guest agent of the VM `name` reports as its hostname."""
    (found,) = [x.VM_guest_metrics.get_netbios_name(x.VM.get_guest_metrics(vm))
                for x in probe.each_pool() for vm in x.VM.get_by_name_label(name)]
    return str(found.get("host_name", ""))


@pytest.fixture
def cloud_init_hosts(farm: Farm) -> Ini:
    return Ini.of_farm(farm).set_hosts({"centos.cloudinit": True})


@pytest.fixture
def warm_svc(request: pytest.FixtureRequest, tmp_path: Path, farm: Farm, ssh_port: int,
             clean_farm: dict, cloud_init_hosts: Ini) -> Iterator[Dynvm]:
    """A cloud-init template with a warm pool of one, and the credentials the test names."""
    creds = {"vm.linux.username": USER, "vm.linux.password": request.param} \
        if request.param else {}
    ini = write_ini(tmp_path, farm, extra=AUTH + POOL, hosts=cloud_init_hosts,
                    common={"vm.ssh.port": ssh_port, **creds})
    with dynvm_on(ini) as svc:
        try:
            yield svc
        finally:
            stop_filling(svc)


@pytest.mark.parametrize("warm_svc", ["", "not-the-password"], indirect=True,
                         ids=["no credentials", "credentials the guest refuses"])
def test_a_warm_vm_that_cannot_take_the_keys_is_not_handed_out(
        warm_svc: Dynvm, ssh_port: int) -> None:
    svc, refused = warm_svc, bool(warm_svc.config().linux_login)
    api = create_app(service=svc).test_client()
    key = paramiko.ECDSAKey.generate()
    secret = registered(svc, api, "team-a", key)
    assert api.get("/getavailablecount/centos").status_code == 200
    wait_until(lambda: len(ready(svc)) == 1, timeout=60, what="the pool to fill")
    (warm,) = ready(svc)

    r = api.get(f"/getservers/kw?os=centos&token={secret}")
    assert r.status_code == 200, r.text
    (lease,) = svc.ctx.store.leases.find(name="kw")
    assert lease.vm_uuid != warm.vm_uuid
    assert not svc.ctx.store.history.get(lease.vm_uuid).get("from_warm_pool")
    assert can_log_in(lease.ip, ssh_port, USER, pkey=key)  # from its config drive
    assert not can_log_in(lease.ip, ssh_port, USER, pkey=paramiko.ECDSAKey.generate())
    if refused:  # tried over SSH, refused: never handed out, destroyed
        doc = svc.ctx.store.history.get(warm.vm_uuid)
        assert "giving it its owner's keys failed" in doc["delete_reason"]
        assert "refused" in doc["delete_reason"] and key.get_base64() not in str(doc)
        assert svc.ctx.store.leases.get(warm.vm_uuid) is None
    else:  # never tried: still in the pool for someone without keys
        assert [x.vm_uuid for x in ready(svc)] == [warm.vm_uuid]
    other, _ = tokens.create(svc.ctx.store, "team-b")  # an owner with no key
    wait_until(lambda: len(ready(svc)) == 1, timeout=60, what="the pool to refill")
    plain = api.get(f"/getservers/plain?os=centos&token={other}")
    assert plain.status_code == 200, plain.text
    (mine,) = svc.ctx.store.leases.find(name="plain")
    assert svc.ctx.store.history.get(mine.vm_uuid).get("from_warm_pool") is True
    assert not can_log_in(mine.ip, ssh_port, USER, pkey=key)  # team-a's keys are its own


def test_a_template_without_cloud_init_gets_them_over_ssh_once_built(
        tmp_path: Path, farm: Farm, ssh_port: int, clean_farm: dict, probe: FarmProbe) -> None:
    ini = write_ini(tmp_path, farm, extra=AUTH, common={
        "vm.ssh.port": ssh_port, "vm.linux.username": USER, "vm.linux.password": PASSWORD,
        "vm.password.login": False})
    with dynvm_on(ini) as svc:
        api = create_app(service=svc).test_client()
        secret, _ = tokens.create(svc.ctx.store, "team-a")
        key, other = paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()
        r = api.post("/api/v1/requests", headers=bearer(secret), json={
            "os": "centos", "count": 2, "name": "sshc", "ssh_keys": [line(key)],
            "hostname": "box.ci.example"})
        assert r.status_code == 202, r.json
        done = wait_until(lambda: (b := api.get(f"{r.headers['Location']}?wait=5",
                                                headers=bearer(secret)).json)["state"]
                          != "running" and b, timeout=120, what="the request")
        assert done["state"] == "done", done
        for i, vm in enumerate(done["vms"], 1):
            assert can_log_in(vm["ip"], ssh_port, USER, pkey=key)
            assert not can_log_in(vm["ip"], ssh_port, USER, pkey=other)
            assert not can_log_in(vm["ip"], ssh_port, USER, password=PASSWORD)
            assert reported_hostname(probe, vm["name"]) == f"box{i}.ci.example"
        assert drives(probe) == 0  # no config drive: the template runs no cloud-init
        got = api.get("/api/v1/vms/sshc1", headers=bearer(secret)).json
        assert got["ssh_user"] == USER and got["ssh_port"] == ssh_port
        assert got["ssh_keys"] == done["ssh_keys"] and len(got["ssh_keys"]) == 1


def test_an_os_no_host_can_give_keys_to(tmp_path: Path, farm: Farm, clean_farm: dict,
                                        caplog: pytest.LogCaptureFixture) -> None:
    hosts = Ini.of_farm(farm).set("xenhost1", {"centos.cloudinit": True})  # not xenhost2
    with dynvm_on(write_ini(tmp_path, farm, extra=AUTH, hosts=hosts)) as svc:
        api = create_app(service=svc).test_client()
        key = paramiko.ECDSAKey.generate()
        secret = registered(svc, api, "team-a", key)
        r = api.post("/api/v1/requests", headers=bearer(secret),
                     json={"os": "centos", "name": "nokeys"})
        assert r.status_code == 422, r.json  # its registered keys count too
        assert "xenhost2's centos template runs no cloud-init" in r.json["detail"]
        assert svc.ctx.store.requests.find() == [] and svc.ctx.store.leases.find() == []
        caplog.set_level(logging.INFO, logger="dynvm.guestsetup")
        legacy = api.get(f"/getservers/lgc?os=centos&token={secret}")
        assert legacy.status_code == 200, legacy.text  # as before, without the keys
        assert "team-a's registered keys are not put on its centos VMs" in caplog.text
        assert key.get_base64() not in caplog.text


@pytest.mark.parametrize("warm_svc", [PASSWORD], indirect=True, ids=["credentials"])
def test_a_v1_request_takes_a_warm_vm_given_its_keys_over_ssh(
        warm_svc: Dynvm, ssh_port: int, probe: FarmProbe) -> None:
    svc = warm_svc
    api = create_app(service=svc).test_client()
    key = paramiko.ECDSAKey.generate()
    secret, _ = tokens.create(svc.ctx.store, "team-a")
    assert api.get("/getavailablecount/centos").status_code == 200

    def asked(body: dict) -> tuple[dict, str]:
        """The request once over, and the uuid of the ready VM there was when it was made."""
        wait_until(lambda: len(ready(svc)) == 1, timeout=60, what="the pool to fill")
        (warm,) = ready(svc)
        r = api.post("/api/v1/requests", headers=bearer(secret), json={"os": "centos", **body})
        assert r.status_code == 202, r.json
        done = wait_until(lambda: (b := api.get(f"{r.headers['Location']}?wait=5",
                                                headers=bearer(secret)).json)["state"]
                          != "running" and b, timeout=120, what="the request")
        assert done["state"] == "done", done
        return done, warm.vm_uuid

    done, warm = asked({"name": "v1w", "ssh_keys": [line(key)], "hostname": "w.ci.example"})
    (lease,) = svc.ctx.store.leases.find(name="v1w")
    assert lease.vm_uuid == warm  # handed out, given the key first
    assert svc.ctx.store.history.get(warm).get("from_warm_pool") is True
    assert can_log_in(lease.ip, ssh_port, USER, pkey=key)
    assert reported_hostname(probe, "v1w") == "w.ci.example"
    assert api.get("/api/v1/vms/v1w", headers=bearer(secret)).json["ssh_keys"] \
        == done["ssh_keys"] != []

    # A cloud-config needs a first boot: built cold, the ready VM left for someone else.
    _, warm = asked({"name": "v1c", "user_data": "#cloud-config\npackages: [git]\n"})
    (cold,) = svc.ctx.store.leases.find(name="v1c")
    assert cold.vm_uuid != warm and [x.vm_uuid for x in ready(svc)] == [warm]
