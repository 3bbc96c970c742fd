"""`dynvm snapshots` / `dynvm snapshot` / `dynvm revert` at the HTTP edge: what they send, what they
print, and the exit codes of refusals (`requests-mock` stands in for the server)."""

from __future__ import annotations

import pytest
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


def test_revert_without_a_snapshot_asks_for_the_newest_and_prints_the_address() -> None:
    with requests_mock.Mocker() as m:
        m.post(API + "/vms/web1/revert", json={**SNAP, "ip": "10.0.0.7"})
        r = run("revert", "web1")
        assert r.exit_code == 0, r.output
        assert m.last_request.json() == {}
        assert "web1: reverted to snapshot clean, address 10.0.0.7" in r.output
        m.post(API + "/vms/web1/revert", json={**SNAP, "ip": ""})
        r = run("revert", "web1", "clean")
        assert r.exit_code == 0 and "reverted to snapshot clean (halted)" in r.output, r.output


def test_snapshots_lists_them_oldest_first() -> None:
    older = {**SNAP, "name": "base", "uuid": "u-0", "taken": "20261207T16:00:00Z"}
    with requests_mock.Mocker() as m:
        m.get(API + "/vms/web1/snapshots",
              json={"vm": "web1", "snapshots": [older, SNAP], "max": 3})
        r = run("snapshots", "web1")
        assert r.exit_code == 0, r.output
        assert "web1: 2 of at most 3 snapshots" in r.output
        assert r.output.index("base") < r.output.index("clean")
        assert "2026-12-07 16:00 UTC" in r.output and "2026-12-07 17:55 UTC" in r.output
        r = run("snapshots", "web1", "--json")
        assert r.exit_code == 0 and '"uuid": "u-0"' in r.output
        m.get(API + "/vms/web1/snapshots", json={"vm": "web1", "snapshots": [], "max": 3})
        r = run("snapshots", "web1")
        assert r.exit_code == 0 and "web1: no snapshot (at most 3)" in r.output, r.output


@pytest.mark.parametrize(("method", "path", "detail", "args", "sent"), [
    ("get", "/vms/nosuch/snapshots", "no VM named nosuch", ("snapshots", "nosuch"), None),
    ("post", "/vms/web1/snapshots",
     "VM web1 has 3 snapshot(s), the most one VM may have (vm.snapshots.max=3)",
     ("snapshot", "web1"), {}),
    ("post", "/vms/web1/revert", "VM web1: the VM has no snapshot named 'old'",
     ("revert", "web1", "old"), {"snapshot": "old"}),
    ("delete", "/vms/web1/snapshots/old", "VM web1: the VM has no snapshot named 'old'",
     ("snapshots", "web1", "--delete", "old"), None),
])
def test_refusals_are_exit_4_with_the_detail(method: str, path: str, detail: str,
                                             args: tuple[str, ...], sent: object) -> None:
    """An unknown VM or snapshot (404), the per-VM limit (409)."""
    status = 409 if "snapshots.max" in detail else 404
    with requests_mock.Mocker() as m:
        m.register_uri(method.upper(), API + path, status_code=status,
                       json=problem(status, detail))
        r = run(*args)
        assert r.exit_code == 4 and detail in r.output, r.output
        if sent is not None:
            assert m.last_request.json() == sent


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


def test_snapshots_delete_deletes_one() -> None:
    with requests_mock.Mocker() as m:
        m.delete(API + "/vms/web1/snapshots/clean", json=SNAP)
        r = run("snapshots", "web1", "--delete", "clean")
        assert r.exit_code == 0 and "web1: snapshot clean deleted" in r.output, r.output
        assert m.call_count == 1 and m.last_request.method == "DELETE"
