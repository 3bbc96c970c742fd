"""VM views as a worker keeps them: one per VM of the farm, so what repeats is shared."""

from __future__ import annotations

import pickle
from multiprocessing.reduction import ForkingPickler

import dynvm.xen.shared_inventory  # noqa: F401  (how views travel to the workers)
from dynvm.xen.records import vm_view


def record(i: int) -> dict:
    # Strings built at run time, as XML-RPC makes a new one for every value of every record.
    return {"uuid": f"uuid-{i}", "name_label": f"ci-{i}", "name_description": "",
            "power_state": "".join(["Run", "ning"]), "VCPUs_max": "2",
            "memory_static_max": "4294967296", "resident_on": "OpaqueRef:h1",
            "other_config": {"".join(["dynvm_", "os"]): "".join(["cen", "tos"]),
                             "mac_seed": f"{i:08d}-4924-464b-875c-7526eda87a70"}}


def test_views_share_the_strings_every_vm_repeats() -> None:
    a, b = (vm_view(f"OpaqueRef:{i}", record(i), None, {"OpaqueRef:h1": "host-1"})
            for i in (1, 2))
    assert a.power_state == "Running" and a.power_state is b.power_state
    (key_a, os_a), (key_b, os_b) = (next(iter(v.other_config.items())) for v in (a, b))
    assert key_a is key_b and os_a is os_b == "centos"
    assert a.other_config["mac_seed"] != b.other_config["mac_seed"]  # unique values untouched
    assert not hasattr(a, "__dict__")  # slots: no dictionary per view
    assert pickle.loads(ForkingPickler.dumps(a)) == a  # as the inventory process sends it
