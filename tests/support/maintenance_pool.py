"""The maintenance pool (`testbed.pools`) served, with dynvm over it, for the tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dynvm.core.clock import SYSTEM, Clock
from dynvm.core.release import release_lease
from dynvm.core.services import Dynvm
from dynvm.runtime.bootstrap import build_service
from dynvm.sim import Farm
from testbed.inis import Ini
from testbed.pools import SHARED_SR, maintenance_pool
from tests.service.conftest import FAST, SPEED, write_ini

__all__ = ["SHARED_SR", "maintenance_farm", "maintenance_ini", "maintenance_pool",
           "maintenance_service"]


@contextmanager
def maintenance_farm(speed: float = SPEED) -> Iterator[Farm]:
    """The maintenance pool, served over XML-RPC, stopped afterwards."""
    f = Farm([("pool1", maintenance_pool())], speed=speed).start()
    try:
        yield f
    finally:
        f.stop()


def maintenance_ini(tmp_path: Path, farm: Farm) -> Path:
    """dynvm's INI for the farm, every VM's disks on the shared SR."""
    return write_ini(tmp_path, farm, hosts=Ini.of_farm(farm, storage_name=SHARED_SR))


@contextmanager
def maintenance_service(ini: Path, release_leases: bool = False,
                        clock: Clock = SYSTEM) -> Iterator[Dynvm]:
    """dynvm on `ini`; with `release_leases`, what it handed out is released afterwards
    (a farm shared by several tests starts each one empty of dynvm's VMs)."""
    s = build_service(str(ini), timings=FAST, clock=clock)
    try:
        yield s
    finally:
        if release_leases:
            for lease in s.ctx.store.leases.find():
                release_lease(s.ctx, lease, reason="test teardown")
        s.close()
