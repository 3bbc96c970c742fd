"""Host maintenance against the simulator: drain, placement exclusion, dry run, refusal.

A pool of 4 hosts on shared storage with 48 foreign guests plus 12 dynvm VMs
(N+1 but not N+2), driven through the official XenAPI client.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from dynvm.cli import main
from dynvm.core.answers import ServersRequest
from dynvm.core.capacity import host_key
from dynvm.core.maintenance import state as S
from dynvm.core.services import Dynvm
from dynvm.runtime.bootstrap import build_service
from dynvm.sim import Farm
from testbed.inis import Ini
from tests.service.conftest import SPEED, write_ini
from tests.support.maintenance_pool import (
    SHARED_SR,
    maintenance_farm,
    maintenance_ini,
    maintenance_pool,
    maintenance_service,
)

READ_PREFIXES = ("session.", "event.", "event_from")  # XenAPI sends event.from as event_from


def write_calls(counts: dict[str, dict[str, int]]) -> dict[str, int]:
    """Calls that change something: anything but getters, sessions and events."""
    out: dict[str, int] = {}
    for per_host in counts.values():
        for method, n in per_host.items():
            base = method.removeprefix("Async.")
            verb = base.split(".", 1)[-1]
            if base.startswith(READ_PREFIXES) or verb.startswith("get_"):
                continue
            out[method] = out.get(method, 0) + n
    return out


@pytest.fixture(scope="module")
def mfarm() -> Iterator[Farm]:
    with maintenance_farm() as f:
        yield f


@pytest.fixture
def ini(tmp_path: Path, mfarm: Farm) -> Path:
    return maintenance_ini(tmp_path, mfarm)


@pytest.fixture
def svc(ini: Path) -> Iterator[Dynvm]:
    with maintenance_service(ini, release_leases=True) as s:
        yield s


def test_dry_run_prints_the_plan_and_changes_nothing(svc: Dynvm, ini: Path, mfarm: Farm) -> None:
    svc.legacy.get_servers(ServersRequest(name="dry", count=12))
    before = S.get_status(svc.ctx.store, 1)
    mfarm.reset_call_counts()
    result = CliRunner().invoke(main, ["maintenance", "reboot", "--config", str(ini), "1"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("dynvm plan (auto): 4 host(s)")
    assert lines[1].startswith("1. xenhost1-1:")  # the master first
    assert any(" migrate dry" in line and "free GiB:" in line for line in lines)
    assert "dry run: nothing changed" in result.output
    assert write_calls(mfarm.call_counts()) == {}
    assert S.get_status(svc.ctx.store, 1) == before
    assert svc.ctx.store.locks.holder(S.lock_name(1)) is None

    as_json = CliRunner().invoke(main, ["maintenance", "reboot", "--config", str(ini), "1",
                                        "--json"])
    plan = json.loads(as_json.output)
    assert plan["ok"] and plan["migrations"] > 0 and plan["hosts"][0]["host"] == "xenhost1-1"
    assert write_calls(mfarm.call_counts()) == {}


def test_drain_in_the_store_stops_placement_everywhere(svc: Dynvm, ini: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    before = svc.legacy.available("centos", frozenset(), False).count
    assert before > 0
    # --config after the subcommand works as well as before it (and $DYNVM_CONFIG below).
    out = CliRunner().invoke(main, ["hosts", "drain", "1", "--config", str(ini)])
    assert out.exit_code == 0, out.output
    # Another process (a fresh core on the same store) sees it.
    other = build_service(str(ini), background=False)
    try:
        assert other.legacy.available("centos", frozenset(), False).count == 0
        listing = CliRunner().invoke(main, ["--config", str(ini), "hosts", "--json"])
        report = json.loads(listing.output)
        assert report[0]["drained"] is True and report[0]["drained_by"] == "store"
        assert len(report[0]["members"]) == 4
        assert sum(m["vms"] for m in report[0]["members"]) >= 48
    finally:
        other.close()
    from dynvm.core.errors import NoCapacity

    with pytest.raises(NoCapacity):
        svc.legacy.get_servers(ServersRequest(name="drained", count=1))
    monkeypatch.setenv("DYNVM_CONFIG", str(ini))
    out = CliRunner().invoke(main, ["hosts", "undrain", "1"])
    assert out.exit_code == 0, out.output
    assert svc.legacy.available("centos", frozenset(), False).count == before
    bad = CliRunner().invoke(main, ["hosts", "--config", str(ini), "drain", "9"])
    assert bad.exit_code == 2 and "xenhost9" in bad.output


def test_host_in_maintenance_takes_no_vm_and_is_not_counted(svc: Dynvm) -> None:
    view = svc.ctx.view(svc.config().hosts[1])
    member = sorted(view.hosts, key=lambda h: h.name_label)[1]
    before = svc.legacy.available("centos", frozenset(), False).count
    S.set_in_maintenance(svc.ctx.store, host_key(1, member.uuid), True, "test")
    try:
        during = svc.legacy.available("centos", frozenset(), False).count
        assert 0 < during < before
        got = svc.legacy.get_servers(ServersRequest(name="avoid", count=6))
        leases = [svc.ctx.store.leases.get(r.vm_uuid) for r in got.servers]
        assert len(leases) == 6
        assert all(lease is not None and lease.host_uuid != member.uuid for lease in leases)
    finally:
        S.set_in_maintenance(svc.ctx.store, host_key(1, member.uuid), False)


def test_api_routes(svc: Dynvm) -> None:
    from dynvm.api import create_app

    client = create_app(service=svc).test_client()
    hosts = client.get("/hosts").get_json()
    assert hosts[0]["ref"] == 1 and not hosts[0]["drained"]
    assert client.post("/hosts/1/drain").get_json()["drained"] is True
    assert client.get("/hosts").get_json()[0]["drained"] is True
    assert client.post("/hosts/1/undrain").get_json()["drained"] is False
    assert client.post("/hosts/7/drain").status_code == 400
    dry = client.post("/maintenance/1", json={"execute": False, "parallel": 2})
    assert dry.status_code == 200 and dry.get_json()["plan"]["ok"]
    assert client.post("/maintenance/1", json={"parallel": 0}).status_code == 400
    assert client.post("/maintenance/1", json={"execute": "yes"}).status_code == 400
    assert client.post("/maintenance/1", json={"bogus": 1}).status_code == 400
    assert client.get("/maintenance").status_code == 200
    assert "maintenance" in client.get("/health").get_json()


def test_pool_not_n_plus_1_is_refused(tmp_path: Path) -> None:
    tight = maintenance_pool(hosts=2, vms_per_host=12, host_memory_gib=64)
    with Farm([("tight", tight)], speed=SPEED).start() as farm:
        ini = write_ini(tmp_path, farm, hosts=Ini.of_farm(farm, storage_name=SHARED_SR))
        farm.reset_call_counts()
        out = CliRunner().invoke(main, ["maintenance", "reboot", "--config", str(ini), "1",
                                        "--exec"])
        assert out.exit_code == 2, out.output
        assert "not N+1" in out.output and "xenhost1-1 lacks" in out.output
        assert "GiB" in out.output
        assert write_calls(farm.call_counts()) == {}


def test_one_run_per_pool(svc: Dynvm, ini: Path, mfarm: Farm) -> None:
    store = svc.ctx.store
    assert store.locks.acquire(S.lock_name(1), "other-instance", 60)
    try:
        mfarm.reset_call_counts()
        out = CliRunner().invoke(main, ["maintenance", "reboot", "--config", str(ini), "1",
                                        "--exec"])
        assert out.exit_code == 2, out.output
        assert "already running" in out.output and "other-instance" in out.output
        assert write_calls(mfarm.call_counts()) == {}
        from dynvm.api import create_app

        client = create_app(service=svc).test_client()
        busy = client.post("/maintenance/1", json={"execute": True})
        assert busy.status_code == 409 and busy.get_json()["held_by"] == "other-instance"
        assert write_calls(mfarm.call_counts()) == {}
        S.put_status(store, 1, state="running", host_name="xenhost1-2", step="migrate")
        shown = CliRunner().invoke(main, ["maintenance", "status", "--config", str(ini)])
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.output)["1"]["held_by"] == "other-instance"
        assert json.loads(shown.output)["1"]["state"] == "running"
    finally:
        store.locks.release(S.lock_name(1), "other-instance")
        store.documents.update(S.status_key(1), lambda d: None)


def _add(t: dict, cls: str, **fields: object) -> str:
    import uuid

    from dynvm.sim.datamodel import default_record, new_ref

    ref = new_ref()
    rec = default_record(cls)
    rec.update(uuid=str(uuid.uuid4()), **fields)
    t[cls][ref] = rec
    return ref


def test_vms_that_cannot_live_migrate_are_named_with_the_reason(tmp_path: Path) -> None:
    from dynvm.sim.datamodel import rebuild_derived

    t = maintenance_pool()
    host = next(iter(t["host"]))
    guests = [ref for ref, v in t["VM"].items() if v["resident_on"] == host
              and not v["is_control_domain"] and not v["is_a_template"]]
    local = _add(t, "SR", name_label="Local storage", type="ext", content_type="user",
                 shared=False, physical_size=1 << 40)
    _add(t, "PBD", host=host, SR=local, currently_attached=True)
    isos = _add(t, "SR", name_label="Local ISOs", type="iso", content_type="iso", shared=False)
    _add(t, "PBD", host=host, SR=isos, currently_attached=True)
    disk_vm, cd_vm = guests[0], guests[1]
    for vbd in t["VBD"].values():
        if vbd["VM"] == disk_vm and vbd["type"] == "Disk":
            t["VDI"][vbd["VDI"]]["SR"] = local
    iso = _add(t, "VDI", name_label="tools.iso", SR=isos, type="user", virtual_size=1 << 20)
    _add(t, "VBD", VM=cd_vm, VDI=iso, type="CD", device="xvdd", userdevice="3", mode="RO",
         empty=False, currently_attached=True)
    rebuild_derived(t)
    with Farm([("blocked", t)], speed=SPEED).start() as farm:
        ini = write_ini(tmp_path, farm, hosts=Ini.of_farm(farm, storage_name=SHARED_SR))
        out = CliRunner().invoke(main, ["maintenance", "reboot", "--config", str(ini), "1"])
        assert out.exit_code == 2, out.output
        text = out.output
        assert (f"VM {t['VM'][disk_vm]['name_label']} on" in text
                and "disk on host-local SR 'Local storage' (no storage motion)" in text)
        assert (f"VM {t['VM'][cd_vm]['name_label']} on" in text
                and "CD attached from host-local SR 'Local ISOs'" in text)
