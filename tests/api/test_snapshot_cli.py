"""`dynvm snapshot` / `dynvm revert` at the HTTP edge: what they send, what they
print, and the exit codes of refusals (`requests-mock` stands in for the server)."""

from __future__ import annotations

import requests_mock

from tests.api.test_client_cli import API, no_backoff, run  # noqa: F401 (fixture)

SNAP = {"vm": "web1", "name": "clean", "uuid": "u-1", "taken": "20261207T17:55:00Z"}


def problem(status: int, detail: str) -> dict[str, object]:
    return {"type": "about:blank", "title": "x", "status": status, "detail": detail}


def test_snapshot_sends_the_name_and_prints_it() -> None:
    with requests_mock.Mocker() as m:
        m.post(API + "/vms/web1/snapshots", status_code=201, json=SNAP)
        r = run("snapshot", "web1", "--as", "clean")
        assert r.exit_code == 0, r.output
        assert m.last_request.json() == {"name": "clean"}
        assert "web1: snapshot clean taken" in r.output


def test_revert_without_a_snapshot_asks_for_the_newest() -> None:
    with requests_mock.Mocker() as m:
        m.post(API + "/vms/web1/revert", json=SNAP)
        r = run("revert", "web1")
        assert r.exit_code == 0, r.output
        assert m.last_request.json() == {}
        assert "web1: reverted to snapshot clean" in r.output


def test_unknown_vm_or_snapshot_is_exit_4_with_the_detail() -> None:
    with requests_mock.Mocker() as m:
        m.post(API + "/vms/web1/revert", status_code=404,
               json=problem(404, "VM web1: the VM has no snapshot named 'old'"))
        r = run("revert", "web1", "old")
        assert r.exit_code == 4
        assert m.last_request.json() == {"snapshot": "old"}
        assert "no snapshot named 'old'" in r.output


def test_refused_by_xenserver_is_exit_4_and_server_failure_exit_5() -> None:
    with requests_mock.Mocker() as m:
        m.post(API + "/vms/web1/snapshots", status_code=409,
               json=problem(409, "VM web1: XenServer refused (VM_BAD_POWER_STATE)"))
        r = run("snapshot", "web1")
        assert r.exit_code == 4 and "VM_BAD_POWER_STATE" in r.output
        assert m.call_count == 1  # a POST is never retried
        m.post(API + "/vms/web1/snapshots", status_code=502,
               json=problem(502, "xenhost1 does not answer"))
        r = run("snapshot", "web1")
        assert r.exit_code == 5 and "does not answer" in r.output
