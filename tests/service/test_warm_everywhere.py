"""Every way to ask for VMs takes ready warm VMs first: legacy, v1, the CLI (through v1).

One pool of ready VMs, and one code path (`dynvm.core.obtain`) that claims
them before any room is reserved to build the rest; a request that cannot be
held in full gives the VMs it claimed back to the pool, untouched.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server

from dynvm.api import create_app
from dynvm.cli import main
from dynvm.core import tokens
from dynvm.core.services import Dynvm
from dynvm.core.store import LEASE_READY
from dynvm.runtime.bootstrap import build_service
from dynvm.sim import Farm
from tests.service.conftest import FAST, _release_everything, wait_until, write_ini

POOL = """
[pool centos]
ready=2
ready.ttl.minutes=60

[quota team-q]
vms=2

[auth]
legacy=mutating
"""


@pytest.fixture
def warm(tmp_path: Path, farm: Farm, clean_farm: dict) -> Iterator[Dynvm]:
    svc = build_service(str(write_ini(tmp_path, farm, extra=POOL)), timings=FAST)
    try:
        svc.legacy.available("centos", frozenset(), False)  # starts the filler
        wait_until(lambda: len(ready(svc)) == 2, timeout=60, what="the pool to fill")
        yield svc
    finally:
        svc.background.stop()
        wait_until(lambda: svc.background.filler.inflight() == 0, timeout=30,
                   what="warm builds to finish")
        _release_everything(svc)
        svc.close()


def ready(svc: Dynvm) -> list:
    return svc.ctx.store.leases.find(state=LEASE_READY, os="centos")


def from_pool(svc: Dynvm, names: list[str]) -> list[bool]:
    """For each name, whether its VM came from the warm pool (its history says so)."""
    out = []
    for n in names:
        (lease,) = svc.ctx.store.leases.find(name=n)
        out.append(bool(svc.ctx.store.history.get(lease.vm_uuid).get("from_warm_pool")))
    return out


def finish(api, location: str, h: dict[str, str]) -> dict:
    def done():
        body = api.get(location + "?wait=5", headers=h).json
        return body if body["state"] != "running" else None
    return wait_until(done, timeout=120, what="the request to finish")


def test_a_v1_request_takes_ready_vms_first_and_builds_only_the_rest(warm) -> None:
    pool = {lease.vm_uuid for lease in ready(warm)}
    secret, _ = tokens.create(warm.ctx.store, "team-a")
    h = {"Authorization": f"Bearer {secret}"}
    api = create_app(service=warm).test_client()
    r = api.post("/api/v1/requests", json={"os": "centos", "count": 3, "name": "vw"}, headers=h)
    assert r.status_code == 202, r.json
    body = finish(api, r.headers["Location"], h)
    assert body["state"] == "done" and all(v["ip"] for v in body["vms"])
    assert from_pool(warm, ["vw1", "vw2", "vw3"]) == [True, True, False]
    leases = [warm.ctx.store.leases.find(name=n)[0] for n in ("vw1", "vw2")]
    assert {lease.vm_uuid for lease in leases} == pool
    assert {lease.owner for lease in leases} == {"team-a"}
    assert {v["step"] for v in body["vms"]} == {"ready"}


def test_a_warm_vm_counts_against_the_owners_quota(warm) -> None:
    secret, _ = tokens.create(warm.ctx.store, "team-q")
    h = {"Authorization": f"Bearer {secret}"}
    api = create_app(service=warm).test_client()
    r = api.post("/api/v1/requests", json={"os": "centos", "count": 2, "name": "qw"}, headers=h)
    assert r.status_code == 202, r.json
    assert finish(api, r.headers["Location"], h)["state"] == "done"
    assert from_pool(warm, ["qw1", "qw2"]) == [True, True]
    wait_until(lambda: len(ready(warm)) == 2, timeout=60, what="the pool to refill")
    over = api.post("/api/v1/requests", json={"os": "centos"}, headers=h)
    assert over.status_code == 429 and over.json["used"] == 2, over.json
    legacy = api.get(f"/getservers/qx?os=centos&token={secret}")
    assert legacy.status_code == 429, legacy.text
    assert len(ready(warm)) == 2  # none was taken for a request over its quota
    assert api.delete("/api/v1/vms/qw1", headers=h).status_code == 200
    legacy = api.get(f"/getservers/qx?os=centos&token={secret}")
    assert legacy.status_code == 200, legacy.text
    assert from_pool(warm, ["qx"]) == [True]  # a token's legacy request takes one too


def test_a_request_that_cannot_be_held_gives_its_ready_vms_back(warm, probe) -> None:
    pool = {lease.vm_uuid for lease in ready(warm)}
    fits = warm.legacy.available("centos", frozenset(), False).count
    secret, _ = tokens.create(warm.ctx.store, "team-a")
    api = create_app(service=warm).test_client()
    r = api.get(f"/getservers/toomany?os=centos&count={fits + 1}&token={secret}")
    assert r.status_code == 503, r.text
    assert {lease.vm_uuid for lease in ready(warm)} == pool  # given back, untouched
    # While the request held them the pool looked empty, and the filler may have begun
    # replacements: once its builds are done, the farm's ready VMs are the store's.
    def agree() -> bool:
        return warm.background.filler.inflight() == 0 and {
            lease.name for lease in ready(warm)} == {
            v["name_label"] for v in probe.vms_named("dynvm-ready-")}
    wait_until(agree, timeout=60, what="the farm's ready VMs to be the store's")
    assert warm.ctx.store.reservations.live() == [] or all(
        r.request_id.startswith("warm-") for r in warm.ctx.store.reservations.live())


def test_the_cli_gets_a_ready_vm(warm) -> None:
    secret, _ = tokens.create(warm.ctx.store, "team-c")
    server = make_server("127.0.0.1", 0, create_app(service=warm), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {"DYNVM_URL": f"http://127.0.0.1:{server.server_port}", "DYNVM_TOKEN": secret,
               "DYNVM_CLIENT_CONFIG": "/nonexistent"}
        r = CliRunner().invoke(main, ["get", "centos", "--name", "cw", "--wait", "--json"],
                               env=env)
        assert r.exit_code == 0, r.output
        assert json.loads(r.output)["state"] == "done"
    finally:
        server.shutdown()
        thread.join()
    assert from_pool(warm, ["cw"]) == [True]
