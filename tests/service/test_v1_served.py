"""The v1 API served by gunicorn: the README's client session, and quotas across
workers and instances sharing one store."""

from __future__ import annotations

import re
import shlex
import threading
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from dynvm.cli import main
from dynvm.core import tokens
from dynvm.store.sqlite import SqliteStore
from testbed.serving import side_by_side
from tests.service.conftest import served, wait_until, write_ini

pytestmark = pytest.mark.served

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_session() -> list[list[str]]:
    """The `$ dynvm ...` lines of the README's client session."""
    text = README.read_text()
    block = text.split("<!-- cli-session", 1)[1].split("```console", 1)[1].split("```", 1)[0]
    return [shlex.split(line[2:])[1:] for line in block.splitlines() if line.startswith("$ dynvm ")]


def owned_vms(probe, owner: str) -> list[str]:
    """Names of VMs (templates too: a fresh clone is one) tagged for `owner` on the farm."""
    out = []
    for i in range(len(probe.farm.pools)):
        s = probe.session(i)
        try:
            out += [r["name_label"] for r in s.xenapi.VM.get_all_records().values()
                    if r["other_config"].get("dynvm_owner") == owner]
        finally:
            s.xenapi.session.logout()
    return out


def test_readme_cli_session(tmp_path, farm, probe, clean_farm) -> None:
    ini = write_ini(tmp_path, farm)
    runner = CliRunner()
    made = runner.invoke(main, ["token", "create", "--owner", "team-a", "--config", str(ini)])
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip().splitlines()[-1]
    assert secret.startswith("dvm_")
    listed = runner.invoke(main, ["token", "list", "--config", str(ini)])
    assert "team-a" in listed.output and secret not in listed.output
    session = readme_session()
    assert [cmd[0] for cmd in session] == ["get", "list", "show", "summary", "extend",
                                           "snapshot", "snapshots", "revert", "release",
                                           "release"]
    with served(ini, workers=2, log=tmp_path / "serve.log") as (base, _):
        env = {"DYNVM_URL": base, "DYNVM_TOKEN": secret, "DYNVM_CLIENT_CONFIG": "/nonexistent",
               "COLUMNS": "200"}
        outputs = []
        for args in session:
            r = runner.invoke(main, args, env=env)
            assert r.exit_code == 0, (args, r.output)
            outputs.append(r.output)
        (get, listing, show, summary, extend, snap, snaps, revert, release_one,
         release_all) = outputs
        assert all(f"ci{i}" in get for i in (1, 2, 3)) and "done" in get
        assert len(re.findall(r"\bci[123]\b", listing)) == 3 and "left" in listing
        assert re.search(r"owner\s+team-a", show) and re.search(r"build step\s+ready", show)
        assert "owner team-a" in summary and re.search(r"centos\s+3\s+3", summary), summary
        assert "nothing being built for you" in summary
        assert "ci1 now expires" in extend
        assert "ci1: snapshot clean taken" in snap and "ci1: reverted to snapshot clean" in revert
        assert "ci1: 1 of at most 3 snapshots" in snaps and "clean" in snaps, snaps
        assert re.search(r"address \d+\.\d+\.\d+\.\d+$", revert.strip()), revert  # restarted
        assert "released ci1" in release_one
        assert "released ci2" in release_all and "released ci3" in release_all
        assert owned_vms(probe, "team-a") == []  # ci1's snapshot went with it
        rid = re.search(r"request ([0-9a-f]{32}): done", get).group(1)
        status = runner.invoke(main, ["status", rid, "--json"], env=env)
        assert status.exit_code == 0 and '"state": "done"' in status.output
        cap = runner.invoke(main, ["capacity"], env=env)
        assert cap.exit_code == 0 and "centos" in cap.output
        hist = runner.invoke(main, ["history", "--os", "centos", "--since", "1h"], env=env)
        assert hist.exit_code == 0 and hist.output.count("deleted") == 3
        plain = requests.get(f"{base}/getavailablecount/centos?token={secret}&x=1", timeout=30)
        assert plain.status_code == 200

        def logged() -> str | None:
            text = (tmp_path / "serve.log").read_text()
            return text if "/getavailablecount/centos?token=***&x=1" in text else None
        assert secret not in wait_until(logged, timeout=10, what="the access log line")


def test_quota_holds_across_two_instances_and_workers(tmp_path, farm, probe, clean_farm) -> None:
    ini = write_ini(tmp_path, farm, extra="\n[quota team-q]\nvms=10\n")
    store = SqliteStore(str(tmp_path / "dynvm.sqlite"))
    secret, _ = tokens.create(store, "team-q")
    store.close()
    h = {"Authorization": f"Bearer {secret}"}
    peak = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], len(owned_vms(probe, "team-q")))

    with side_by_side(served(ini, workers=2, log=tmp_path / "a.log"),
                      served(ini, workers=2, log=tmp_path / "b.log")) as [(a, _), (b, _)]:
        watcher = threading.Thread(target=watch)
        watcher.start()
        barrier = threading.Barrier(50)
        answers: list[requests.Response] = [None] * 50  # type: ignore[list-item]

        def ask(i: int) -> None:
            barrier.wait()
            answers[i] = requests.post((a, b)[i % 2] + "/api/v1/requests",
                                       json={"os": "centos"}, headers=h, timeout=120)
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(50)]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            accepted = [r for r in answers if r.status_code == 202]
            refused = [r for r in answers if r.status_code == 429]
            assert len(accepted) == 10 and len(refused) == 40, \
                [r.status_code for r in answers]
            assert all(r.json()["limit"] == "vms" and r.json()["quota"] == 10 for r in refused)
            for r in accepted:
                def finished(r=r):
                    body = requests.get(a + r.headers["Location"] + "?wait=10", headers=h,
                                        timeout=60).json()
                    return body if body["state"] != "running" else None
                assert wait_until(finished, timeout=120, what="a request")["state"] == "done"
            vms = requests.get(b + "/api/v1/vms", headers=h, timeout=30).json()["vms"]
            assert len(vms) == 10
            quota = requests.get(a + "/api/v1/quota", headers=h, timeout=30).json()
            assert quota["usage"]["vms"] == 10
        finally:
            stop.set()
            watcher.join()
            for vm in requests.get(a + "/api/v1/vms", headers=h, timeout=30).json()["vms"]:
                requests.delete(f"{a}/api/v1/vms/{vm['name']}", headers=h, timeout=60)
        assert peak[0] == 10
        wait_until(lambda: owned_vms(probe, "team-q") == [], timeout=30, what="release")
