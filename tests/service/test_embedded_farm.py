"""The farm `dynvm serve` embeds when it has no configuration (`dynvm sim --pools 2
--hosts 2 --shared-sr`): big enough to try things, maintenance included. The README's
maintenance one-liner plans and runs a rolling reboot on it, and every VM stays up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from dynvm.cli.embedded import EMBEDDED_HOSTS, EMBEDDED_POOLS
from dynvm.cli.main import main
from dynvm.core.answers import ServersRequest
from dynvm.sim import Farm
from dynvm.sim.farmgen import SHARED_SR
from dynvm.sim.runner import build_farm
from tests.service.conftest import SPEED, dynvm_on, write_ini


@pytest.fixture(scope="module")
def embedded() -> Iterator[Farm]:
    # As `dynvm serve` starts it (dynvm.cli.embedded.embedded_farm), at the tests' speed.
    f = build_farm(EMBEDDED_HOSTS, EMBEDDED_POOLS, 0, [], "127.0.0.1", 0, SPEED, False,
                   shared_sr=True).start()
    try:
        yield f
    finally:
        f.stop()


def test_two_pools_of_two_hosts_on_shared_storage(embedded: Farm) -> None:
    assert [len(p.hosts) for p in embedded.pools] == [2, 2]
    ini = embedded.ini_sections()
    assert ini.count("[xenhost") == 2 and ini.count(f"host.storage.name={SHARED_SR}") == 2


def test_the_readme_maintenance_one_liner_plans_and_runs(tmp_path: Path, embedded: Farm) -> None:
    ini = write_ini(tmp_path, embedded)
    with dynvm_on(ini) as svc:
        got = svc.legacy.get_servers(ServersRequest(name="stay", os="centos", count=2,
                                                    xhostref=1))
        assert len(got.servers) == 2 and not got.failed
        plan = CliRunner().invoke(main, ["maintenance", "reboot", "1", "--config", str(ini)])
        assert plan.exit_code == 0, plan.output
        assert "refused" not in plan.output and "host-local" not in plan.output, plan.output
        assert "dry run: nothing changed" in plan.output
        run = CliRunner().invoke(main, ["maintenance", "reboot", "1", "--exec",
                                        "--config", str(ini)])
        assert run.exit_code == 0, run.output
        status = CliRunner().invoke(main, ["--config", str(ini), "maintenance", "status"])
        assert status.exit_code == 0 and '"done"' in status.output, status.output
        leases = {lease.name: lease for lease in svc.ctx.store.leases.find()}
        assert set(leases) >= {"stay1", "stay2"}
        view = svc.ctx.view(svc.config().hosts[1])
        for name in ("stay1", "stay2"):
            vm = view.vms[leases[name].vm_uuid]
            assert vm.power_state == "Running", (name, vm.power_state)
