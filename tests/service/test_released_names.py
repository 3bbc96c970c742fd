"""A name released before a restart is free again at once after it (legacy and v1).

A restart must not leave such a name answering 409 "already exists" (it was
reported to for about 25 s): the new service's first request for it is taken.
"""

from __future__ import annotations

import json
from pathlib import Path

from flask.testing import FlaskClient

from dynvm.api import create_app
from dynvm.core import tokens
from dynvm.sim import Farm
from tests.service.conftest import FarmProbe, dynvm_on, wait_until, write_ini


def test_name_released_before_a_restart_is_free_at_once(tmp_path: Path, farm: Farm,
                                                          probe: FarmProbe,
                                                          clean_farm: dict) -> None:
    ini = write_ini(tmp_path, farm)
    with dynvm_on(ini) as first:
        client = create_app(service=first).test_client()
        r = client.get("/getservers/again?os=centos")
        assert r.status_code == 200, r.text
        assert client.get("/releaseservers/again").status_code == 200
        assert probe.vms_named("again") == []
    with dynvm_on(ini) as second:  # the same store and farm, a new process's service
        client = create_app(service=second).test_client()
        r = client.get("/getservers/again?os=centos")
        assert r.status_code == 200, r.text
        assert len(json.loads(r.text)) == 1
        assert [v["name_label"] for v in probe.vms_named("again")] == ["again"]
        assert client.get("/releaseservers/again").status_code == 200


def get_and_release(client: FlaskClient, auth: dict[str, str], probe: FarmProbe) -> None:
    """POST a request for `again` (accepted, not refused as in use), see it built, DELETE it."""
    r = client.post("/api/v1/requests", json={"os": "centos", "name": "again"}, headers=auth)
    assert r.status_code == 202, r.text
    rid = r.json["id"]
    wait_until(lambda: client.get(f"/api/v1/requests/{rid}", headers=auth)
               .json["state"] == "done", what="the VM to be built")
    assert [v["name_label"] for v in probe.vms_named("again")] == ["again"]
    r = client.delete("/api/v1/vms/again", headers=auth)
    assert r.status_code == 200, r.text
    assert probe.vms_named("again") == []


def test_v1_name_released_before_a_restart_is_free_at_once(tmp_path: Path, farm: Farm,
                                                             probe: FarmProbe,
                                                             clean_farm: dict) -> None:
    ini = write_ini(tmp_path, farm)
    with dynvm_on(ini) as first:
        secret, _ = tokens.create(first.ctx.store, "team-a")
        auth = {"Authorization": f"Bearer {secret}"}
        get_and_release(create_app(service=first).test_client(), auth, probe)
    with dynvm_on(ini) as second:  # the same store and farm, a new process's service
        get_and_release(create_app(service=second).test_client(), auth, probe)
