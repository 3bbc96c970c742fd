"""Every request record says what really happened: refusals, failed refills, interrupted
builds, VMs released mid-build and cancels, in words a person understands.

dynvm runs in-process on the simulator over real XML-RPC; the records are read the way
people read them, through `/ui/api/requests` and `/api/v1/requests/{id}`.
"""

from __future__ import annotations

from dataclasses import replace

from dynvm.api import create_app
from dynvm.core import asyncreq, progress
from tests.service.conftest import wait_until
from tests.service.test_v1_api import api, bearer, finish, svc, tok  # noqa: F401 (fixtures)
from tests.service.test_warm_pool import warm  # noqa: F401 (fixture)


def _recent(api, pred, headers: dict[str, str] | None = None) -> dict:  # noqa: F811
    """The finished request the dashboard lists that `pred` picks (waits for it)."""
    def pick():
        body = api.get("/ui/api/requests?hours=1", headers=headers).json
        return next((r for r in body["recent"] if pred(r)), None)
    return wait_until(pick, timeout=60, what="the request among the finished ones")


def test_a_quota_refusal_is_refused_and_holds_no_vm(api, tok) -> None:  # noqa: F811
    r = api.post("/api/v1/requests", json={"os": "centos", "count": 50},
                 headers=bearer(tok["team-q"]))
    assert r.status_code == 429, r.json
    rec = _recent(api, lambda r: r["count"] == 50, bearer(tok["ops"]))
    assert rec["state"] == "refused", rec
    assert rec["vms"] == []  # none was reserved, none will be built
    assert rec["reason"] == r.json["detail"]  # the reason it was given, in full


def test_a_legacy_request_without_room_is_refused(api, tok) -> None:  # noqa: F811
    r = api.get("/getservers/nope?os=centos&count=100", headers=bearer(tok["team-a"]))
    assert r.status_code == 503, r.text
    rid = r.headers["X-Dynvm-Request-Id"]
    rec = _recent(api, lambda r: r["id"] == rid, bearer(tok["team-a"]))
    assert rec["state"] == "refused" and rec["vms"] == []
    assert rec["reason"].startswith("No capacity is available!"), rec


def test_a_refill_whose_vms_all_failed_says_failed_and_why(warm, farm) -> None:  # noqa: F811
    c = create_app(service=warm).test_client()
    farm.fail_next("VM.clone", 2, "SR_BACKEND_FAILURE_44", ["", "no space left on the SR", ""])
    try:
        assert c.get("/getavailablecount/centos").status_code == 200  # starts the filler
        rec = _recent(c, lambda r: r["warm_pool"])
    finally:
        farm.clear_faults()
    assert rec["state"] == "failed", rec
    assert rec["reason"].startswith("2 of 2 warm VM(s) could not be built"), rec
    assert rec["reason"].count("SR_BACKEND_FAILURE_44") == 2, rec
    assert {v["step"] for v in rec["vms"]} == {"failed"}
    assert all("SR_BACKEND_FAILURE_44" in v["reason"] for v in rec["vms"]), rec["vms"]


def test_an_interrupted_request_leaves_no_vm_waiting_for_ip(api, svc, tok) -> None:  # noqa: F811
    """A process that dies mid-build leaves its steps as they were; reconciliation says."""
    dead = replace(svc.ctx, instance="gone-host:4242:dead01")
    rec = asyncreq.submit(dead, asyncreq.NewRequest(owner="team-a", os="centos", count=2),
                          start=False)
    for name in rec.detail["names"]:  # where the dead builder had got to
        progress.note(dead, rec.id, name, progress.Step.WAITING_IP)
    h = bearer(tok["team-a"])
    body = wait_until(lambda: (lambda b: b if b["state"] != "running" else None)(
        api.get(f"/api/v1/requests/{rec.id}?wait=2", headers=h).json),
        timeout=60, what="reconciliation")
    assert body["state"] == "interrupted"
    assert {v["step"] for v in body["vms"]} == {"interrupted"}, body["vms"]
    for v in body["vms"]:
        assert "gone-host:4242:dead01" in v["reason"] and "stopped" in v["reason"], v
    assert "2 VM(s) it was still building" in body["error"], body
    listed = _recent(api, lambda r: r["id"] == rec.id, h)
    assert listed["reason"] == body["error"]  # the dashboard shows the same, in full


def test_a_vm_released_while_being_built_says_released(api, svc, tok, farm,  # noqa: F811
                                                       clean_farm) -> None:
    h = bearer(tok["team-a"])
    farm.exhaust_dhcp(on=True)  # the guest never gets an address: the build waits for one
    try:
        r = api.post("/api/v1/requests", json={"os": "centos", "name": "midway"}, headers=h)
        assert r.status_code == 202, r.json
        loc = r.headers["Location"]
        wait_until(lambda: api.get(loc, headers=h).json["vms"][0]["step"] == "waiting for IP",
                   timeout=60, what="the build to wait for an address")
        gone = api.delete("/api/v1/vms/midway", headers=h)
        assert gone.status_code == 200, gone.json
        body = finish(api, loc, h)
    finally:
        farm.exhaust_dhcp(on=False)
    vm = body["vms"][0]
    assert vm["step"] == "failed"
    assert "released while it was being built" in vm["reason"], vm
    assert "Halted" not in vm["reason"] and "not running" not in vm["reason"], vm
    docs = [d for d in svc.ctx.store.history.recent() if d["name"] == "midway"]
    assert len(docs) == 1 and docs[0]["state"] == "deleted", docs  # the release's record
    assert docs[0]["delete_reason"] == "released by team-a"


def test_a_cancel_says_who_and_what_it_destroyed(api, svc, tok, clean_farm) -> None:  # noqa: F811
    h = bearer(tok["team-a"])
    r = api.post("/api/v1/requests", json={"os": "centos", "count": 2, "name": "cnl"},
                 headers=h)
    assert r.status_code == 202
    body = finish(api, r.headers["Location"], h)
    assert body["state"] == "done"
    c = api.delete(r.headers["Location"], headers=h)
    assert c.status_code == 200 and c.json["state"] == "cancelled"
    assert c.json["error"] == ("cancelled by team-a after it was done: 2 VM(s) destroyed "
                               "with their disks")
    assert {v["step"] for v in c.json["vms"]} == {"cancelled"}
    assert all(v["reason"].startswith("cancelled by team-a after it was ready")
               for v in c.json["vms"]), c.json["vms"]
    page = api.get("/", headers=h).text
    assert c.json["error"] in page  # the whole reason on the page, not a cut
