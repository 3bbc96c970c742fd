"""Exact bodies, status codes and headers of the legacy routes."""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient

from dynvm.api import formatting
from dynvm.core.errors import AllOrNoneFailed, NoCapacity, StoreDown
from dynvm.core.services import ServerResult, ShowAll, Target
from tests.api.stub import StubCore


def _servers(*pairs: tuple[str, str]) -> list[ServerResult]:
    return [ServerResult(name=n, ip=ip, host_ref=1, vm_uuid=f"u-{n}") for n, ip in pairs]


def test_ip_list_is_plain_json_list() -> None:
    got = formatting.ip_list(_servers(("t1", "10.0.0.1"), ("t2", "10.0.0.2")))
    assert got == '["10.0.0.1", "10.0.0.2"]'


def test_detailed_is_indented_and_sorted() -> None:
    got = formatting.detailed(_servers(("t2", "10.0.0.2"), ("t10", "10.0.0.10"), ("t1", "10.0.0.1")))
    assert got == '{\n  "t1": "10.0.0.1",\n  "t10": "10.0.0.10",\n  "t2": "10.0.0.2"\n}'


def test_showall_layout() -> None:
    row = {"name_description": "d", "networkinfo": "10.0.0.5,fe80::1", "name": "vm",
           "vcpus": 8, "power_state": "Running", "memory_static_max": 4294967296,
           "extra": "dropped"}
    got = formatting.showall({10: [], 2: [row]})
    assert got == (
        '{\n'
        '  "2": [\n'
        '    {\n'
        '      "memory_static_max": 4294967296,\n'
        '      "name": "vm",\n'
        '      "name_description": "d",\n'
        '      "networkinfo": "10.0.0.5,fe80::1",\n'
        '      "power_state": "Running",\n'
        '      "vcpus": 8\n'
        '    }\n'
        '  ],\n'
        '  "10": []\n'
        '}'
    )


def test_showall_is_what_json_writes_indented_and_sorted() -> None:
    """The body is built row by row; every byte is json.dumps(indent=2, sort_keys=True)'s."""
    odd = ["", 'quo"te', "back\\slash", "tab\tnew\nline", "été", "漢字", "\u2028", "\x00\x7f"]
    rows = [{"name": n, "power_state": "Running", "vcpus": "2", "memory_static_max": None,
             "networkinfo": n[::-1], "name_description": n * 2} for n in odd]
    hosts: dict[int, list[dict[str, str | None]]] = {
        3: rows[:4], 12: [], 1: rows[4:], 2: [{"name": "partial"}]}
    expected = {ref: [{k: row.get(k) for k in formatting.SHOWALL_FIELDS} for row in vms]
                for ref, vms in hosts.items()}
    assert formatting.showall(hosts) == json.dumps(expected, indent=2, sort_keys=True)
    assert formatting.showall({}) == json.dumps({}, indent=2, sort_keys=True)


def test_names_layout() -> None:
    assert formatting.names(["a1", "a2"]) == '[\n  "a1",\n  "a2"\n]'
    assert formatting.names([]) == "[]"


def test_getservers_list_and_detailed_bytes(client: FlaskClient) -> None:
    resp = client.get("/getservers/job?count=2")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.get_data(as_text=True) == '["10.0.0.1", "10.0.0.2"]'
    resp = client.get("/getservers/one?format=servermanager")
    assert resp.get_data(as_text=True) == '["10.0.0.1"]'
    resp = client.get("/getservers/job?count=2&format=detailed")
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.get_data(as_text=True) == '{\n  "job1": "10.0.0.1",\n  "job2": "10.0.0.2"\n}'


def test_showall_route(client: FlaskClient, core: StubCore) -> None:
    core.showall = ShowAll(hosts={1: [{"name": "a", "power_state": "Running", "vcpus": 2,
                                       "memory_static_max": 1, "networkinfo": "10.0.0.9",
                                       "name_description": ""}]},
                           unreachable=[5, 2], age_secs=3.14159)
    resp = client.get("/showall/windows?labels=perf,big&ignorelabels=true")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["X-Dynvm-Unreachable"] == "2,5"
    assert resp.headers["X-Dynvm-View-Age"] == "3.1"
    assert json.loads(resp.get_data(as_text=True)) == {"1": core.showall.hosts[1]}
    assert resp.get_data(as_text=True).startswith('{\n  "1": [\n    {\n      "memory_static_max"')
    assert ("show_all", ("windows", frozenset({"perf", "big"}), True)) in core.calls


def test_showall_without_unreachable_hosts_has_no_header(client: FlaskClient) -> None:
    resp = client.get("/showall")
    assert resp.get_data(as_text=True) == "{}"
    assert "X-Dynvm-Unreachable" not in resp.headers
    assert resp.headers["X-Dynvm-View-Age"] == "0.0"


def test_available_count_is_plain_text(client: FlaskClient, core: StubCore) -> None:
    resp = client.get("/getavailablecount")
    assert resp.status_code == 200
    assert resp.mimetype == "text/plain"
    assert resp.get_data(as_text=True) == "7"
    assert ("available", ("centos", frozenset(), False)) in core.calls
    assert client.get("/getavailablecount/windows?labels=perf").get_data(as_text=True) == "7"
    assert ("available", ("windows", frozenset({"perf"}), False)) in core.calls


def test_available_all_labels_is_json_list(client: FlaskClient, core: StubCore) -> None:
    core.label_counts = [{"label": "perf", "count": 3}, {"label": "default", "count": 5}]
    resp = client.get("/getavailablecount/windows?alllabels=true")
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.get_data(as_text=True) == (
        '[{"label": "perf", "count": 3}, {"label": "default", "count": 5}]')
    assert ("available_by_label", "windows") in core.calls


def test_release_and_not_found(client: FlaskClient, core: StubCore) -> None:
    client.get("/getservers/rel?count=3")
    resp = client.get("/releaseservers/rel?count=3")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.get_data(as_text=True) == '[\n  "rel1",\n  "rel2",\n  "rel3"\n]'
    resp = client.get("/releaseservers/rel?count=3")
    assert resp.status_code == 404
    assert resp.get_data(as_text=True) == "Error: VM rel doesn't exist"
    client.get("/getservers/solo")
    resp = client.get("/releaseservers/solo/failed")
    assert resp.get_data(as_text=True) == '[\n  "solo"\n]'
    assert ("release_servers", (Target.named("solo"), "failed")) in core.calls


def test_setexpiry_not_found(client: FlaskClient) -> None:
    resp = client.get("/setexpiry/ghost/10")
    assert resp.status_code == 404
    assert resp.get_data(as_text=True) == "Error: VM ghost doesn't exist"


def test_no_capacity_is_503_with_seed_wording(client: FlaskClient, core: StubCore) -> None:
    core.raise_on_get = NoCapacity("asked for 5 centos, 2 available")
    resp = client.get("/getservers/t?count=5")
    assert resp.status_code == 503
    body = resp.get_data(as_text=True)
    assert body == "Error: No capacity is available! asked for 5 centos, 2 available"
    core.raise_on_get = NoCapacity("Error: No capacity is available! asked 5, have 0")
    assert client.get("/getservers/t?count=5").get_data(as_text=True) == (
        "Error: No capacity is available! asked 5, have 0")


def test_all_or_none_is_499(client: FlaskClient, core: StubCore) -> None:
    core.raise_on_get = AllOrNoneFailed("all vms couldn't be created successfully")
    resp = client.get("/getservers/t?count=2")
    assert resp.status_code == 499
    assert resp.get_data(as_text=True) == "all vms couldn't be created successfully"
    core.raise_on_get = AllOrNoneFailed("t2: timed out waiting for IP")
    body = client.get("/getservers/t?count=2").get_data(as_text=True)
    assert body.splitlines() == ["all vms couldn't be created successfully",
                                 "t2: timed out waiting for IP"]
    # The core's own wording: the reasons follow the phrase after a colon.
    core.raise_on_get = AllOrNoneFailed(
        "all vms couldn't be created successfully: t2: timed out waiting for IP")
    body = client.get("/getservers/t?count=2").get_data(as_text=True)
    assert body.splitlines() == ["all vms couldn't be created successfully",
                                 "t2: timed out waiting for IP"]


def test_store_down_is_503(client: FlaskClient, core: StubCore) -> None:
    core.raise_on_get = StoreDown("the store cannot be reached: sqlite locked")
    resp = client.get("/getservers/t")
    assert resp.status_code == 503
    assert resp.get_data(as_text=True) == "Error: the store cannot be reached: sqlite locked"


def test_partial_failure_without_allornone(client: FlaskClient, core: StubCore) -> None:
    core.failed = [("t2", "no IP")]
    resp = client.get("/getservers/t?count=3&allornone=false")
    assert resp.status_code == 200
    assert resp.get_data(as_text=True) == '["10.0.0.1", "10.0.0.3"]'
    assert resp.headers["X-Dynvm-Failed"] == "t2"
    core.failed = [("solo", "clone failed")]
    resp = client.get("/getservers/solo?allornone=false")
    assert resp.status_code == 502
    assert "solo: clone failed" in resp.get_data(as_text=True)


def test_unexpected_exception_is_short_500(client: FlaskClient, core: StubCore,
                                           caplog: pytest.LogCaptureFixture) -> None:
    core.raise_on_get = KeyError("boom")
    resp = client.get("/getservers/t")
    assert resp.status_code == 500
    body = resp.get_data(as_text=True)
    assert body.startswith("Error: internal error (KeyError); request id ")
    assert "Traceback" not in body
    assert any("Traceback" in (r.exc_text or "") or r.exc_info for r in caplog.records)
    assert client.get("/getavailablecount").status_code == 200  # the app keeps serving


@pytest.mark.parametrize(("report", "status"), [({"status": "ok"}, 200),
                                                ({"status": "degraded"}, 503)])
def test_health(client: FlaskClient, core: StubCore, report: dict, status: int) -> None:
    core.health_report = {**report, "config": {"error": None}, "hosts": {"1": "ok"}}
    resp = client.get("/health")
    assert resp.status_code == status
    assert resp.headers["Content-Type"] == "application/json"
    assert json.loads(resp.get_data(as_text=True)) == core.health_report


def test_metrics_count_requests_and_vms(client: FlaskClient) -> None:
    def sample(text: str, line_start: str) -> float:
        for line in text.splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = client.get("/metrics").get_data(as_text=True)
    client.get("/getservers/m?count=4&os=windows")
    client.get("/getservers/m?count=0")
    resp = client.get("/metrics")
    assert resp.status_code == 200
    after = resp.get_data(as_text=True)
    # VMs handed out are counted by the core where it hands them out (every path): see
    # tests/service/test_dashboard.py::test_metrics_count_every_path_once_as_it_happens.
    ok = 'dynvm_http_requests_total{method="GET",route="legacy.getservers",status="200"}'
    bad = 'dynvm_http_requests_total{method="GET",route="legacy.getservers",status="400"}'
    assert sample(after, ok) - sample(before, ok) == 1
    assert sample(after, bad) - sample(before, bad) == 1
    assert "dynvm_http_request_seconds_bucket" in after


def test_health_that_raises_is_503_json(client: FlaskClient, core: StubCore) -> None:
    def broken() -> dict:
        raise OSError("disk gone")

    core.report = broken  # type: ignore[method-assign]
    resp = client.get("/health")
    assert resp.status_code == 503
    report = json.loads(resp.get_data(as_text=True))
    assert report["status"] == "degraded"
    assert next(iter(report)) == "reasons" and "disk gone" in report["reasons"][0]


def test_building_the_app_without_config_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from dynvm.runtime.bootstrap import build_app

    monkeypatch.delenv("DYNVM_CONFIG", raising=False)
    with pytest.raises(RuntimeError, match="DYNVM_CONFIG"):
        build_app()


def test_metrics_label_unknown_methods_as_other(client: FlaskClient) -> None:
    assert client.open("/getservers/t", method="BREW").status_code == 405
    text = client.get("/metrics").get_data(as_text=True)
    assert 'method="BREW"' not in text
    assert 'dynvm_http_requests_total{method="OTHER",route="unmatched",status="405"}' \
        in text


def test_every_answer_carries_a_request_id(client: FlaskClient) -> None:
    assert len(client.get("/getavailablecount").headers["X-Dynvm-Request-Id"]) == 16
    resp = client.get("/nosuch", headers={"X-Request-Id": "abc123"})
    assert resp.headers["X-Dynvm-Request-Id"] == "abc123"
