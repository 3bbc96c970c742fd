"""The Farm facade itself: generated and DB-loaded farms, INI sections, the
runner used by `dynvm sim` / `dynvm serve`."""

from __future__ import annotations

import configparser
import glob
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dynvm.sim import Farm
from dynvm.sim.oscatalog import OS_CATALOG
from dynvm.sim.runner import run_sim
from tests.support.shared import XAPI_DB

from .conftest import fast_timing, login, wait_for

DB_FILES = sorted(glob.glob(str(XAPI_DB / "*.xml")))


def test_generated_farm_shape_and_ini() -> None:
    with Farm.generate(pools=2, hosts=3, vms_per_host=1, timing=fast_timing()) as farm:
        assert [p.name for p in farm.pools] == ["pool1", "pool2"]
        assert len(farm.hosts) == 6 and len({h.port for h in farm.hosts}) == 6
        for pool in farm.pools:
            assert pool.master.is_master and sum(h.is_master for h in pool.hosts) == 1
            x = login(pool.master.url).xenapi
            assert set(x.host.get_all()) == {h.ref for h in pool.hosts}
            assert x.host.get_address(pool.master.ref) == pool.master.address
        ini = configparser.ConfigParser(interpolation=None)
        ini.read_string(farm.ini_sections(first=3))
        assert ini.sections() == ["xenhost3", "xenhost4"]
        sec = ini["xenhost4"]
        assert sec["host.name"].endswith(farm.pools[1].master.address)
        assert (sec["host.user"], sec["host.password"], sec["host.storage.name"]) == (
            "root", "xenroot", "Local storage")
        for key, os_ in OS_CATALOG.items():
            assert sec[f"{key}.template"] == os_.template_name


@pytest.mark.skipif(not DB_FILES, reason="shared pool databases not present")
def test_farm_from_real_databases() -> None:
    with Farm.from_db(DB_FILES, timing=fast_timing()) as farm:
        assert len(farm.pools) == len(DB_FILES)
        for pool in farm.pools:
            x = login(pool.master.url).xenapi
            vms = x.VM.get_all_records()
            assert len(vms) == len(pool.db.tables["VM"]) > 0
            assert any(r["is_a_template"] for r in vms.values())
            assert x.host.get_all_records() and x.SR.get_all_records()
            assert len(x.event_from(["vm"], "", 0.0)["events"]) == len(vms)
        ini = farm.ini_sections()
        assert ini.count("[xenhost") == len(DB_FILES)


def test_run_sim_writes_ini_and_stops(tmp_path: Path) -> None:
    out = tmp_path / "sim.ini"
    stop = threading.Event()
    t = threading.Thread(target=run_sim, kwargs=dict(
        hosts=2, pools=1, vms_per_host=0, from_db=[], bind="127.0.0.1", port_base=0,
        speed=100.0, https=False, ini_out=str(out), stop_event=stop))
    t.start()
    try:
        wait_for(out.exists)
        ini = configparser.ConfigParser(interpolation=None)
        ini.read_string(out.read_text())
        x = login(ini["xenhost1"]["host.name"]).xenapi
        assert len(x.host.get_all()) == 2
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive()


def test_runner_module_as_child_process(tmp_path: Path) -> None:
    out = tmp_path / "child.ini"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dynvm.sim.runner", "--hosts", "1", "--speed", "100",
         "--ini-out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_for(out.exists, timeout=30)
        ini = configparser.ConfigParser(interpolation=None)
        ini.read_string(out.read_text())
        x = login(ini["xenhost1"]["host.name"]).xenapi
        assert len(x.pool.get_all()) == 1
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "control endpoint: http://127.0.0.1:" in stdout and "[xenhost1]" in stdout
