"""The queue through the service and the simulator: a request that fits its owner's quota
but finds no room waits (202 `queued`) and is served as room frees, once."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from dynvm.api import create_app
from dynvm.core import tokens
from dynvm.core.dispatch import Dispatcher, Outcome
from dynvm.core.getservers import NAME_LOCK
from dynvm.core.records import Reservation
from dynvm.core.services import Dynvm
from dynvm.runtime.bootstrap import build_service
from dynvm.sim import Farm
from testbed.inis import Ini
from tests.service.conftest import FAST, _release_everything, dynvm_on, wait_until, write_ini
from tests.service.test_v1_api import bearer

# Two pools of two member hosts, one centos VM per member: the farm holds four.
SMALL = """
[quota team-q]
vms=2

[quota team-p]
priority.max=5

[queue]
max_wait_minutes=30
max_wait_minutes.max=120
"""


def small_ini(tmp: Path, farm: Farm) -> Path:
    return write_ini(tmp, farm, extra=SMALL,
                     hosts=Ini.of_farm(farm).set_hosts({"host.vms.max.centos": 1}))


@pytest.fixture
def svc(tmp_path: Path, farm: Farm, clean_farm: dict) -> Iterator[Dynvm]:
    with dynvm_on(small_ini(tmp_path, farm)) as s:
        yield s
        s.background.stop()  # nothing more is served from the queue
        wait_until(lambda: not s.ctx.store.requests.find("running"), timeout=120,
                   what="every build to end before the store is closed")


@pytest.fixture
def api(svc: Dynvm) -> FlaskClient:
    return create_app(service=svc).test_client()


@pytest.fixture
def tok(svc: Dynvm) -> dict[str, dict[str, str]]:
    """The headers of a token of each owner."""
    return {owner: bearer(tokens.create(svc.ctx.store, owner)[0])
            for owner in ("team-a", "team-b", "team-q", "team-p")}


def settle(api: FlaskClient, location: str, h: dict[str, str],
           until: frozenset[str] = frozenset({"running", "queued"})) -> dict:
    """The request once it has left the states in `until` (long polls, no sleeping)."""
    def left():
        body = api.get(location + "?wait=5", headers=h).json
        return body if body["state"] not in until else None
    return wait_until(left, timeout=120, what=f"the request to leave {sorted(until)}")


def fill(api: FlaskClient, h: dict[str, str], n: int = 4, name: str = "full") -> list[str]:
    """Take the whole farm; the names of the VMs."""
    r = api.post("/api/v1/requests", json={"os": "centos", "count": n, "name": name},
                 headers=h)
    assert r.status_code == 202 and r.json["state"] == "running", r.json
    body = settle(api, r.headers["Location"], h)
    assert body["state"] == "done", body
    return [v["name"] for v in body["vms"]]


def test_a_full_farm_queues_and_serves_when_a_lease_ends(api, svc, tok) -> None:
    names = fill(api, tok["team-a"])
    r = api.post("/api/v1/requests", json={"os": "centos", "name": "wq"}, headers=tok["team-b"])
    assert r.status_code == 202, r.json
    body = r.json
    assert body["state"] == "queued" and body["vms"] == [], body
    q = body["queue"]
    assert q["position"] == 1 and q["waiting"] == 1
    assert "1 centos VM(s) asked, 0 fit now, 1 short" in q["reason"], q
    assert q["deadline"] == pytest.approx(q["since"] + 30 * 60)
    # Leases end in 24 h at most: the ETA is that, plus a build.
    assert q["eta_secs"] is not None and 0 < q["eta_secs"] <= 12 * 3600 + 3600, q
    # The name is held while it waits.
    assert svc.ctx.store.locks.holder(NAME_LOCK + "wq") == body["id"]
    again = api.get(r.headers["Location"], headers=tok["team-b"]).json
    assert again["state"] == "queued" and again["queue"]["position"] == 1
    assert api.delete(f"/api/v1/vms/{names[0]}", headers=tok["team-a"]).status_code == 200
    done = settle(api, r.headers["Location"], tok["team-b"])
    assert done["state"] == "done", done
    assert [v["name"] for v in done["vms"]] == ["wq"] and done["vms"][0]["ip"]
    assert done["queue"]["position"] is None and done["queue"]["waited"] > 0
    assert svc.ctx.store.queue.entries() == []
    (lease,) = svc.ctx.store.leases.find(name="wq")
    assert lease.owner == "team-b" and lease.request_id == body["id"]


def test_no_queue_keeps_the_refusal_and_quota_stays_429(api, svc, tok) -> None:
    fill(api, tok["team-a"])
    r = api.post("/api/v1/requests", json={"os": "centos", "queue": False},
                 headers=tok["team-b"])
    assert r.status_code == 503, r.json
    r = api.post("/api/v1/requests", json={"os": "centos", "count": 3}, headers=tok["team-q"])
    assert r.status_code == 429, r.json
    # Bigger than the whole farm, even once every lease ends: refused, never queued.
    r = api.post("/api/v1/requests", json={"os": "centos", "count": 5}, headers=tok["team-b"])
    assert r.status_code == 503, r.json
    assert svc.ctx.store.queue.entries() == []


def test_cancel_while_queued(api, svc, tok) -> None:
    fill(api, tok["team-a"])
    r = api.post("/api/v1/requests", json={"os": "centos", "name": "cq"}, headers=tok["team-b"])
    assert r.json["state"] == "queued"
    other = api.delete(r.headers["Location"], headers=tok["team-q"])
    assert other.status_code == 404  # not theirs
    c = api.delete(r.headers["Location"], headers=tok["team-b"])
    assert c.status_code == 200, c.json
    assert c.json["state"] == "cancelled" and "cancelled by team-b" in c.json["error"]
    assert c.json["finished"] is not None
    assert svc.ctx.store.queue.entries() == []
    assert svc.ctx.store.locks.holder(NAME_LOCK + "cq") is None  # the name is free again
    assert svc.ctx.store.reservations.live() == [] or all(
        res.request_id != r.json["id"] for res in svc.ctx.store.reservations.live())


def test_a_request_that_waited_its_longest_expires(api, svc, tok) -> None:
    fill(api, tok["team-a"])
    r = api.post("/api/v1/requests", json={"os": "centos", "name": "xq", "max_wait_minutes": 500},
                 headers=tok["team-b"])
    q = r.json["queue"]
    assert q["deadline"] == pytest.approx(q["since"] + 120 * 60)  # capped by max_wait_minutes.max
    (entry,) = svc.ctx.store.queue.entries()
    # Its wait is over: as if the deadline had passed (the dispatcher reads it from the store).
    svc.ctx.store.queue.add(dataclasses.replace(entry, deadline=entry.enqueued))
    body = settle(api, r.headers["Location"], tok["team-b"])
    assert body["state"] == "expired", body
    assert "expired: no room within its longest wait" in body["error"]
    assert svc.ctx.store.queue.entries() == []
    assert svc.ctx.store.locks.holder(NAME_LOCK + "xq") is None


def test_two_dispatchers_serve_a_request_once(api, svc, tok, tmp_path) -> None:
    """Two instances on one store both try to serve one queued request at the same time."""
    names = fill(api, tok["team-a"])
    svc.background.stop()  # this test's two dispatchers are the only ones
    r = api.post("/api/v1/requests", json={"os": "centos", "name": "once"},
                 headers=tok["team-b"])
    assert r.json["state"] == "queued"
    rid = r.json["id"]
    other = build_service(str(tmp_path / "dynvmservice.ini"), timings=FAST, background=False)
    try:
        assert api.delete(f"/api/v1/vms/{names[0]}", headers=tok["team-a"]).status_code == 200
        (entry,) = svc.ctx.store.queue.entries()
        outcomes: list[Outcome] = []
        start = threading.Barrier(2)

        def serve(s: Dynvm) -> None:
            d = Dispatcher(s.ctx)
            rec = s.ctx.store.requests.get(rid)
            assert rec is not None
            start.wait()
            outcomes.append(d.serve(entry, rec))
        threads = [threading.Thread(target=serve, args=(s,)) for s in (svc, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(o.value for o in outcomes) == sorted(
            [Outcome.SERVED.value, Outcome.ELSEWHERE.value]), outcomes
        body = settle(api, r.headers["Location"], tok["team-b"])
        assert body["state"] == "done", body
        assert len(svc.ctx.store.leases.find(name="once")) == 1
    finally:
        _release_everything(other)
        other.close()


def ask(api: FlaskClient, h: dict[str, str], **body: object) -> tuple[str, dict]:
    r = api.post("/api/v1/requests", json={"os": "centos", **body}, headers=h)
    assert r.status_code == 202 and r.json is not None and r.json["state"] == "queued", r.json
    return str(r.headers["Location"]), r.json


def passes_after(svc: Dynvm, n: int = 2) -> None:
    """Wait until the dispatcher has made `n` more passes (it saw what changed)."""
    seen = svc.background.dispatcher.passes
    wait_until(lambda: svc.background.dispatcher.passes >= seen + n, timeout=60,
               what="the dispatcher's passes")


def test_priority_then_fairness_between_owners(api, svc, tok) -> None:
    names = fill(api, tok["team-a"])
    a_loc, _ = ask(api, tok["team-a"], name="qa")  # first, but team-a holds the farm
    b_loc, _ = ask(api, tok["team-b"], name="qb")
    p_loc, p = ask(api, tok["team-p"], name="qp", priority=9)  # capped at its priority.max
    assert p["queue"]["priority"] == 5 and p["queue"]["position"] == 1
    status = {loc: api.get(loc, headers=h).json["queue"]["position"]
              for loc, h in ((a_loc, tok["team-a"]), (b_loc, tok["team-b"]))}
    assert status == {b_loc: 2, a_loc: 3}  # team-b holds nothing: before team-a's second
    order: list[str] = []
    waiting = ((a_loc, tok["team-a"]), (b_loc, tok["team-b"]), (p_loc, tok["team-p"]))

    def served_now() -> list[str]:
        return [loc for loc, h in waiting
                if loc not in order and api.get(loc, headers=h).json["state"] != "queued"]
    for name in names[:3]:
        assert api.delete(f"/api/v1/vms/{name}", headers=tok["team-a"]).status_code == 200
        served = wait_until(served_now, timeout=60, what="the next request to be served")
        assert len(served) == 1, served
        order += served
    assert order == [p_loc, b_loc, a_loc]
    for loc, h in waiting:
        assert settle(api, loc, h)["state"] == "done"


def test_a_big_request_is_not_starved_and_short_leases_backfill(api, svc, tok) -> None:
    names = fill(api, tok["team-a"])
    big_loc, _ = ask(api, tok["team-b"], name="big", count=2)
    long_loc, _ = ask(api, tok["team-q"], name="long")  # would hold its VM past the big's start
    assert api.delete(f"/api/v1/vms/{names[0]}", headers=tok["team-a"]).status_code == 200
    passes_after(svc)
    # One VM's room is free: it is kept for the big request, not given to the long one.
    assert api.get(long_loc, headers=tok["team-q"]).json["state"] == "queued"
    assert api.get(big_loc, headers=tok["team-b"]).json["queue"]["position"] == 1
    # A new request with a long lease waits behind the big one (and team-q's, who holds
    # less than team-a)...
    _, late = ask(api, tok["team-a"], name="late")
    assert late["queue"]["reason"].startswith("waiting behind 2 queued request(s)"), late
    # ...but a short lease ends before the big request could start anyway: it goes ahead.
    r = api.post("/api/v1/requests", json={"os": "centos", "name": "short", "lease_minutes": 5},
                 headers=tok["team-q"])
    assert r.status_code == 202 and r.json["state"] == "running", r.json
    short = settle(api, r.headers["Location"], tok["team-q"])
    assert short["state"] == "done", short
    assert api.get(long_loc, headers=tok["team-q"]).json["state"] == "queued"
    for name in names[1:3]:
        assert api.delete(f"/api/v1/vms/{name}", headers=tok["team-a"]).status_code == 200
    big = settle(api, big_loc, tok["team-b"])
    assert big["state"] == "done" and len(big["vms"]) == 2, big
    assert api.get(long_loc, headers=tok["team-q"]).json["state"] == "queued"


def test_what_a_dead_process_left_of_the_queue_is_put_right(api, svc, tok) -> None:
    """A process died between recording a request `queued` and adding its entry; a leader
    died holding an entry's claim and the room it took: reconciliation puts both right."""
    fill(api, tok["team-a"])
    _, lost = ask(api, tok["team-b"], name="lost")
    _, held = ask(api, tok["team-q"], name="held")
    store = svc.ctx.store
    assert store.queue.remove(lost["id"])  # as if its process died before adding it
    store.queue.claim(held["id"], "gone-host:1:dead", 3600.0, svc.ctx.clock())
    some = store.leases.find()[0]
    now = svc.ctx.clock()
    store.reservations.reserve(f"{some.host_ref}/{some.host_uuid}", [Reservation(
        id="left-by-dead", host_key=f"{some.host_ref}/{some.host_uuid}",
        request_id=held["id"], os="centos", vcpus=1, memory_gib=1, disk_gib=1, created=now,
        expires=now + 3600)], lambda live: 1)
    passes = svc.background.reconcile_passes
    wait_until(lambda: svc.background.reconcile_passes >= passes + 2, timeout=60,
               what="two reconciliation passes")
    entries = {e.id: e for e in store.queue.entries()}
    assert set(entries) == {lost["id"], held["id"]}
    assert entries[held["id"]].claimed_by is None
    assert not [r for r in store.reservations.live() if r.request_id == held["id"]]


def metric(api: FlaskClient, prefix: str) -> float | None:
    """The value of the /metrics line starting with `prefix` (None: no such series)."""
    for line in api.get("/metrics").text.splitlines():
        if line.startswith(prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_the_dashboard_and_metrics_show_the_queue(api, svc, tok) -> None:
    fill(api, tok["team-a"])
    expired_before = metric(api, "dynvm_queue_expired_total") or 0.0
    # Observed as requests leave the queue, in this process's registry (other tests too).
    waits_before = metric(api, 'dynvm_queue_wait_seconds_count{os="centos"}') or 0.0
    _, first = ask(api, tok["team-b"], name="d1", count=2)
    _, second = ask(api, tok["team-q"], name="d2")
    rows = api.get("/ui/api/requests").get_json()["queued"]
    assert [(r["position"], r["id"], r["owner"], r["os"], r["count"]) for r in rows] == [
        (1, first["id"], "team-b", "centos", 2), (2, second["id"], "team-q", "centos", 1)]
    assert all(r["waited_secs"] >= 0 and r["eta_secs"] is not None for r in rows), rows
    assert rows[0]["eta_secs"] <= rows[1]["eta_secs"]
    page = api.get("/").get_data(as_text=True)
    assert 'id="requests-queued"' in page and f'data-id="{first["id"]}"' in page
    assert metric(api, 'dynvm_queue_length{os="centos",priority="0"}') == 2.0
    # One expires, one is cancelled: both leave the queue, and their waits are counted.
    (entry, _) = sorted(svc.ctx.store.queue.entries(), key=lambda e: e.id != first["id"])
    svc.ctx.store.queue.add(dataclasses.replace(entry, deadline=entry.enqueued))
    wait_until(lambda: metric(api, "dynvm_queue_expired_total") == expired_before + 1,
               timeout=60, what="the expiry to be counted")
    assert api.delete(f"/api/v1/requests/{second['id']}", headers=tok["team-q"]).status_code \
        == 200
    assert metric(api, 'dynvm_queue_length{os="centos",priority="0"}') is None
    assert metric(api, 'dynvm_queue_wait_seconds_count{os="centos"}') == waits_before + 2
    assert api.get("/ui/api/requests").get_json()["queued"] == []


def test_quota_counts_the_requests_waiting_in_the_queue(api, svc, tok) -> None:
    """team-q may hold 2 VMs: a queued request of 2 leaves no room in its quota for more,
    however many it queues."""
    fill(api, tok["team-a"])
    ask(api, tok["team-q"], name="qq", count=2)
    r = api.post("/api/v1/requests", json={"os": "centos", "name": "qq3"}, headers=tok["team-q"])
    assert r.status_code == 429, r.json
    assert "vms limit 2, in use 0, waiting in the queue 2, asked 1" in r.json["detail"], r.json
    assert len(svc.ctx.store.queue.entries()) == 1
    assert svc.ctx.store.locks.holder(NAME_LOCK + "qq3") is None  # nothing held for it


def legacy_get(api: FlaskClient, path: str, out: list) -> threading.Thread:
    """`GET path` on a thread of its own (the call is held while it waits)."""
    t = threading.Thread(target=lambda: out.append(api.get(path)), daemon=True)
    t.start()
    return t


def test_a_legacy_getservers_waits_in_the_queue_with_wait(api, svc, tok) -> None:
    names = fill(api, tok["team-a"])
    now = api.get("/getservers/lnow?os=centos")  # no wait: the seed's immediate refusal
    assert now.status_code == 503 and "No capacity is available!" in now.text, now.text
    assert api.get("/getservers/lnet?os=centos&wait=60&networkid=eth0").status_code == 400
    out: list = []
    caller = legacy_get(api, "/getservers/lw?os=centos&count=1&wait=600", out)
    entry = wait_until(lambda: svc.ctx.store.queue.entries(), timeout=60,
                       what="the legacy call to wait in the queue")[0]
    assert (entry.owner, entry.count) == ("lw", 1) and not out
    assert api.delete(f"/api/v1/vms/{names[0]}", headers=tok["team-a"]).status_code == 200
    caller.join(timeout=120)
    (r,) = out
    assert r.status_code == 200, r.text
    (lease,) = svc.ctx.store.leases.find(name="lw")
    assert r.json == [lease.ip] and lease.ip
    rec = svc.ctx.store.requests.get(entry.id)
    assert rec is not None and rec.state == "done" and rec.detail["waited"] > 0


@contextmanager
def full_farm_with_legacy_wait(tmp_path: Path, farm: Farm, wait_secs: int) \
        -> Iterator[tuple[Dynvm, FlaskClient]]:
    """A service whose legacy calls wait `wait_secs` in the queue, its farm full of
    team-a's VMs."""
    ini = write_ini(tmp_path, farm, extra=SMALL + f"legacy.wait.secs={wait_secs}\n",
                    hosts=Ini.of_farm(farm).set_hosts({"host.vms.max.centos": 1}))
    with dynvm_on(ini) as s:
        api = create_app(service=s).test_client()
        fill(api, bearer(tokens.create(s.ctx.store, "team-a")[0]))
        yield s, api


def test_a_legacy_wait_that_ends_before_room_frees_is_refused(tmp_path, farm, clean_farm) -> None:
    """`[queue] legacy.wait.secs` is every legacy call's wait; when it is over the call is
    refused as the seed refuses, and its request left the queue, expired."""
    with full_farm_with_legacy_wait(tmp_path, farm, 1) as (s, api):
        r = api.get("/getservers/lx?os=centos")
        assert r.status_code == 503, r.text
        assert "no room freed within wait=1 s in the queue" in r.text, r.text
        (rec,) = [x for x in s.ctx.store.requests.find("expired") if x.name == "lx"]
        assert "its caller's wait of 1 s" in rec.detail["reason"]
        assert s.ctx.store.queue.entries() == []
        assert s.ctx.store.locks.holder(NAME_LOCK + "lx") is None
        s.background.stop()


def test_a_queued_request_keeps_its_keys_and_hostname(tmp_path, farm, ssh_port, clean_farm,
                                                      probe) -> None:
    """Keys, hostname and cloud-config asked with a request that waits are what its VMs get
    once it is served; its record keeps the keys only while it waits."""
    import paramiko

    from dynvm.core.v1request import QUEUED_KEYS
    from tests.service.test_keys_paths import line, reported_hostname
    from tests.support.guest_ssh import can_log_in

    ini = write_ini(tmp_path, farm, extra=SMALL, common={"vm.ssh.port": ssh_port},
                    hosts=Ini.of_farm(farm).set_hosts({"host.vms.max.centos": 1,
                                                       "centos.cloudinit": True}))
    key = paramiko.ECDSAKey.generate()
    with dynvm_on(ini) as s:
        api = create_app(service=s).test_client()
        a, b = (bearer(tokens.create(s.ctx.store, o)[0]) for o in ("team-a", "team-b"))
        names = fill(api, a)
        loc, body = ask(api, b, name="kq", ssh_keys=[line(key)], hostname="queued-host")
        assert body["ssh_keys"] and key.get_base64() not in str(body), body
        assert body["hostname"] == "queued-host"
        rec = s.ctx.store.requests.get(body["id"])
        assert rec is not None and rec.detail[QUEUED_KEYS] == [line(key)]
        assert api.delete(f"/api/v1/vms/{names[0]}", headers=a).status_code == 200
        done = settle(api, loc, b)
        assert done["state"] == "done", done
        ip = done["vms"][0]["ip"]
        assert can_log_in(ip, ssh_port, "root", pkey=key)
        assert not can_log_in(ip, ssh_port, "root", pkey=paramiko.ECDSAKey.generate())
        assert reported_hostname(probe, "kq") == "queued-host"
        rec = s.ctx.store.requests.get(body["id"])
        assert rec is not None and key.get_base64() not in str(rec.detail), rec.detail
        s.background.stop()


def test_a_legacy_wait_whose_request_expires_in_the_queue_is_answered_no_capacity(
        tmp_path, farm, clean_farm) -> None:
    """A waiting legacy call whose request another party ends while it waits (the
    leader's `max_wait_minutes` sweep) gets the seed's 503 with the reason, not a
    server error."""
    from dynvm.core import queueing
    from dynvm.core.lifecycle import RequestState

    with full_farm_with_legacy_wait(tmp_path, farm, 600) as (s, _):
        answers: list = []
        caller = threading.Thread(
            target=lambda: answers.append(create_app(service=s).test_client().get(
                "/getservers/lx?os=centos")))
        caller.start()

        def queued() -> list:
            return [x for x in s.ctx.store.requests.find("queued") if x.name == "lx"]

        wait_until(lambda: bool(queued()))
        (rec,) = queued()
        assert queueing.leave(s.ctx, rec, RequestState.EXPIRED, "expired: waited its longest")
        caller.join(timeout=60)
        assert not caller.is_alive()
        (r,) = answers
        assert r.status_code == 503, r.text
        assert "No capacity is available!" in r.text and "waited its longest" in r.text, r.text
        s.background.stop()
