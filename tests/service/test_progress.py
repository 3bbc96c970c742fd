"""Per-VM build steps recorded in the request record, as watchers see them."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from dynvm.core import progress
from dynvm.core.progress import Step


@pytest.fixture
def service(tmp_path, farm, ssh_port, clean_farm):
    """The usual service, with the guests' SSH port so `checkvms` can be shown too."""
    from dynvm.runtime.bootstrap import build_service
    from tests.service.conftest import FAST, _release_everything, write_ini

    svc = build_service(str(write_ini(tmp_path, farm, common={"vm.ssh.port": ssh_port})),
                        timings=FAST)
    try:
        yield svc
    finally:
        _release_everything(svc)
        svc.close()


@pytest.fixture
def steps(service, monkeypatch) -> dict[str, list[str]]:
    """Every step noted per VM, in order, while the store still records them all."""
    seen: dict[str, list[str]] = defaultdict(list)
    store = service.ctx.store
    real = store.requests.note_vm

    def spy(request_id: str, name: str, entry: dict) -> None:
        seen[name].append(entry["step"])
        real(request_id, name, entry)

    monkeypatch.setattr(store.requests, "note_vm", spy)
    return seen


def only_request(service):
    (req,) = [r for r in service.ctx.store.requests.find() if not r.id.startswith("warm-")]
    return req


def test_steps_of_a_build_in_order(client, service, steps) -> None:
    r = client.get("/getservers/prog?os=centos&count=2&format=detailed&checkvms=true")
    assert r.status_code == 200, r.text
    ips = json.loads(r.text)
    want = ["reserved", "cloning", "provisioning", "starting", "waiting for IP",
            "checking SSH", "ready"]
    assert dict(steps) == {"prog1": want, "prog2": want}
    req = only_request(service)
    got = {p.name: p for p in progress.of_request(req)}
    assert {n: (p.step, p.ip) for n, p in got.items()} == {
        n: (Step.READY, ip) for n, ip in ips.items()}
    assert all(p.since >= req.started for p in got.values())
    client.get("/releaseservers/prog?count=2")


def test_failed_step_carries_the_reason(client, service, farm, steps) -> None:
    farm.fail_next("VM.provision", 1, "SR_BACKEND_FAILURE_44",
                   ["", "There is insufficient space", ""])
    r = client.get("/getservers/pfail?os=centos&allornone=false")
    assert r.status_code == 502, r.text
    assert steps["pfail"] == ["reserved", "cloning", "provisioning", "failed"]
    (p,) = progress.of_request(only_request(service))
    assert p.step is Step.FAILED and "SR_BACKEND_FAILURE_44" in p.reason


def test_unknown_steps_are_left_out() -> None:
    from dynvm.core.store import RequestRecord

    req = RequestRecord(id="r", name="n", os="centos", count=2, instance="i", started=1.0,
                        detail={"vms": {"n1": {"step": "teleporting", "since": 2.0},
                                        "n2": {"step": "cloning", "since": 3.0}}})
    assert [(p.name, p.step) for p in progress.of_request(req)] == [("n2", Step.CLONING)]
