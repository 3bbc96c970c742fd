"""The v1 API against the simulator: asynchronous requests, steps, cancel, ownership, quota."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from dynvm.api import create_app
from dynvm.core import tokens
from dynvm.core.services import Dynvm
from dynvm.runtime.bootstrap import build_service
from dynvm.sim import Farm
from tests.service.conftest import FAST, _release_everything, wait_until, write_ini

WRITES = ("VM.clone", "VM.provision", "VM.start", "VM.destroy", "VM.set_other_config",
          "VM.add_to_other_config", "VDI.destroy", "VM.hard_shutdown", "Async.VM.clone",
          "Async.VM.provision", "Async.VM.start", "Async.VM.start_on", "VM.start_on")

ACCESS = """
[auth]
legacy=mutating
fail.limit=3
fail.window.secs=600

[quota team-q]
vms=2
"""


@pytest.fixture
def svc(tmp_path: Path, farm: Farm, clean_farm: dict) -> Iterator[Dynvm]:
    s = build_service(str(write_ini(tmp_path, farm, extra=ACCESS)), timings=FAST)
    try:
        yield s
    finally:
        _release_everything(s)
        s.close()


@pytest.fixture
def api(svc: Dynvm) -> FlaskClient:
    return create_app(service=svc).test_client()


@pytest.fixture
def tok(svc: Dynvm) -> dict[str, str]:
    """Tokens of team-a, team-b, team-q (quota 2 VMs) and an admin."""
    out = {}
    for owner, admin in (("team-a", False), ("team-b", False), ("team-q", False), ("ops", True)):
        out[owner], _ = tokens.create(svc.ctx.store, owner, admin=admin)
    return out


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def writes(farm: Farm) -> int:
    counts = farm.call_counts()
    return sum(n for per_host in counts.values() for m, n in per_host.items()
               if any(m.endswith(w) or m == w for w in WRITES))


def finish(api: FlaskClient, location: str, h: dict[str, str]) -> dict:
    def done():
        body = api.get(location + "?wait=5", headers=h).json
        return body if body["state"] != "running" else None
    return wait_until(done, timeout=120, what="the request to finish")


def test_request_answers_202_and_steps_advance(api, svc, tok) -> None:
    seen: dict[str, list[str]] = defaultdict(list)
    real = svc.ctx.store.requests.note_vm

    def spy(request_id: str, name: str, entry: dict) -> None:  # watch every step noted
        seen[name].append(entry["step"])
        real(request_id, name, entry)
    svc.ctx.store.requests.note_vm = spy
    h = bearer(tok["team-a"])
    r = api.post("/api/v1/requests", json={"os": "centos", "count": 3, "name": "st"}, headers=h)
    assert r.status_code == 202, r.json
    assert r.headers["Location"] == f"/api/v1/requests/{r.json['id']}"
    assert [v["step"] for v in r.json["vms"]] == ["reserved"] * 3
    body = finish(api, r.headers["Location"], h)
    assert body["state"] == "done" and body["owner"] == "team-a"
    want = ["reserved", "cloning", "provisioning", "starting", "waiting for IP", "ready"]
    assert dict(seen) == {"st1": want, "st2": want, "st3": want}
    ips = {v["name"]: v["ip"] for v in body["vms"]}
    vms = api.get("/api/v1/vms", headers=h).json["vms"]
    assert {v["name"]: v["ip"] for v in vms} == ips and all(ips.values())
    assert {v["owner"] for v in vms} == {"team-a"}
    for name in ips:
        gone = api.delete(f"/api/v1/vms/{name}", headers=h)
        assert gone.status_code == 200 and gone.json["state"] == "released", gone.json
        assert gone.json["name"] == name and gone.json["owner"] == "team-a"
    assert svc.ctx.store.leases.find() == []


def test_cancel_mid_build_leaves_nothing(api, svc, tok, farm, probe, clean_farm) -> None:
    h = bearer(tok["team-a"])
    hold = farm.hold("VM.provision")  # every build waits there, a clone made, until released
    try:
        r = api.post("/api/v1/requests", json={"os": "centos", "count": 4, "name": "cx"},
                     headers=h)
        assert r.status_code == 202, r.json
        loc = r.headers["Location"]
        assert hold.reached.wait(60), "no build reached VM.provision"
        c = api.delete(loc, headers=h)
        assert c.status_code == 202 and c.json["cancelling"] is True
    finally:
        hold.release()
    body = finish(api, loc, h)
    assert body["state"] == "cancelled"
    assert {v["step"] for v in body["vms"]} == {"cancelled"}
    assert all(v["reason"].startswith("cancelled by team-a") for v in body["vms"]), body
    assert body["error"].startswith("cancelled by team-a after "), body
    rid = body["id"]
    assert probe.vms_named("cx") == []
    assert [r for r in svc.ctx.store.reservations.live() if r.request_id == rid] == []
    assert svc.ctx.store.leases.find() == []
    assert all(svc.ctx.store.locks.holder("name:" + n) is None for n in body["names"])
    assert probe.state() == clean_farm  # no VM, no disk, no memory held


def test_team_b_cannot_see_release_or_extend_team_a_vms(api, tok) -> None:
    a, b, admin = bearer(tok["team-a"]), bearer(tok["team-b"]), bearer(tok["ops"])
    r = api.post("/api/v1/requests", json={"os": "centos", "name": "own"}, headers=a)
    body = finish(api, r.headers["Location"], a)
    assert body["state"] == "done"
    assert api.get("/api/v1/vms", headers=b).json["vms"] == []
    assert api.get("/api/v1/vms?owner=team-a", headers=b).json["vms"] == []
    for call in (lambda: api.get("/api/v1/vms/own", headers=b),
                 lambda: api.delete("/api/v1/vms/own", headers=b),
                 lambda: api.post("/api/v1/vms/own/extend", json={"minutes": 5}, headers=b),
                 lambda: api.get(r.headers["Location"], headers=b),
                 lambda: api.delete(r.headers["Location"], headers=b)):
        resp = call()
        assert resp.status_code == 404, resp.json
        assert resp.mimetype == "application/problem+json"
    assert api.get("/api/v1/vms/own", headers=a).json["owner"] == "team-a"
    assert [v["name"] for v in api.get("/api/v1/vms", headers=admin).json["vms"]] == ["own"]
    ext = api.post("/api/v1/vms/own/extend", json={"minutes": 30}, headers=admin)
    assert ext.status_code == 200
    too_long = api.post("/api/v1/vms/own/extend", json={"minutes": 721}, headers=a)
    assert too_long.status_code == 400 and "720" in too_long.json["detail"]
    assert api.delete("/api/v1/vms/own", headers=admin).status_code == 200
    assert api.get("/api/v1/vms/own", headers=a).status_code == 404


def test_legacy_mutating_needs_a_token_and_respects_owners(api, svc, tok, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    assert api.get("/getservers/lg?os=centos").status_code == 401
    assert api.get("/getavailablecount/centos").status_code == 200  # reads stay open
    r = api.get(f"/getservers/lg?os=centos&token={tok['team-a']}")
    assert r.status_code == 200, r.text
    (lease,) = svc.ctx.store.leases.find(name="lg")
    assert lease.owner == "team-a"
    b = bearer(tok["team-b"])
    assert api.get("/releaseservers/lg", headers=b).status_code == 403
    assert api.get(f"/setexpiry/lg/30?token={tok['team-b']}").status_code == 403
    assert svc.ctx.store.leases.find(name="lg")[0].state == "active"
    assert api.get("/setexpiry/lg/30", headers=bearer(tok["team-a"])).status_code == 200
    assert api.get(f"/releaseservers/lg?token={tok['ops']}").status_code == 200
    assert svc.ctx.store.leases.find(name="lg") == []
    docs = [d for d in svc.ctx.store.history.recent() if d.get("name") == "lg"]
    assert docs and docs[0]["owner"] == "team-a"
    for secret in tok.values():  # never in a log line, a history document or an answer
        assert secret not in caplog.text
        assert all(secret not in str(d) for d in svc.ctx.store.history.recent())


def test_quota_is_refused_with_limit_and_usage(api, tok) -> None:
    q = bearer(tok["team-q"])
    over = api.post("/api/v1/requests", json={"os": "centos", "count": 3}, headers=q)
    assert over.status_code == 429
    assert over.json["limit"] == "vms" and over.json["quota"] == 2 and over.json["used"] == 0
    assert "vms limit 2" in over.json["detail"]
    ok = api.post("/api/v1/requests", json={"os": "centos", "count": 2, "name": "qq"}, headers=q)
    assert ok.status_code == 202
    usage = api.get("/api/v1/quota", headers=q).json
    assert usage["limits"]["vms"] == 2 and usage["usage"]["vms"] == 2
    again = api.post("/api/v1/requests", json={"os": "centos"}, headers=q)
    assert again.status_code == 429 and again.json["used"] == 2
    assert finish(api, ok.headers["Location"], q)["state"] == "done"
    assert api.delete("/api/v1/vms/qq1", headers=q).status_code == 200
    assert api.get("/api/v1/quota", headers=q).json["usage"]["vms"] == 1


def test_bad_input_is_refused_before_xenapi(api, tok, farm) -> None:
    h = bearer(tok["team-a"])
    before = writes(farm)
    cases = [
        ({"os": "centos", "count": 0}, 422), ({"os": "centos", "bogus": 1}, 422),
        ({"os": "centos", "count": "3"}, 422), ({"os": "nope"}, 400),
        ({"os": "centos", "host": 99}, 400), ({"os": "centos", "count": 90}, 503),
    ]
    for body, status in cases:
        r = api.post("/api/v1/requests", json=body, headers=h)
        assert r.status_code == status, (body, r.json)
        assert r.mimetype == "application/problem+json" and r.json["status"] == status
    assert api.post("/api/v1/requests", data="nope", headers=h).status_code == 400
    assert api.get("/api/v1/vms?colour=red", headers=h).status_code == 422
    assert api.put("/api/v1/vms", headers=h).status_code == 405
    assert api.get("/api/v1/nowhere", headers=h).json["status"] == 404
    assert writes(farm) == before


def test_failed_authentication_is_rate_limited(api, tok) -> None:
    for _ in range(3):
        assert api.get("/api/v1/vms", headers=bearer("dvm_wrong")).status_code == 401
    r = api.get("/api/v1/vms", headers=bearer("dvm_wrong"))
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert "dvm_wrong" not in r.text


def test_openapi_document_and_docs_page(api) -> None:
    from dynvm.api.v1.models import RequestIn

    doc = api.get("/api/v1/openapi.json").json
    assert doc["openapi"] == "3.1.0"
    ops = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert {("POST", "/api/v1/requests"), ("GET", "/api/v1/requests/{request_id}"),
            ("DELETE", "/api/v1/requests/{request_id}"), ("GET", "/api/v1/vms"),
            ("GET", "/api/v1/vms/{name}"), ("DELETE", "/api/v1/vms/{name}"),
            ("POST", "/api/v1/vms/{name}/extend"), ("GET", "/api/v1/capacity"),
            ("GET", "/api/v1/hosts"), ("GET", "/api/v1/history"),
            ("GET", "/api/v1/quota")} <= ops
    schema = doc["components"]["schemas"]["RequestIn"]
    assert schema["properties"]["count"] == RequestIn.model_json_schema()["properties"]["count"]
    page = api.get("/api/v1/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "openapi.json" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
    assert "<script>" not in page.text and "<style>" not in page.text  # the CSP allows neither
    for asset in ("/ui/static/apidocs.js", "/ui/static/apidocs.css"):
        assert asset in page.text and api.get(asset).status_code == 200


def test_capacity_hosts_history(api, tok, farm) -> None:
    h = bearer(tok["team-a"])
    cap = api.get("/api/v1/capacity", headers=h).json["capacity"]
    assert {c["os"] for c in cap} >= {"centos", "windows"}
    assert all("default" in c["by_label"] for c in cap)
    hosts = api.get("/api/v1/hosts", headers=h).json["hosts"]
    assert [x["ref"] for x in hosts] == [1, 2] and all(x["reachable"] for x in hosts)
    r = api.post("/api/v1/requests", json={"os": "centos", "name": "hist"}, headers=h)
    assert finish(api, r.headers["Location"], h)["state"] == "done"
    api.delete("/api/v1/vms/hist", headers=h)
    items = api.get("/api/v1/history?os=centos", headers=h).json["items"]
    assert [d["name"] for d in items if d["name"] == "hist"] == ["hist"]
    assert all(d["owner"] == "team-a" for d in items)
    other = api.get("/api/v1/history", headers=bearer(tok["team-b"])).json["items"]
    assert all(d["owner"] == "team-b" for d in other)




def test_a_dead_builders_request_is_reconciled(api, svc, tok) -> None:
    """Accepted (room held, recorded) by a process that died before building: cleaned up."""
    from dataclasses import replace

    from dynvm.core import asyncreq

    dead = replace(svc.ctx, instance="gone-host:4242:dead01")
    rec = asyncreq.submit(dead, asyncreq.NewRequest(owner="team-a", os="centos", count=2),
                          start=False)
    assert [r for r in svc.ctx.store.reservations.live() if r.request_id == rec.id]
    h = bearer(tok["team-a"])
    body = wait_until(lambda: (lambda b: b if b["state"] != "running" else None)(
        api.get(f"/api/v1/requests/{rec.id}?wait=2", headers=h).json),
        timeout=60, what="reconciliation")
    assert body["state"] == "interrupted"
    assert [r for r in svc.ctx.store.reservations.live() if r.request_id == rec.id] == []


def test_legacy_all_needs_a_token_everywhere(tmp_path, farm, clean_farm) -> None:
    s = build_service(str(write_ini(tmp_path, farm, extra="\n[auth]\nlegacy=all\n")),
                      timings=FAST)
    try:
        c = create_app(service=s).test_client()
        secret, _ = tokens.create(s.ctx.store, "team-a")
        assert c.get("/getavailablecount/centos").status_code == 401
        assert c.get("/showall").status_code == 401
        assert c.get(f"/showall?token={secret}").status_code == 200
        assert c.get("/getavailablecount/centos", headers=bearer(secret)).status_code == 200
        assert c.get("/health").status_code in (200, 503)  # operator routes stay open
    finally:
        s.close()


def test_legacy_request_with_a_token_counts_against_the_quota(api, svc, tok, farm) -> None:
    before = writes(farm)
    r = api.get(f"/getservers/lq?os=centos&count=3&token={tok['team-q']}")
    assert r.status_code == 429
    assert r.text.startswith("Error: quota of team-q exceeded: vms limit 2, in use 0, asked 3")
    assert writes(farm) == before and svc.ctx.store.reservations.live() == []
    ok = api.get(f"/getservers/lq?os=centos&count=2&token={tok['team-q']}")
    assert ok.status_code == 200, ok.text
    assert {lease.owner for lease in svc.ctx.store.leases.find()} == {"team-q"}
    assert api.get("/api/v1/quota", headers=bearer(tok["team-q"])).json["usage"]["vms"] == 2


def test_requests_in_flight_are_listed_for_their_owner(api, tok, farm) -> None:
    h = bearer(tok["team-a"])
    hold = farm.hold("VM.provision")  # the build waits at provisioning until released
    try:
        r = api.post("/api/v1/requests", json={"os": "centos", "count": 2, "name": "fl"},
                     headers=h)
        assert r.status_code == 202, r.json
        rid = r.json["id"]
        mine = api.get("/api/v1/requests", headers=h)
        assert mine.status_code == 200
        assert [x["id"] for x in mine.json["requests"]] == [rid]
        assert mine.json["requests"][0]["state"] == "running"
        assert api.get("/api/v1/requests", headers=bearer(tok["team-b"])).json == {
            "requests": []}
        assert rid in [x["id"] for x in api.get("/api/v1/requests",
                                                  headers=bearer(tok["ops"])).json["requests"]]
        assert api.get("/api/v1/requests").status_code == 401
    finally:
        hold.release()
    assert finish(api, r.headers["Location"], h)["state"] == "done"
    assert api.get("/api/v1/requests", headers=h).json == {"requests": []}
    for name in ("fl1", "fl2"):
        api.delete(f"/api/v1/vms/{name}", headers=h)


def test_a_label_no_host_carries_is_named_in_a_v1_refusal(api, tok) -> None:
    r = api.post("/api/v1/requests", json={"os": "centos", "count": 2, "labels": ["perf"]},
                 headers=bearer(tok["team-a"]))
    assert r.status_code >= 400, r.json
    assert "no host carries the label perf (no host has labels)" in r.json["detail"], r.json
