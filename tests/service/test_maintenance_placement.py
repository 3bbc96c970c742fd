"""Placement during a rolling reboot of a pool whose VM disks are host-local.

dynvm's VMs there (on "Local storage") cannot be live-migrated: one placed on a
host the run has yet to reboot would stop the run when it got there. Every test
catches the run at a given step through its progress callback (the run waits
while the callback acts), never by timing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from dynvm.api import create_app
from dynvm.cli import main
from dynvm.core.errors import MaintenanceFailed
from dynvm.core.maintenance import state as S
from dynvm.core.release import release_names
from dynvm.core.services import Dynvm, Options
from dynvm.runtime.bootstrap import build_service
from dynvm.sim import Farm
from tests.service.conftest import FAST, FarmProbe, _release_everything, wait_until, write_ini
from tests.support.clock import SteppedClock

POOL = 2  # [xenhost2]: xenhost2-1 (its master) and xenhost2-2


def at(step: tuple[str, str], act: Callable[[], None]) -> Callable[[dict], None]:
    """A progress callback that runs `act` once, when the run first reports `step`
    (host name, step name)."""
    done: list[bool] = []

    def progress(status: dict) -> None:
        if not done and (status.get("host_name"), status.get("step")) == step:
            done.append(True)
            act()

    return progress


def stops(svc: Dynvm, match: str, progress: Callable[[dict], None]) -> dict[str, Any]:
    """Run the rolling reboot of the pool, which must stop with an error matching
    `match`; returns its status, "failed"."""
    with pytest.raises(MaintenanceFailed, match=match):
        svc.maintenance.rolling_reboot(POOL, Options(execute=True, poll=0.02), progress)
    status = S.get_status(svc.ctx.store, POOL)
    assert status is not None and status["state"] == "failed", status
    return status


def host_of(probe: FarmProbe, name: str) -> str:
    """The name of the member host a VM runs on."""
    s = probe.session(POOL - 1)
    try:
        x = s.xenapi
        vm = x.VM.get_by_name_label(name)[0]
        return x.host.get_name_label(x.VM.get_resident_on(vm))
    finally:
        s.xenapi.session.logout()


def members(client: FlaskClient) -> dict[str, dict[str, Any]]:
    pool = next(p for p in client.get("/hosts").get_json() if p["ref"] == POOL)
    return {m["name"]: m for m in pool["members"]}


def test_a_vm_asked_for_during_the_run_never_stops_it(service: Dynvm, farm: Farm,
                                                      probe: FarmProbe) -> None:
    client = create_app(service=service).test_client()
    answers: dict[str, Any] = {}

    def ask(name: str) -> Callable[[], None]:
        return lambda: answers.update({name: client.get(f"/getservers/{name}?os=centos"
                                                        f"&xhostref={POOL}")})

    first, second = at(("xenhost2-1", "wait"), ask("early")), at(("xenhost2-2", "wait"),
                                                                  ask("late"))

    def progress(status: dict) -> None:
        first(status)
        second(status)

    try:
        service.maintenance.rolling_reboot(POOL, Options(execute=True, poll=0.02), progress)
        # While the master reboots, its member waits for its turn: a VM there could
        # not move, so there is no room in the pool, and the answer says so.
        assert answers["early"].status_code == 503, answers["early"].get_data(as_text=True)
        assert "No capacity" in answers["early"].get_data(as_text=True)
        # Once the master is back, it takes VMs again, while its member reboots.
        assert answers["late"].status_code == 200, answers["late"].get_data(as_text=True)
        assert host_of(probe, "late") == "xenhost2-1"
        status = S.get_status(service.ctx.store, POOL)
        assert status is not None and status["state"] == "done", status
        assert S.in_maintenance(service.ctx.store) == {}
        assert all(m["enabled"] and not m["in_maintenance"] for m in members(client).values())
    finally:
        release_names(service.ctx, ["late"], reason="test")


@pytest.fixture
def clocked(tmp_path: Path, farm: Farm,
            clean_farm: dict) -> Iterator[tuple[Dynvm, SteppedClock, Path]]:
    """The service (and its INI) on a core clock the test moves itself."""
    clock = SteppedClock()
    ini = write_ini(tmp_path, farm)
    svc = build_service(str(ini), timings=FAST, clock=clock)
    try:
        yield svc, clock, ini
    finally:
        _release_everything(svc)
        svc.close()


def test_a_run_that_stops_gives_back_what_it_can_and_says_what_it_cannot(
        clocked: tuple[Dynvm, SteppedClock, Path], farm: Farm) -> None:
    svc, clock, ini_path = clocked
    client = create_app(service=svc).test_client()
    normal = farm.timing.host_reboot_secs
    farm.timing.host_reboot_secs = 1e9  # the master stays down until the test says

    def give_up() -> None:  # the wait for the master to come back, once begun, times out
        clock.advance_when_waiting(Options().reboot_timeout + 1)

    try:
        status = stops(svc, "xenhost2-1 to come back", at(("xenhost2-1", "wait"), give_up))
        # The member the run had not touched yet is back in placement; the master,
        # down, is left disabled and out of placement, and that is said everywhere.
        left = {h["host"]: h for h in status["hosts_left"]}
        assert set(left) == {"xenhost2-1"} and left["xenhost2-1"]["disabled"] is True
        resume = f"dynvm maintenance reboot {POOL} --exec"
        assert resume in status["error"]
        health = client.get("/health").get_json()["maintenance"][str(POOL)]
        assert [h["host"] for h in health["hosts_left"]] == ["xenhost2-1"]
        assert resume in health["finish"]
        now = members(client)
        assert not now["xenhost2-2"]["in_maintenance"] and now["xenhost2-2"]["enabled"]
        assert now["xenhost2-1"]["in_maintenance"] and now["xenhost2-1"]["left_by_run"]
        # `dynvm hosts` says it from the store, even though [xenhost2]'s configured
        # address (the master, down) does not answer this new process.
        ini = str(ini_path)
        listing = CliRunner().invoke(main, ["hosts", "--config", ini, "--json"])
        assert listing.exit_code == 0, listing.output
        pool = next(p for p in json.loads(listing.output) if p["ref"] == POOL)
        assert [h["host"] for h in pool["hosts_left"]] == ["xenhost2-1"]
        assert resume in pool["left_by"]["finish"] and pool["left_by"]["state"] == "failed"
        table = CliRunner().invoke(main, ["hosts", "--config", ini])
        assert "xenhost2-1" in table.output and resume in table.output
    finally:
        farm.timing.host_reboot_secs = normal
    # By hand: once the master is back, `dynvm hosts undrain` puts it back in placement.
    wait_until(lambda: members(client)["xenhost2-1"]["enabled"], timeout=60,
               what="the master to be back")
    undrain = CliRunner().invoke(main, ["hosts", "--config", str(ini_path), "undrain", str(POOL)])
    assert undrain.exit_code == 0 and "back in it" in undrain.output, undrain.output
    assert S.in_maintenance(svc.ctx.store) == {}
    assert not client.get("/health").get_json()["maintenance"][str(POOL)].get("hosts_left")
    # The other command it names, the resume, finishes the rolling reboot.
    svc.maintenance.rolling_reboot(POOL, Options(execute=True, poll=0.02))
    assert (S.get_status(svc.ctx.store, POOL) or {}).get("state") == "done"
    assert S.in_maintenance(svc.ctx.store) == {}
    assert all(m["enabled"] and not m["in_maintenance"] for m in members(client).values())
    assert "hosts_left" not in client.get("/health").get_json()["maintenance"][str(POOL)]


def test_a_vm_that_cannot_move_stops_the_run_with_its_host_given_back(
        service: Dynvm, farm: Farm, probe: FarmProbe) -> None:
    """A VM started by hand on a host waiting its turn, on a local disk: the run cannot
    reboot that host. It stops there, with the host enabled and in placement again."""
    client = create_app(service=service).test_client()
    started: list[str] = []

    def start_by_hand() -> None:
        s = probe.session(POOL - 1)
        try:
            x = s.xenapi
            member = x.host.get_by_name_label("xenhost2-2")[0]
            local = next(r["uuid"] for r in x.SR.get_all_records().values()
                         if r["name_label"] == "Local storage"
                         and any(x.PBD.get_host(p) == member for p in r["PBDs"]))
            vm = x.VM.clone(x.VM.get_by_name_label("tmpl-cnt7.7")[0], "by-hand")
            spec = x.VM.get_other_config(vm)["disks"]
            x.VM.remove_from_other_config(vm, "disks")
            x.VM.add_to_other_config(vm, "disks", re.sub(r'sr="[^"]*"', f'sr="{local}"', spec))
            x.VM.provision(vm)
            x.VM.start_on(vm, member, False, False)
            started.append(vm)
        finally:
            s.xenapi.session.logout()

    try:
        status = stops(service, "by-hand .*cannot be live-migrated",
                       at(("xenhost2-1", "wait"), start_by_hand))
        assert status["hosts_left"] == []
        assert S.in_maintenance(service.ctx.store) == {}
        assert all(m["enabled"] and not m["in_maintenance"] for m in members(client).values())
    finally:
        s = probe.session(POOL - 1)
        try:
            for vm in started:
                s.xenapi.VM.hard_shutdown(vm)
                for vbd in s.xenapi.VM.get_VBDs(vm):
                    vdi = s.xenapi.VBD.get_VDI(vbd)
                    if vdi != "OpaqueRef:NULL":
                        s.xenapi.VDI.destroy(vdi)
                s.xenapi.VM.destroy(vm)
        finally:
            s.xenapi.session.logout()
