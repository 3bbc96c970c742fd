"""A suspended VM in the farm: capacity still answers (the VM holds no vCPUs
or memory, its memory image takes SR space), /showall leaves it out, and
releasing it removes the VM, its disks and its image."""

from __future__ import annotations

import json

from tests.service.conftest import wait_until


def test_suspended_vm_frees_cpu_and_is_released_with_its_image(client, probe) -> None:
    count = lambda: int(client.get("/getavailablecount/centos").text)  # noqa: E731
    before = count()
    assert client.get("/getservers/napper?os=centos").status_code == 200
    wait_until(lambda: count() == before - 1, timeout=10, what="the new VM to count")
    (vm,) = probe.vms_named("napper")
    session = probe.session()
    try:
        x = session.xenapi
        ref = x.VM.get_by_uuid(vm["uuid"])
        host = vm["resident_on"]
        sr = x.host.get_suspend_image_sr(host)
        used = int(x.SR.get_physical_utilisation(sr))
        x.VM.suspend(ref)
        image = x.VM.get_suspend_VDI(ref)
        assert int(x.SR.get_physical_utilisation(sr)) == used + int(x.VDI.get_virtual_size(image))
    finally:
        session.xenapi.session.logout()
    # The VM holds no vCPUs now; its reservation may still count for the
    # settle time after the build, so the farm has room for one more or as before.
    wait_until(lambda: "napper" not in client.get("/showall").text, timeout=10,
               what="the suspended VM to leave /showall")
    assert count() in (before - 1, before)
    rows = json.loads(client.get("/showall").text)
    assert not any(row["name"] == "napper" for host_rows in rows.values() for row in host_rows)

    assert json.loads(client.get("/releaseservers/napper").text) == ["napper"]
    assert probe.vms_named("napper") == []
    assert count() == before
