"""A name whose lease outlived its VM is free at once, when the farm proves the VM gone.

`dynvm serve` with no configuration embeds a simulated farm that restarts empty: the
VMs handed out before a restart are gone after it, while their leases are still in the
store. Asking for such a name at once must not answer 409 "already exists" (it did until
the background reconciliation had seen the VM missing on two passes, ~25 s): the farm is
asked, says the VM does not exist, and the lease is closed there and then. When the farm
cannot be asked, the 409 says so and when the name will be free.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynvm.api import create_app
from dynvm.cli.embedded import EMBEDDED_HOSTS, EMBEDDED_POOLS
from dynvm.core import tokens
from dynvm.runtime.bootstrap import build_service
from dynvm.sim import Farm
from dynvm.sim.runner import build_farm
from tests.service.conftest import (
    FAST,
    FarmProbe,
    _release_everything,
    dynvm_on,
    wait_until,
    write_ini,
)


def embedded_farm() -> Farm:
    """A farm as `dynvm serve` embeds it (dynvm.cli.embedded.embedded_farm), at test speed."""
    from tests.service.conftest import SPEED

    return build_farm(EMBEDDED_HOSTS, EMBEDDED_POOLS, 0, [], "127.0.0.1", 0, SPEED, False,
                      shared_sr=True).start()


@pytest.fixture
def restarted(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str], str]]:
    """A service that handed out `keep` (legacy) and `kept` (v1, team-a) and stopped
    without releasing them, then its embedded farm restarted empty: the INI of the new
    farm on the same store, the old VMs' uuids by name, and team-a's token."""
    farm = embedded_farm()
    try:
        ini = write_ini(tmp_path, farm)
        first = build_service(str(ini), timings=FAST)
        try:
            client = create_app(service=first).test_client()
            assert client.get("/getservers/keep?os=centos").status_code == 200
            secret, _ = tokens.create(first.ctx.store, "team-a")
            auth = {"Authorization": f"Bearer {secret}"}
            r = client.post("/api/v1/requests", json={"os": "centos", "name": "kept"},
                            headers=auth)
            assert r.status_code == 202, r.text
            wait_until(lambda: client.get(f"/api/v1/requests/{r.json['id']}", headers=auth)
                       .json["state"] == "done", what="kept to be built")
            old = {lease.name: lease.vm_uuid for lease in first.ctx.store.leases.find()}
            assert set(old) == {"keep", "kept"}
        finally:
            first.close()  # stopped, as Ctrl-C stops `make run`: the VMs keep their leases
    finally:
        farm.stop()  # ... and the embedded farm stops with it
    farm = embedded_farm()  # the next `make run`: a new, empty farm
    try:
        yield write_ini(tmp_path, farm), old, secret
    finally:
        farm.stop()


def test_names_of_vms_the_restarted_farm_lost_are_free_at_once(
        restarted: tuple[Path, dict[str, str], str]) -> None:
    ini, old, secret = restarted
    # No background duties: no reconciliation pass may close the leases first, the
    # request alone must tell.
    svc = build_service(str(ini), timings=FAST, background=False)
    try:
        store = svc.ctx.store
        assert {lease.name for lease in store.leases.find()} == {"keep", "kept"}
        client = create_app(service=svc).test_client()

        r = client.get("/getservers/keep?os=centos")  # legacy, at once
        assert r.status_code == 200, r.text
        assert len(json.loads(r.text)) == 1

        auth = {"Authorization": f"Bearer {secret}"}
        r = client.post("/api/v1/requests", json={"os": "centos", "name": "kept"}, headers=auth)
        assert r.status_code == 202, r.text  # v1, at once
        wait_until(lambda: client.get(f"/api/v1/requests/{r.json['id']}", headers=auth)
                   .json["state"] == "done", what="kept to be built again")

        leases = {lease.name: lease.vm_uuid for lease in store.leases.find()}
        assert set(leases) == {"keep", "kept"}
        assert not set(leases.values()) & set(old.values())  # new VMs, new leases
        for name, vm_uuid in old.items():  # the lost VMs' documents are closed, saying why
            doc = store.history.get(vm_uuid)
            assert doc is not None and doc["state"] == "deleted", (name, doc)
            assert "does not exist" in doc["delete_reason"], doc
    finally:
        _release_everything(svc)
        svc.close()


def test_a_name_whose_farm_does_not_answer_says_why_and_when(
        tmp_path: Path, farm: Farm, probe: FarmProbe, clean_farm: dict) -> None:
    with dynvm_on(write_ini(tmp_path, farm)) as svc:
        svc.background.stop()
        client = create_app(service=svc).test_client()
        assert client.get("/getservers/held?os=centos&xhostref=2").status_code == 200
        secret, _ = tokens.create(svc.ctx.store, "team-h")
        auth = {"Authorization": f"Bearer {secret}"}
        master = farm.pools[1].master.name_label
        farm.set_unreachable(master, True)
        try:
            r = client.get("/getservers/held?os=centos")
            assert r.status_code == 409, r.text
            for words in ("VM held", "xenhost2", "does not answer",
                          "cannot tell whether it still exists", "ask again once xenhost2"):
                assert words in r.text, r.text
            r = client.post("/api/v1/requests", json={"os": "centos", "name": "held"},
                            headers=auth)
            assert r.status_code == 409 and "does not answer" in r.json["detail"], r.text
        finally:
            farm.set_unreachable(master, False)
        # The farm answers again: the VM is there, so the name is taken, and said so.
        r = client.get("/getservers/held?os=centos")
        assert r.status_code == 409, r.text
        assert "VM held already exists" in r.text and "xenhost2" in r.text, r.text
        assert [v["name_label"] for v in probe.vms_named("held")] == ["held"]
        assert client.get("/releaseservers/held").status_code == 200
