"""`dynvm show`, `summary`, `list` and `history --since` at the HTTP edge (requests-mock
stands in for the server; the served happy path is in tests/service/test_v1_served.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests_mock
from click.testing import CliRunner

from dynvm.cli import main
from dynvm.cli.times import Moment, span
from dynvm.client import http as client_mod

URL = "http://dynvm.test"
API = URL + "/api/v1"


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch) -> None:
    monkeypatch.setattr(client_mod.time, "sleep", lambda s: None)


def run(*args: str, width: int = 80):
    env = {"DYNVM_URL": URL, "DYNVM_TOKEN": "dvm_secret", "DYNVM_CLIENT_CONFIG": "/nonexistent",
           "COLUMNS": str(width), "NO_COLOR": "1", "TERM": "dumb"}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def vm(name: str, *, left: float, age: float = 600.0, owner: str = "team-a",
       os: str = "centos", state: str = "leased") -> dict[str, Any]:
    now = time.time()
    return {"name": name, "owner": owner, "os": os, "state": state, "ip": "10.0.0.7",
            "host": 2, "created": now - age, "expires": now + left, "request_id": "r" * 32,
            "labels": ["perf"]}


def test_list_sorts_by_expiry_shows_age_and_time_left_in_80_columns() -> None:
    vms = [vm("late", left=7200), vm("a-very-long-vm-name-that-a-ci-job-made-" + "x" * 40,
                                     left=3600), vm("soon", left=300, age=3 * 86400)]
    with requests_mock.Mocker() as m:
        m.get(API + "/vms", json={"vms": vms})
        r = run("list")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert "age" in lines[0] and "left" in lines[0] and "owner" not in lines[0]
    names = [line.split()[0] for line in lines[1:]]
    assert names[0] == "soon" and names[2] == "late", lines
    assert names[1].startswith("a-very-long") and names[1].endswith("…")
    assert lines[1].rstrip().endswith("4m 59s") or lines[1].rstrip().endswith("5m 0s")
    assert "3d 0h" in lines[1]


def test_list_names_owners_when_there_are_several() -> None:
    with requests_mock.Mocker() as m:
        m.get(API + "/vms", json={"vms": [vm("a", left=60), vm("b", left=90, owner="team-b")]})
        r = run("list")
    assert "owner" in r.output.splitlines()[0] and "team-b" in r.output


def test_show_tells_everything_about_one_vm() -> None:
    with requests_mock.Mocker() as m:
        m.get(API + "/vms/ci1", json=vm("ci1", left=3600))
        m.get(API + "/requests/" + "r" * 32, json={
            "id": "r" * 32, "state": "done", "vms": [{"name": "ci1", "step": "ready"}]})
        r = run("show", "ci1")
    assert r.exit_code == 0, r.output
    out = r.output
    for text in ("name           ci1", "owner          team-a", "xenhost2", "10.0.0.7",
                 "perf", "(in 59m", "request state  done", "build step     ready"):
        assert text in out, out


def test_show_of_a_missing_vm_is_one_line_and_exit_4() -> None:
    with requests_mock.Mocker() as m:
        m.get(API + "/vms/nope", status_code=404,
              json={"title": "Not Found", "status": 404, "detail": "no VM nope"})
        r = run("show", "nope")
    assert r.exit_code == 4 and r.output == "dynvm: 404: no VM nope\n"


def test_show_keeps_the_vm_when_its_request_is_gone() -> None:
    with requests_mock.Mocker() as m:
        m.get(API + "/vms/ci1", json=vm("ci1", left=60))
        m.get(API + "/requests/" + "r" * 32, status_code=404, json={"detail": "gone"})
        r = run("show", "ci1")
    assert r.exit_code == 0 and "ci1" in r.output and "request state" not in r.output


def test_summary_by_os_and_state_quota_and_queue() -> None:
    quota = {"owner": "team-a", "limits": {"vms": 10, "vcpus": None, "memory_gib": 64},
             "usage": {"vms": 3, "vcpus": 24, "memory_gib": 12}}
    vms = [vm("a", left=60), vm("b", left=600), vm("w", left=900, os="win2019",
                                                   state="releasing")]
    queued = [{"id": "q" * 32, "os": "centos", "count": 2, "created": time.time(),
               "vms": [{"name": "c1", "step": "cloning"}, {"name": "c2", "step": "reserved"}]}]
    with requests_mock.Mocker() as m:
        m.get(API + "/quota", json=quota)
        m.get(API + "/vms", json={"vms": vms})
        m.get(API + "/requests", json={"requests": queued})
        r = run("summary")
        assert m.request_history[1].qs == {"owner": ["team-a"]}
    assert r.exit_code == 0, r.output
    out = r.output
    assert "quota: 3 / 10 VMs, 24 / no limit vCPUs, 12 / 64 GiB memory" in out
    centos = next(line for line in out.splitlines() if line.startswith("centos"))
    assert centos.split() == ["centos", "2", "0", "2"]
    assert "next to expire: a in" in out
    assert "being built: 1 request(s)" in out and "1 cloning, 1 reserved" in out


def test_summary_when_the_server_fails_is_exit_5() -> None:
    with requests_mock.Mocker() as m:
        m.get(API + "/quota", status_code=503, json={"detail": "the store cannot be read"})
        r = run("summary")
    assert r.exit_code == 5 and "the store cannot be read" in r.output


@pytest.mark.parametrize(("text", "ago"), [("2h", 7200), ("3d", 3 * 86400), ("90m", 5400),
                                           ("1w", 7 * 86400)])
def test_since_takes_a_duration_ago(text: str, ago: float) -> None:
    assert Moment(now=lambda: 1_800_000_000.0).convert(text, None, None) == 1_800_000_000.0 - ago


def test_since_takes_an_iso_date_or_epoch() -> None:
    m = Moment()
    assert m.convert("2026-12-01", None, None) == 1796083200.0
    assert m.convert("2026-12-01T08:00", None, None) == 1796083200.0 + 8 * 3600
    assert m.convert("2026-12-01T08:00+01:00", None, None) == 1796083200.0 + 7 * 3600
    assert m.convert("1796083200", None, None) == 1796083200.0


def test_history_since_is_sent_as_epoch_and_a_bad_one_is_exit_2() -> None:
    with requests_mock.Mocker() as m:
        m.get(API + "/history", json={"items": [], "page": 1, "next_page": None})
        r = run("history", "--since", "2026-12-01")
        assert r.exit_code == 0, r.output
        assert m.last_request.qs["since"] == ["1796083200.0"]
        bad = run("history", "--since", "yesterday")
        assert bad.exit_code == 2 and "is not a time" in bad.output
        assert m.call_count == 1


def test_span_reads_as_a_person_would() -> None:
    assert [span(s) for s in (5, 65, 3700, 90000, -65)] == ["5s", "1m 5s", "1h 1m", "1d 1h",
                                                            "-1m 5s"]
    assert span(None) == "-"
