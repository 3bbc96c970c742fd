"""dynvm on real pool databases (shared/xapi-db): it must list and count them correctly."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pytest
import XenAPI

from dynvm.api import create_app
from dynvm.runtime.bootstrap import build_service
from dynvm.sim import Farm, Timing
from testbed.inis import Ini
from tests.service.conftest import FAST, write_ini
from tests.support.shared import XAPI_DB as DB_DIR

DB_FILES = sorted(glob.glob(str(DB_DIR / "*.xml")))
GIB = 1 << 30

# name -> running user VMs, from shared/xapi-db/README.md
RUNNING = {"TampaTwoHostPoolSelectioniSCSI.xml": 4, "boston-db.xml": 2,
           "cowleyPolicies.xml": 3, "state-db-one-host.xml": 2, "single-host-krakout.xml": 0}


VCPUS, MEM_GIB, DISK_GIB = 1, 1, 5  # real hosts here are small: a small OS gives real counts


def expected_count(x) -> int:
    """The DESIGN formula for a 1 vCPU, 1 GiB, 5 GiB OS, from XenAPI's raw records."""
    vms = x.VM.get_all_records()
    srs = x.SR.get_all_records()
    pbds = x.PBD.get_all_records()
    total = 0
    for ref, h in x.host.get_all_records().items():
        cpus = int(h["cpu_info"].get("cpu_count") or len(h["host_CPUs"]))
        used = sum(int(v["VCPUs_max"]) for v in vms.values()
                   if v["resident_on"] == ref and v["power_state"] == "Running"
                   and not v["is_a_template"] and not v["is_control_domain"])
        try:
            free_mem = int(x.host_metrics.get_memory_free(h["metrics"])) // GIB
        except XenAPI.Failure as exc:  # a dump whose host names metrics it does not hold
            assert exc.details[0] == "HANDLE_INVALID"
            free_mem = 0
        local = [s for s in srs.values() if s["name_label"] == "Local storage"
                 and any(pbds[p]["host"] == ref for p in s["PBDs"] if p in pbds)]
        if not local or not h["enabled"]:
            continue
        size, util = int(local[0]["physical_size"]), int(local[0]["physical_utilisation"])
        by_disk = int((size - util) * 0.9 / GIB // DISK_GIB)
        by_disk = by_disk - 1 if by_disk > 0 else 0
        total += max(0, min(max(cpus - used, 0) // VCPUS, free_mem // MEM_GIB, by_disk))
    return total


@pytest.mark.skipif(not DB_FILES, reason="shared/xapi-db is not beside the repository")
def test_showall_and_count_on_every_real_pool(tmp_path) -> None:
    with Farm.from_db(DB_FILES, timing=Timing(speed=1000)) as farm:
        sections = Ini.of_farm(farm)
        expected: dict[str, tuple[int, int]] = {}
        for i, pool in enumerate(farm.pools):
            s = XenAPI.Session(pool.master.url)
            s.xenapi.login_with_password("root", "xenroot", "1.0", "dynvm-tests")
            x = s.xenapi
            templates = sorted(r["name_label"] for r in x.VM.get_all_records().values()
                               if r["is_a_template"] and not r["is_a_snapshot"])
            expected[str(i + 1)] = (RUNNING[Path(DB_FILES[i]).name], expected_count(x))
            s.xenapi.session.logout()
            sections.set(f"xenhost{i + 1}", {
                "centos.template": templates[0], "centos.vcpus": VCPUS,
                "centos.memory": MEM_GIB, "centos.disk": DISK_GIB})
        svc = build_service(str(write_ini(tmp_path, farm, hosts=sections)), timings=FAST,
                            background=False)
        try:
            c = create_app(service=svc).test_client()
            shown = json.loads(c.get("/showall?ignorelabels=true").text)
            assert {k: len(v) for k, v in shown.items()} == {k: e[0] for k, e in expected.items()}
            cfg = svc.config()
            for ref, (_, count) in expected.items():
                assert svc.legacy.count([cfg.hosts[int(ref)]], "centos").count == count, ref
            total = c.get("/getavailablecount/centos?ignorelabels=true")
            assert total.status_code == 200
            assert int(total.text) == sum(e[1] for e in expected.values()) > 0
        finally:
            svc.close()
