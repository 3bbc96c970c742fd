"""The dashboard and its JSON routes, against the simulated farm over real XML-RPC."""

from __future__ import annotations

import csv
import html as htmlmod
import io
import json
import threading
import time

from dynvm.core.maintenance import state


def test_dashboard_shows_leased_vms_with_owner_and_expiry(client, service) -> None:
    r = client.get("/getservers/dash?os=centos&count=2&expiresin=90")
    assert r.status_code == 200, r.text
    ips = json.loads(r.text)
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.text
    for n in ("dash1", "dash2"):
        assert f'data-name="{n}"' in html
    for ip in ips:
        assert ip in html
    vms = client.get("/ui/api/vms?q=dash").get_json()
    assert vms["total"] == 2
    for v in vms["vms"]:
        assert v["owner"] == "dash" and v["state"] == "leased" and v["os"] == "centos"
        assert 88 * 60 <= v["expires_in_secs"] <= 90 * 60
        assert not v["foreign"]
    client.get("/releaseservers/dash?count=2")


def test_foreign_vms_are_marked(client, service, farm) -> None:
    rows = client.get("/ui/api/vms?state=foreign").get_json()["vms"]
    running = sum(1 for vm in service.dashboard.vms() if vm["foreign"])
    assert len(rows) == running
    assert all(v["foreign"] and v["owner"] == "" for v in rows)


def test_hosts_and_capacity_agree_with_getavailablecount(client, service) -> None:
    hosts = client.get("/ui/api/hosts").get_json()
    assert [p["ref"] for p in hosts["pools"]] == sorted(service.legacy.host_refs())
    assert all(p["state"] == "up" and p["members"] for p in hosts["pools"])
    cap = client.get("/ui/api/capacity").get_json()["os"]
    assert set(cap) == service.legacy.os_keys()
    for os_key, c in cap.items():
        legacy = client.get(f"/getavailablecount/{os_key}").text
        assert int(legacy) == c["available"], os_key
    member = hosts["pools"][0]["members"][0]
    assert member["memory_total"] > member["memory_free"] > 0


def test_requests_show_finished_request_with_its_vms(client, service) -> None:
    r = client.get("/getservers/rq?os=centos&count=1")
    rid = r.headers["X-Dynvm-Request-Id"]
    reqs = client.get("/ui/api/requests").get_json()
    (done,) = [x for x in reqs["recent"] if x["id"] == rid]
    assert done["state"] == "done" and [v["step"] for v in done["vms"]] == ["ready"]
    assert rid in client.get("/").text
    client.get("/releaseservers/rq")


def test_history_query_paging_and_csv(client, service) -> None:
    client.get("/getservers/hq?os=centos&count=3")
    client.get("/releaseservers/hq?count=3")
    page1 = client.get("/ui/api/history?name=hq&per_page=2").get_json()
    assert page1["total"] == 3 and page1["pages"] == 2 and len(page1["docs"]) == 2
    page2 = client.get("/ui/api/history?name=hq&per_page=2&page=2").get_json()
    names = {d["name"] for d in page1["docs"] + page2["docs"]}
    assert names == {"hq1", "hq2", "hq3"}
    assert client.get("/ui/api/history?name=hq&owner=nobody").get_json()["total"] == 0
    assert client.get("/ui/api/history?name=hq&from=2000-01-01&to=2000-01-02"
                      ).get_json()["total"] == 0
    rows = list(csv.DictReader(io.StringIO(client.get("/ui/history.csv?h_name=hq").text)))
    assert {r["name"] for r in rows} == names and all(r["state"] == "deleted" for r in rows)
    html = client.get("/?h_name=hq").text
    assert 'id="history-count">3 document(s)' in html
    # The charts' figures travel as JSON for the vendored chart library, and as a table.
    figures = html.split('id="history-charts" data-figures="', 1)[1].split('"', 1)[0]
    data = json.loads(htmlmod.unescape(figures))
    assert sum(data["series"]["created"]["centos"]) == 3 and data["step"] == 300
    assert len(data["t"]) == len(data["series"]["created"]["centos"]) >= 1
    assert "vendor/uplot/uPlot.iife.min.js" in html
    assert client.get("/ui/static/vendor/uplot/uPlot.iife.min.js").status_code == 200


def test_bad_dashboard_input_is_a_400(client, service) -> None:
    assert client.get("/ui/api/history?from=yesterday").status_code == 400
    assert client.get("/ui/api/history?per_page=0").status_code == 400
    assert client.get("/?vpage=x").status_code == 400


def test_fragments_and_sorting(client, service) -> None:
    client.get("/getservers/srt?os=centos&count=2")
    parts = client.get("/ui/fragments?q=srt&sort=name&desc=1").get_json()
    assert set(parts) == {"farm", "fleet", "vms", "requests", "warm"}
    assert 'id="fleet-none"' in parts["fleet"]  # no [fleet]: said, and how to declare one
    assert client.get("/ui/api/fleet").get_json()["configured"] is False
    html = parts["vms"]
    assert html.index('data-name="srt2"') < html.index('data-name="srt1"')
    client.get("/releaseservers/srt?count=2")


def test_health_live_and_ready(client, service) -> None:
    assert client.get("/health/live").status_code == 200
    r = client.get("/health/ready")
    assert r.status_code == 200, r.text
    checks = r.get_json()["checks"]
    assert checks["store"]["ok"] and checks["config"]["ok"]
    assert checks["hosts"]["reachable"] == sorted(service.legacy.host_refs())


def test_ready_fails_when_no_host_answers(tmp_path, farm) -> None:
    from dynvm.api import create_app
    from dynvm.runtime.bootstrap import build_service
    from testbed.inis import Ini
    from testbed.serving import free_port
    from tests.service.conftest import FAST, write_ini

    dead = free_port()
    ini = write_ini(tmp_path, farm, hosts=Ini({"xenhost1": {
        "host.name": f"http://127.0.0.1:{dead}", "host.user": "root", "host.password": "x",
        "host.storage.name": "Local storage", "centos.template": "tmpl-centos"}}))
    svc = build_service(str(ini), timings=FAST, background=False)
    try:
        c = create_app(service=svc).test_client()
        assert c.get("/health/live").status_code == 200
        r = c.get("/health/ready")
        assert r.status_code == 503
        assert r.get_json()["checks"]["hosts"] == {"ok": False, "reachable": [], "configured": 1}
        assert c.get("/").status_code == 200  # an unreachable farm is shown, not a 500
        assert "unreachable" in c.get("/").text
    finally:
        svc.close()


def test_metrics_carry_farm_gauges_and_step_times(client, service) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    client.get("/getservers/met?os=centos&count=2")
    text = client.get("/metrics").text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    leased = [s for s in fams["dynvm_vms"].samples
              if s.labels["state"] == "leased" and s.labels["os"] == "centos"]
    assert sum(s.value for s in leased) == 2
    steps = {s.labels["step"] for s in fams["dynvm_build_step_seconds"].samples
             if s.name.endswith("_count") and s.labels["os"] == "centos"}
    assert {"reserved", "cloning", "provisioning", "starting", "waiting for IP"} <= steps
    avail = {s.labels["os"]: s.value for s in fams["dynvm_available_vms"].samples}
    assert avail["centos"] == int(client.get("/getavailablecount/centos").text)
    assert fams["dynvm_requests_in_flight"].samples[0].value == 0
    assert fams["dynvm_store_up"].samples[0].value == 1
    client.get("/releaseservers/met?count=2")


def test_xenapi_errors_counted_by_code_and_failed_request_shown(client, service, farm,
                                                                caplog) -> None:
    def errors() -> float:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith('dynvm_xenapi_errors_total{code="SR_BACKEND_FAILURE_44"}'):
                return float(line.split()[-1])
        return 0.0

    before = errors()
    farm.fail_next("VM.provision", 1, "SR_BACKEND_FAILURE_44",
                   ["", "There is insufficient space", ""])
    r = client.get("/getservers/xerr?os=centos&allornone=false")
    assert r.status_code == 502, r.text
    assert errors() == before + 1
    # Logged once, with the call and the host it came from.
    logged = [r.getMessage() for r in caplog.records if r.name == "dynvm.xenapi"
              and "SR_BACKEND_FAILURE_44" in r.getMessage()]
    assert len(logged) == 1, logged
    assert logged[0].startswith("XenAPI Async.VM.provision on http://127.0.0.1:"), logged
    assert "insufficient space" in logged[0]
    rid = r.headers["X-Dynvm-Request-Id"]
    (req,) = [x for x in client.get("/ui/api/requests").get_json()["recent"] if x["id"] == rid]
    assert req["state"] == "failed" and "SR_BACKEND_FAILURE_44" in req["reason"]
    assert [v["step"] for v in req["vms"]] == ["failed"]


def test_host_in_maintenance_is_shown_and_counted_as_placement_does(client, service) -> None:
    pool = client.get("/ui/api/hosts").get_json()["pools"][0]
    member = pool["members"][0]
    key = f"{pool['ref']}/{member['uuid']}"
    state.set_in_maintenance(service.ctx.store, key, True, run="test")
    try:
        after = client.get("/ui/api/hosts").get_json()["pools"][0]
        (shown,) = [m for m in after["members"] if m["uuid"] == member["uuid"]]
        assert shown["state"] == "in maintenance"
        assert set(shown["available"].values()) <= {0}
        assert 'class="badge in maintenance"' in client.get("/").text
        for os_key, c in client.get("/ui/api/capacity").get_json()["os"].items():
            assert int(client.get(f"/getavailablecount/{os_key}").text) == c["available"]
    finally:
        state.set_in_maintenance(service.ctx.store, key, False)
    back = client.get("/ui/api/hosts").get_json()["pools"][0]
    assert next(m for m in back["members"] if m["uuid"] == member["uuid"])["state"] == "up"


def test_vm_table_is_paged_on_the_server(client, service) -> None:
    r = client.get("/getservers/pg?os=centos&count=5")
    assert r.status_code == 200, r.text
    whole = client.get("/ui/api/vms?per_page=5000").get_json()
    assert whole["total"] == len(whole["vms"]) >= 5 and whole["pages"] == 1
    names = [v["name"] for v in whole["vms"]]
    second = client.get("/ui/api/vms?per_page=2&page=2").get_json()
    assert second["total"] == whole["total"] and second["per_page"] == 2
    assert second["pages"] == (whole["total"] + 1) // 2
    assert [v["name"] for v in second["vms"]] == names[2:4]
    assert client.get("/ui/api/vms?per_page=0").status_code == 400
    assert client.get("/ui/api/vms?page=x").status_code == 400
    client.get("/releaseservers/pg?count=5")


def test_sections_are_computed_once_per_generation_and_follow_every_change(
        client, service) -> None:
    board = service.dashboard
    first = board.snapshot()
    rows = board.vms(first)
    assert board.vms(board.snapshot()) is rows  # nothing changed: the same rows
    # A store write that changes none of the records shown (a heartbeat) keeps them,
    # and every thread of the worker shares them.
    service.ctx.store.documents.update("unrelated", lambda d: {"n": 1})
    assert board.vms(board.snapshot()) is rows
    other: list[object] = []
    worker = threading.Thread(target=lambda: other.append(board.vms(board.snapshot())))
    worker.start()
    worker.join()
    assert other == [rows] and other[0] is rows
    assert board.hosts(board.snapshot())["totals"] == board.hosts(first)["totals"]
    # Another process drains pool 1 in the store: the next snapshot shows it.
    state.set_in_maintenance(service.ctx.store.direct, f"1/{first.views[1].hosts[0].uuid}",
                             True)
    try:
        pools = board.hosts(board.snapshot())["pools"]
        member = pools[0]["members"]
        assert "in maintenance" in {m["state"] for m in member}
        assert client.get("/ui/api/hosts").get_json()["pools"][0]["members"] == member
    finally:
        state.set_in_maintenance(service.ctx.store.direct,
                                 f"1/{first.views[1].hosts[0].uuid}", False)
    # A VM handed out shows in the table at the next answer.
    r = client.get("/getservers/gen?os=centos")
    assert r.status_code == 200, r.text
    assert [v["name"] for v in client.get("/ui/api/vms?q=gen").get_json()["vms"]] == ["gen"]
    assert board.vms(board.snapshot()) is not rows
    client.get("/releaseservers/gen")


def _farm_section(html: str) -> str:
    return html.split('<div id="farm">', 1)[1].split("</section>", 1)[0]


def _total_vms(html: str) -> int:
    foot = _farm_section(html).split("<tfoot>", 1)[1]
    return int(foot.split('<td data-label="VMs">', 1)[1].split("<", 1)[0])


def test_rendered_farm_and_history_follow_every_change(client, service) -> None:
    """The farm and history sections are rendered once per change and shared; the
    next answer after any change (another process's store write, a VM handed out,
    a history document) shows it."""
    board = service.dashboard
    page = client.get("/").text
    assert client.get("/").text.count('class="member') == page.count('class="member')
    snap = board.snapshot()
    assert board.shared(snap, "farm html", lambda: "not kept") != "not kept"
    vms = _total_vms(page)
    assert 'class="badge in maintenance"' not in _farm_section(page)
    key = f"1/{snap.views[1].hosts[0].uuid}"
    state.set_in_maintenance(service.ctx.store.direct, key, True)  # as another process would
    try:
        assert 'class="badge in maintenance"' in _farm_section(client.get("/").text)
        assert 'class="badge in maintenance"' in client.get("/ui/fragments").get_json()["farm"]
    finally:
        state.set_in_maintenance(service.ctx.store.direct, key, False)
    assert 'class="badge in maintenance"' not in _farm_section(client.get("/").text)
    r = client.get("/getservers/rendered?os=centos&count=2")
    assert r.status_code == 200, r.text
    assert _total_vms(client.get("/").text) == vms + 2
    assert _history_states(client.get("/?h_name=rendered").text) == {"available"}
    client.get("/releaseservers/rendered?count=2")
    after = client.get("/").text
    assert _total_vms(after) == vms
    assert _history_states(client.get("/?h_name=rendered").text) == {"deleted"}
    assert 'data-name="rendered1"' in after.split('id="history-table"', 1)[1]


def _history_states(html: str) -> set[str]:
    rows = html.split('id="history-table"', 1)[1].split('<tr class="hist"')[1:]
    return {r.split('class="hist-state" data-label="State">', 1)[1].split("<", 1)[0] for r in rows}


def test_finished_requests_are_paged_and_follow_another_process(client, service) -> None:
    from dynvm.core.records import RequestRecord
    from dynvm.store.sqlite import SqliteStore

    before = client.get("/ui/api/requests").get_json()
    other = SqliteStore(service.ctx.store.direct.path)  # another process on the same file
    try:
        now = time.time()
        for i in range(5):
            other.requests.put(RequestRecord(id=f"paged{i}", name="paged", os="centos", count=1,
                                             instance="elsewhere:1", started=now - 60 + i,
                                             state="done", finished=now - 30 + i))
        first = client.get("/ui/api/requests?per_page=2").get_json()
        assert first["recent_total"] == before["recent_total"] + 5
        assert first["pages"] == (first["recent_total"] + 1) // 2 and first["page"] == 1
        assert [r["id"] for r in first["recent"]] == ["paged4", "paged3"]  # newest first
        second = client.get("/ui/api/requests?per_page=2&page=2").get_json()
        assert [r["id"] for r in second["recent"]] == ["paged2", "paged1"]
        assert 'data-id="paged4"' in client.get("/").text
        assert client.get("/ui/api/requests?per_page=0").status_code == 400
    finally:
        other.close()


def test_pagers_link_the_ends_and_the_pages_near_the_current_one() -> None:
    from dynvm.api.dashboard import pages_shown

    assert pages_shown(1, 1) == [1]
    assert pages_shown(1, 5) == [1, 2, 3, 4, 5]
    assert pages_shown(1, 200) == [1, 2, 3, 198, 199, 200]
    assert pages_shown(100, 200) == [1, 2, 3, 98, 99, 100, 101, 102, 198, 199, 200]
    assert pages_shown(200, 200) == [1, 2, 3, 198, 199, 200]
    assert pages_shown(5, 200) == [1, 2, 3, 4, 5, 6, 7, 198, 199, 200]


def test_unreachable_pool_says_since_when_and_keeps_its_hosts(client, farm) -> None:
    from testbed.serving import wait_until

    before = {p["ref"]: p for p in client.get("/ui/api/hosts").get_json()["pools"]}
    names = sorted(m["name"] for m in before[2]["members"])
    master = farm.pools[1].master.name_label
    farm.set_unreachable(master, True)
    try:
        pool = wait_until(lambda: next((p for p in client.get("/ui/api/hosts").get_json()["pools"]
                                        if p["ref"] == 2 and p["state"] == "unreachable"), None),
                          timeout=30, what="pool 2 seen unreachable")
        assert pool["since"] and pool["last_known"] is True
        assert sorted(m["name"] for m in pool["members"]) == names
        assert all(m["state"] == "unknown" for m in pool["members"])
        html = client.get("/").text
        row = html.split('data-ref="2"', 1)[1].split("</tr>", 1)[0]
        assert "unreachable since" in row and "UTC" in row
        # The raw error is on hover only, never the row's text.
        shown = row.replace(pool["error"], "") if pool["error"] else row
        assert 'title="' in row and "Error" not in shown.split('title="')[0]
        assert html.count("last known") >= len(names)
    finally:
        farm.set_unreachable(master, False)
    wait_until(lambda: all(p["state"] == "up" for p in
                           client.get("/ui/api/hosts").get_json()["pools"]),
               timeout=30, what="pool 2 back")


def test_metrics_count_every_path_once_as_it_happens(client, service, farm) -> None:
    """Legacy and v1 hand-outs, releases of every kind, expiry and failures are counted
    where they happen; counters and histograms only grow, whatever the store forgets."""
    from prometheus_client.parser import text_string_to_metric_families

    from dynvm.core import tokens

    def figures() -> dict[str, float]:
        out: dict[str, float] = {}
        for fam in text_string_to_metric_families(client.get("/metrics").text):
            for s in fam.samples:
                if s.labels.get("os") not in (None, "centos"):
                    continue
                key = s.name + "".join(f",{k}={v}" for k, v in sorted(s.labels.items())
                                       if k not in ("os", "le"))
                if "le" not in s.labels:
                    out[key] = out.get(key, 0.0) + s.value
        return out

    def grew(before: dict[str, float], after: dict[str, float], name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    before = figures()
    assert client.get("/getservers/evl?os=centos&count=2").status_code == 200  # legacy
    secret, _ = tokens.create(service.ctx.store, "team-m")
    h = {"Authorization": f"Bearer {secret}"}
    r = client.post("/api/v1/requests", json={"os": "centos", "count": 1, "name": "evv"},
                    headers=h)
    assert r.status_code == 202, r.json
    from testbed.serving import wait_until
    wait_until(lambda: client.get(r.headers["Location"], headers=h).json["state"] == "done",
               timeout=60, what="the v1 request")
    farm.fail_next("VM.provision", 1, "SR_BACKEND_FAILURE_44", ["", "no space", ""])
    assert client.get("/getservers/evf?os=centos&allornone=false").status_code == 502
    assert client.delete("/api/v1/vms/evv", headers=h).status_code == 200  # v1 release
    assert client.get("/releaseservers/evl1").status_code == 200  # legacy release
    assert client.get("/setexpiry/evl2/0?from=created").status_code == 200
    # Counted once the expiry's release is done (just after the lease goes).
    after = wait_until(lambda: (lambda f: f if grew(before, f, "dynvm_vms_expired_total") else
                                None)(figures()), timeout=60, what="evl2 to expire")
    assert grew(before, after, "dynvm_vms_handed_out_total") == 3
    assert grew(before, after, "dynvm_vms_released_total") >= 3  # + the failed build's rollback
    assert grew(before, after, "dynvm_vms_expired_total") == 1
    assert grew(before, after, "dynvm_vm_failures_total") == 1
    assert grew(before, after, "dynvm_build_seconds_count") == 3
    for step in ("reserved", "cloning", "provisioning", "starting", "waiting for IP"):
        assert grew(before, after, f"dynvm_build_step_seconds_count,step={step}") >= 3, step
    # Observed once each, in the process where they happen: real counters and histograms.
    text = client.get("/metrics").text
    for kind, name in (("histogram", "dynvm_build_step_seconds"),
                       ("histogram", "dynvm_build_seconds"), ("counter", "dynvm_vms_expired_total"),
                       ("counter", "dynvm_vms_handed_out_total"),
                       ("counter", "dynvm_vm_failures_total")):
        assert f"# TYPE {name} {kind}" in text, name
    assert "dynvm_history_documents{" in text  # what the store keeps: a gauge
