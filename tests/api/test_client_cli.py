"""The `dynvm` client commands at the HTTP edge: error codes, timeouts, retries.

`requests-mock` stands in for the server here (it only fakes HTTP answers for
this client); the happy paths run against a served instance in
tests/service/test_v1_served.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import requests_mock
from click.testing import CliRunner

from dynvm.cli import main
from dynvm.client import http as client_mod

URL = "http://dynvm.test"
API = URL + "/api/v1"
REQ: dict[str, Any] = {"id": "a" * 32, "state": "running", "cancelling": False, "owner": "team-a",
       "os": "centos", "count": 1, "names": ["ci"], "created": 1.0, "finished": None,
       "expires": 2.0, "error": None,
       "vms": [{"name": "ci", "step": "reserved", "since": 1.0, "ip": "", "reason": "",
                "host": None}]}


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch) -> None:
    monkeypatch.setattr(client_mod.time, "sleep", lambda s: None)


def run(*args: str, env: dict[str, str] | None = None):
    env = {"DYNVM_URL": URL, "DYNVM_TOKEN": "dvm_secret", "DYNVM_CLIENT_CONFIG": "/nonexistent",
           **(env or {})}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_no_url_or_token_is_exit_2() -> None:
    r = CliRunner().invoke(main, ["list"], env={"DYNVM_URL": "", "DYNVM_TOKEN": "",
                                                "DYNVM_CLIENT_CONFIG": "/nonexistent"})
    assert r.exit_code == 2 and "no dynvm URL" in r.output


def test_config_file_is_read(tmp_path) -> None:
    cfg = tmp_path / "client.ini"
    cfg.write_text(f"[client]\nurl={URL}\ntoken=dvm_file\n")
    with requests_mock.Mocker() as m:
        m.get(API + "/vms", json={"vms": []})
        r = CliRunner().invoke(main, ["list"], env={"DYNVM_URL": "", "DYNVM_TOKEN": "",
                                                    "DYNVM_CLIENT_CONFIG": str(cfg)})
        assert r.exit_code == 0, r.output
        assert m.last_request.headers["Authorization"] == "Bearer dvm_file"


def test_4xx_is_exit_4_with_the_problem_detail() -> None:
    with requests_mock.Mocker() as m:
        m.post(API + "/requests", status_code=429, json={
            "type": "about:blank", "title": "Too Many Requests", "status": 429,
            "detail": "quota of team-a exceeded: vms limit 2, in use 2, asked 1"})
        r = run("get", "centos")
        assert r.exit_code == 4
        assert "429" in r.output and "vms limit 2, in use 2" in r.output
        assert m.call_count == 1


def test_validation_errors_are_listed() -> None:
    with requests_mock.Mocker() as m:
        m.post(API + "/requests", status_code=422, json={
            "title": "Unprocessable Content", "status": 422, "detail": "does not match",
            "errors": [{"loc": ["os"], "msg": "String should match pattern"}]})
        r = run("get", "bad os")
        assert r.exit_code == 4 and "os: String should match pattern" in r.output


def test_5xx_on_a_read_is_retried_then_exit_5() -> None:
    with requests_mock.Mocker() as m:
        m.get(API + "/vms", [{"status_code": 503, "json": {"detail": "store down"}}] * 3)
        r = run("list")
        assert r.exit_code == 5 and "store down" in r.output
        assert m.call_count == 3


def test_read_recovers_after_a_retry() -> None:
    with requests_mock.Mocker() as m:
        m.get(API + "/vms", [{"status_code": 502, "text": "bad gateway"},
                             {"json": {"vms": []}}])
        r = run("list")
        assert r.exit_code == 0 and "no VMs" in r.output and m.call_count == 2


def test_a_post_is_never_retried() -> None:
    with requests_mock.Mocker() as m:
        m.post(API + "/requests", status_code=503, json={"detail": "no capacity"})
        r = run("get", "centos", "-n", "2")
        assert r.exit_code == 5 and m.call_count == 1


def test_timeout_and_refused_connection_are_exit_3() -> None:
    with requests_mock.Mocker() as m:
        m.get(API + "/capacity", exc=requests.ConnectTimeout)
        r = run("capacity")
        assert r.exit_code == 3 and "did not answer" in r.output and m.call_count == 3
    with requests_mock.Mocker() as m:
        m.get(API + "/capacity", exc=requests.ConnectionError("Connection refused"))
        r = run("capacity")
        assert r.exit_code == 3 and "cannot reach" in r.output


def test_not_json_is_a_server_error() -> None:
    with requests_mock.Mocker() as m:
        m.get(API + "/vms", text="<html>proxy</html>")
        assert run("list").exit_code == 5


def test_get_without_wait_prints_the_request_and_sends_the_options() -> None:
    with requests_mock.Mocker() as m:
        m.post(API + "/requests", status_code=202, json=REQ)
        r = run("get", "centos", "-n", "1", "--name", "ci", "--lease", "120", "--label", "perf")
        assert r.exit_code == 0, r.output
        assert REQ["id"] in r.output
        assert m.last_request.json() == {"os": "centos", "count": 1, "name": "ci",
                                         "lease_minutes": 120, "labels": ["perf"]}


def test_get_wait_json_follows_to_the_end() -> None:
    done = {**REQ, "state": "done", "vms": [{**REQ["vms"][0], "step": "ready",
                                             "ip": "10.0.0.5"}]}
    with requests_mock.Mocker() as m:
        m.post(API + "/requests", status_code=202, json=REQ)
        m.get(API + f"/requests/{REQ['id']}", [{"json": REQ}, {"json": done}])
        r = run("get", "centos", "--wait", "--json")
        assert r.exit_code == 0, r.output
        assert json.loads(r.output)["vms"][0]["ip"] == "10.0.0.5"
        assert "wait=" in m.last_request.url


def queued(position: int, eta: float | None) -> dict[str, Any]:
    return {**REQ, "state": "queued", "vms": [], "queue": {
        "reason": "waiting for room: 1 centos VM(s) asked, 0 fit now, 1 short", "since": 1.0,
        "deadline": 3601.0, "priority": 0, "waited": 5.0, "position": position, "waiting": 4,
        "eta_secs": eta}}


def test_get_wait_shows_where_a_queued_request_stands() -> None:
    done = {**REQ, "state": "done", "vms": [{**REQ["vms"][0], "step": "ready",
                                             "ip": "10.0.0.5"}]}
    with requests_mock.Mocker() as m:
        m.post(API + "/requests", status_code=202, json=queued(3, 250.0))
        m.get(API + f"/requests/{REQ['id']}", [
            {"json": queued(3, 250.0)}, {"json": queued(1, 40.0)}, {"json": queued(1, None)},
            {"json": REQ}, {"json": done}])
        r = run("get", "centos", "--wait", "--priority", "3", "--max-wait", "30")
        assert r.exit_code == 0, r.output
        assert m.request_history[0].json() == {"os": "centos", "count": 1, "priority": 3,
                                               "max_wait_minutes": 30}
    lines = [line for line in r.output.splitlines() if line.startswith("queued")]
    assert lines == [
        "queued, position 3 of 4, about 4 min: waiting for room: 1 centos VM(s) asked, "
        "0 fit now, 1 short",
        "queued, position 1 of 4, about 40 s: waiting for room: 1 centos VM(s) asked, "
        "0 fit now, 1 short",
        "queued, position 1 of 4, no estimate yet: waiting for room: 1 centos VM(s) asked, "
        "0 fit now, 1 short"], r.output
    assert "10.0.0.5" in r.output


def test_get_no_queue_and_a_request_that_expired() -> None:
    expired = {**queued(1, None), "state": "expired", "finished": 9.0,
               "error": "expired: no room within its longest wait of 60 min after waiting "
                        "3600 s in the queue; no VM was built"}
    with requests_mock.Mocker() as m:
        m.post(API + "/requests", status_code=202, json=queued(2, 90 * 60.0))
        r = run("get", "centos", "--no-queue")
        assert m.last_request.json() == {"os": "centos", "count": 1, "queue": False}
        assert r.exit_code == 0 and "queued, position 2 of 4, about 1.5 h" in r.output
        m.get(API + f"/requests/{REQ['id']}", json=expired)
        r = run("status", REQ["id"])
        assert r.exit_code == 1 and "expired: no room within its longest wait" in r.output


def test_a_failed_request_is_exit_1() -> None:
    failed = {**REQ, "state": "failed", "error": "no IP",
              "vms": [{**REQ["vms"][0], "step": "failed", "reason": "no IP"}]}
    with requests_mock.Mocker() as m:
        m.get(API + f"/requests/{REQ['id']}", json=failed)
        r = run("status", REQ["id"])
        assert r.exit_code == 1 and "no IP" in r.output


def test_a_cancel_shows_its_whole_reason_while_watched() -> None:
    why = ("cancelled by team-a while it was being built; what was built of it was destroyed "
           "with its disks")
    cancelled = {**REQ, "state": "cancelled", "error": "cancelled by team-a after 4 s: 0 VM(s) "
                 "already built were destroyed with their disks, 1 stopped while being built",
                 "vms": [{**REQ["vms"][0], "step": "cancelled", "reason": why}]}
    with requests_mock.Mocker() as m:
        m.post(API + "/requests", status_code=202, json=REQ)
        m.get(API + f"/requests/{REQ['id']}", json=cancelled)
        r = CliRunner().invoke(main, ["get", "centos", "--wait"], terminal_width=60,
                               env={"DYNVM_URL": URL, "DYNVM_TOKEN": "dvm_secret",
                                    "DYNVM_CLIENT_CONFIG": "/nonexistent", "COLUMNS": "60"},
                               catch_exceptions=False)
    assert r.exit_code == 1, r.output
    flat = " ".join(r.output.split())
    assert flat.count("destroyed with its disks") >= 2, r.output  # the bar and the table, whole
    assert "1 stopped while being built" in flat


def test_release_several_reports_each() -> None:
    with requests_mock.Mocker() as m:
        m.delete(API + "/vms/a1", json={"name": "a1"})
        m.delete(API + "/vms/a2", status_code=404, json={"detail": "no VM named a2"})
        r = run("release", "a1", "a2")
        assert r.exit_code == 4
        assert "released a1" in r.output and "no VM named a2" in r.output
