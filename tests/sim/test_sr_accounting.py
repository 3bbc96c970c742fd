"""SR space accounting over the wire: every disk a call makes, grows or
destroys moves the SR's physical_utilisation and virtual_allocation by the
disk's own figures, a refused call moves nothing, and the totals come back to
where they started once the disks are gone."""

from __future__ import annotations

import re
from typing import Any

from dynvm.sim import Farm

from .test_conformance_ops import details
from .test_xapi_rules import local_sr, setup

MIB = 1 << 20


def totals(x: Any, sr: str) -> tuple[int, int]:
    rec = x.SR.get_record(sr)
    return int(rec["physical_utilisation"]), int(rec["virtual_allocation"])


def new_disk(x: Any, sr: str, size: int, used: int = 0) -> str:
    return x.VDI.create({"name_label": "acct", "SR": sr, "virtual_size": str(size),
                         "physical_utilisation": str(used), "type": "user",
                         "sharable": False, "read_only": False, "other_config": {}})


def test_create_and_destroy_give_back_what_they_took(farm: Farm, x: Any) -> None:
    sr = local_sr(x, farm.pools[0].master.ref)
    start = totals(x, sr)
    vdi = new_disk(x, sr, 64 * MIB, used=3 * MIB)
    assert totals(x, sr) == (start[0] + 3 * MIB, start[1] + 64 * MIB)
    x.VDI.destroy(vdi)
    assert totals(x, sr) == start


def test_resize_on_a_thin_sr_allocates_only(farm: Farm, x: Any) -> None:
    sr = local_sr(x, farm.pools[0].master.ref)
    vdi = new_disk(x, sr, 8 * MIB, used=MIB)
    before = totals(x, sr)
    x.VDI.resize(vdi, str(24 * MIB))
    assert totals(x, sr) == (before[0], before[1] + 16 * MIB)
    assert int(x.VDI.get_physical_utilisation(vdi)) == MIB
    assert details(x.VDI.resize, vdi, str(MIB))[0] == "SR_BACKEND_FAILURE_79"
    x.VDI.destroy(vdi)
    assert totals(x, sr) == (before[0] - MIB, before[1] - 8 * MIB)


def test_resize_on_a_thick_sr_uses_space_and_stops_at_its_size(farm: Farm, x: Any) -> None:
    (sr,) = x.SR.get_by_name_label("HA heartbeat")
    setup(farm, "SR", sr, allowed_operations=[*x.SR.get_allowed_operations(sr), "vdi_resize"])
    size = int(x.SR.get_physical_size(sr))
    vdi = new_disk(x, sr, 8 * MIB, used=8 * MIB)
    before = totals(x, sr)
    x.VDI.resize(vdi, str(16 * MIB))
    assert totals(x, sr) == (before[0] + 8 * MIB, before[1] + 8 * MIB)
    assert int(x.VDI.get_physical_utilisation(vdi)) == 16 * MIB
    grown = totals(x, sr)
    assert details(x.VDI.resize, vdi, str(size + MIB))[0] == "SR_BACKEND_FAILURE_44"
    assert totals(x, sr) == grown
    assert int(x.VDI.get_virtual_size(vdi)) == 16 * MIB


def test_ha_statefile_is_counted_on_its_sr(farm: Farm, x: Any) -> None:
    (sr,) = x.SR.get_by_name_label("HA heartbeat")
    start = totals(x, sr)
    x.pool.enable_ha([sr], {})
    (statefile,) = x.pool.get_ha_statefiles(x.pool.get_all()[0])
    size = int(x.VDI.get_virtual_size(statefile))
    assert size > 0
    assert totals(x, sr) == (start[0] + size, start[1] + size)
    x.pool.disable_ha()
    x.VDI.destroy(statefile)
    assert totals(x, sr) == start


def test_provision_beyond_the_sr_size_is_refused_and_counts_nothing(farm: Farm, x: Any) -> None:
    sr = local_sr(x, farm.pools[0].master.ref)
    setup(farm, "SR", sr, physical_size=totals(x, sr)[0] + MIB)
    before = totals(x, sr)
    vm = x.VM.clone(x.VM.get_by_name_label("tmpl-cnt7.7")[0], "too-big")
    spec = x.VM.get_other_config(vm)["disks"]
    x.VM.remove_from_other_config(vm, "disks")
    x.VM.add_to_other_config(vm, "disks", re.sub(r'sr="[^"]*"', f'sr="{x.SR.get_uuid(sr)}"', spec))
    assert details(x.VM.provision, vm)[0] == "SR_BACKEND_FAILURE_44"
    assert totals(x, sr) == before
