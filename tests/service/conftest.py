"""End-to-end fixtures: a simulated farm over real XML-RPC, and dynvm on top of it.

Every test here talks to the simulator through the official XenAPI client,
exactly as production talks to XenServer. After each test the farm must be
back where it started: no VM the test did not expect, host memory and SR
usage unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import XenAPI

from dynvm.core.background import Timings
from dynvm.core.clock import SYSTEM, Clock
from dynvm.core.services import Dynvm
from dynvm.runtime.bootstrap import build_service
from dynvm.sim import Farm
from testbed.inis import Ini
from testbed.serving import free_port, served, wait_until  # noqa: F401 (re-exported)

FAST = Timings(tick=0.1, leader_ttl=2.0, heartbeat_ttl=2.0, reconcile_every=0.5, fleet_every=0.5)
SPEED = 200.0


class FarmProbe:
    """Reads the farm's truth through XenAPI, for before/after comparisons."""

    def __init__(self, farm: Farm) -> None:
        self.farm = farm

    def session(self, pool_index: int = 0) -> XenAPI.Session:
        s = XenAPI.Session(self.farm.pools[pool_index].master.url)
        s.xenapi.login_with_password("root", "xenroot", "1.0", "dynvm-tests")
        return s

    def state(self) -> dict:
        out = {}
        for i, pool in enumerate(self.farm.pools):
            s = self.session(i)
            try:
                x = s.xenapi
                vms = {r["uuid"]: r["name_label"] for r in x.VM.get_all_records().values()
                       if not r["is_control_domain"]}
                mem = {r["name_label"]: r["memory_free"]
                       for r in _host_metrics(x).values()}
                srs = {r["name_label"] + "/" + r["uuid"][:8]: r["physical_utilisation"]
                       for r in x.SR.get_all_records().values()}
                vdis = len(x.VDI.get_all())
            finally:
                s.xenapi.session.logout()
            out[pool.name] = {"vms": vms, "memory_free": mem, "sr_used": srs, "vdis": vdis}
        return out

    def each_pool(self) -> Iterator[Any]:
        """Every pool's `xenapi`, logged in while the caller uses it."""
        for i in range(len(self.farm.pools)):
            s = self.session(i)
            try:
                yield s.xenapi
            finally:
                s.xenapi.session.logout()

    def vms_named(self, prefix: str) -> list[dict]:
        out = []
        for i in range(len(self.farm.pools)):
            s = self.session(i)
            try:
                out += [r for r in s.xenapi.VM.get_all_records().values()
                        if r["name_label"].startswith(prefix) and not r["is_a_template"]]
            finally:
                s.xenapi.session.logout()
        return out


def _host_metrics(x) -> dict:
    hosts = x.host.get_all_records()
    return {ref: {"name_label": h["name_label"],
                  "memory_free": x.host_metrics.get_memory_free(h["metrics"])}
            for ref, h in hosts.items()}


def write_ini(tmp: Path, farm: Farm, extra: str = "", hosts: Ini | None = None,
              common: Mapping[str, object] | None = None) -> Path:
    """`tmp`/dynvmservice.ini: the farm's hosts (or `hosts`), a short network wait,
    `common` keys, an SQLite store under `tmp`, then the whole sections of `extra`."""
    ini = hosts.copy() if hosts is not None else Ini.of_farm(farm)
    ini.set("common", {"vm.network.timeout.secs": 20, "vm.expiry.minutes": 720, **(common or {})})
    return ini.sqlite_store(tmp).merge(Ini.parse(extra)).write(tmp / "dynvmservice.ini")


@pytest.fixture(scope="module")
def ssh_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def farm(ssh_port: int) -> Iterator[Farm]:
    f = Farm.generate(pools=2, hosts=2, speed=SPEED, guest_ssh_port=ssh_port).start()
    try:
        yield f
    finally:
        f.stop()


@pytest.fixture(scope="module")
def probe(farm: Farm) -> FarmProbe:
    return FarmProbe(farm)


@pytest.fixture
def clean_farm(probe: FarmProbe) -> Iterator[dict]:
    """The farm must be exactly as before once the test is over."""
    before = probe.state()
    yield before
    wait_until(lambda: probe.state() == before, timeout=10,
               what="the farm to be back to its state before the test")


@contextlib.contextmanager
def dynvm_on(ini: Path, clock: Clock = SYSTEM) -> Iterator[Dynvm]:
    """dynvm built from `ini` (fast background timings, `clock`); what it handed out is
    released and it is closed when done."""
    svc = build_service(str(ini), timings=FAST, clock=clock)
    try:
        yield svc
    finally:
        _release_everything(svc)
        svc.close()


@pytest.fixture
def service(tmp_path: Path, farm: Farm, clean_farm: dict) -> Iterator[Dynvm]:
    with dynvm_on(write_ini(tmp_path, farm)) as svc:
        yield svc


def stop_filling(svc: Dynvm) -> None:
    """Stop the background work and wait for warm builds under way to finish."""
    svc.background.stop()
    wait_until(lambda: svc.background.filler.inflight() == 0, timeout=20,
               what="warm builds to finish")


def _release_everything(svc: Dynvm) -> None:
    from dynvm.core.release import release_lease

    for lease in svc.ctx.store.leases.find():
        try:
            release_lease(svc.ctx, lease, reason="test teardown")
        except Exception:
            pass


@pytest.fixture
def client(service: Dynvm):
    from dynvm.api import create_app

    app = create_app(service=service)
    return app.test_client()
