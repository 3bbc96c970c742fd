"""A reload that drops a host holding leases is refused; a VM on a dropped host is never
forgotten while it runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from click.testing import CliRunner

from dynvm.api import create_app
from dynvm.cli import main
from dynvm.runtime.bootstrap import build_service
from testbed.inis import Ini
from tests.service.conftest import FAST, _release_everything, write_ini


def _ini(tmp_path: Path, farm) -> tuple[Path, str, str]:
    """The file with both hosts, its text, and its text without [xenhost2]."""
    path = write_ini(tmp_path, farm)
    full = path.read_text()
    return path, full, Ini.parse(full).drop("xenhost2").text()


def test_reload_dropping_a_leased_host_is_refused_until_confirmed(tmp_path, farm, clean_farm,
                                                                  probe) -> None:
    path, full, cut = _ini(tmp_path, farm)
    svc = build_service(str(path), timings=FAST)
    watcher = cast(Any, svc)._rt._config.__self__  # the ConfigWatcher whose method it is
    client = create_app(service=svc).test_client()
    try:
        r = client.get("/getservers/kept?os=centos&xhostref=2")
        assert r.status_code == 200, r.get_data(as_text=True)
        path.write_text(cut)
        assert watcher.reload() is False
        assert 2 in svc.config().hosts
        health = json.loads(client.get("/health").get_data(as_text=True))
        assert "xenhost2" in health["config"]["error"] and health["status"] == "degraded"
        # The operator confirms: the file is taken, and the VM on xenhost2 is still
        # destroyed on release with the connection data the host had.
        assert CliRunner().invoke(main, ["check-config", "--accept-removal", str(path)]
                                  ).exit_code == 0
        assert watcher.reload() is True
        assert 2 not in svc.config().hosts
        r = client.get("/releaseservers/kept")
        assert r.status_code == 200, r.get_data(as_text=True)
        assert probe.vms_named("kept") == []
    finally:
        path.write_text(full)
        watcher.reload()
        _release_everything(svc)
        svc.close()


def test_release_on_an_unconfigured_host_never_answers_200_with_the_vm_running(
        tmp_path, farm, clean_farm, probe) -> None:
    path, full, cut = _ini(tmp_path, farm)
    svc = build_service(str(path), timings=FAST)
    client = create_app(service=svc).test_client()
    r = client.get("/getservers/orphan?os=centos&xhostref=2")
    assert r.status_code == 200, r.get_data(as_text=True)
    svc.close()
    # A process started on the cut file has never known xenhost2.
    path.write_text(cut)
    later = build_service(str(path), timings=FAST, background=False)
    try:
        r = create_app(service=later).test_client().get("/releaseservers/orphan")
        assert r.status_code == 409, r.get_data(as_text=True)
        assert "xenhost2" in r.get_data(as_text=True)
        assert [vm["name_label"] for vm in probe.vms_named("orphan")] == ["orphan"]
        assert [lease.name for lease in later.ctx.store.leases.find(name="orphan")] == ["orphan"]
    finally:
        later.close()
        path.write_text(full)
        again = build_service(str(path), timings=FAST)
        try:
            assert create_app(service=again).test_client().get(
                "/releaseservers/orphan").status_code == 200
            _release_everything(again)
        finally:
            again.close()
