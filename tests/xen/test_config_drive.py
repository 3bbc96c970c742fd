"""A build with first-boot data gets a NoCloud config drive, uploaded through
`PUT /import_raw_vdi`, attached before its first start and destroyed with it;
a failure at any step of it leaves no VM and no disk behind."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator

import paramiko
import pycdlib
import pytest
import XenAPI

from dynvm.core.ports import FirstBoot, XenError
from dynvm.sim import Farm
from dynvm.sim.vmruntime import runtime
from dynvm.xen.pool import XenPoolClient
from testbed.serving import free_port
from tests.support.guest_ssh import can_log_in
from tests.xen.conftest import SPEED, pool_client, truth_session, wait_until
from tests.xen.test_build import footprint, spec

USER_DATA = "#cloud-config\nssh_pwauth: false\n"


def iso_files(image: bytes) -> tuple[str, dict[str, bytes]]:
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(image))
    files = {}
    for name in ("meta-data", "user-data"):
        for kwargs in ({"rr_path": f"/{name}"}, {"joliet_path": f"/{name}"}):
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, **kwargs)
            files[f"{name} {next(iter(kwargs))}"] = out.getvalue()
    label = iso.pvd.volume_identifier.decode().strip()
    iso.close()
    return label, files


def drives_of(x: XenAPI.Session, vm_uuid: str) -> list[str]:
    xa = x.xenapi
    ref = xa.VM.get_by_uuid(vm_uuid)
    return [xa.VBD.get_VDI(b) for b in xa.VM.get_VBDs(ref)
            if xa.VDI.get_other_config(xa.VBD.get_VDI(b)).get("dynvm_config_drive") == vm_uuid]


def test_the_drive_is_uploaded_attached_and_destroyed_with_the_vm(
        fresh_farm: Farm, fresh_client: XenPoolClient, truth: XenAPI.Session) -> None:
    before = footprint(truth)
    boot = FirstBoot(hostname="web-1", user_data=USER_DATA)
    # On the second host: its local SR is the member's, so the upload is redirected there.
    vm = fresh_client.build(
        dataclasses.replace(spec(fresh_client, "seeded-1", host=1), first_boot=boot))
    drives = drives_of(truth, vm.uuid)
    assert len(drives) == 1
    xa = truth.xenapi
    vbd = next(b for b in xa.VDI.get_VBDs(drives[0]))
    assert xa.VBD.get_type(vbd) == "Disk" and xa.VBD.get_currently_attached(vbd)
    sr = xa.VDI.get_SR(drives[0])
    assert xa.SR.get_name_label(sr) == "Local storage"
    master = xa.pool.get_master(xa.pool.get_all()[0])
    assert [xa.PBD.get_host(p) for p in xa.SR.get_PBDs(sr)] != [master]  # the redirect's case
    label, files = iso_files(runtime(fresh_farm.pools[0]).vdi_data[drives[0]])
    assert label == "cidata"
    for kind in ("rr_path", "joliet_path"):
        assert files[f"user-data {kind}"] == USER_DATA.encode()
        assert files[f"meta-data {kind}"] == (
            f"instance-id: {vm.uuid}\nlocal-hostname: web-1\n".encode())
    assert "web-1" in repr(boot) and "ssh_pwauth" not in repr(boot)
    assert fresh_client.destroy(vm.uuid) is True
    assert footprint(truth) == before
    assert drives[0] not in runtime(fresh_farm.pools[0]).vdi_data


FAILURES = [
    ("VDI.create", "SR_BACKEND_FAILURE_44", ["", "no space", ""]),
    ("task.create", "INTERNAL_ERROR", ["no tasks"]),
    ("import_raw_vdi", "SR_BACKEND_FAILURE_44", ["", "no space", ""]),
    ("VBD.create", "DEVICE_ALREADY_EXISTS", ["1"]),
]


@pytest.mark.parametrize(("method", "code", "params"), FAILURES, ids=[f[0] for f in FAILURES])
def test_a_failed_step_leaves_no_vm_and_no_disk(fresh_farm: Farm, fresh_client: XenPoolClient,
                                                truth: XenAPI.Session, method: str, code: str,
                                                params: list[str]) -> None:
    before = footprint(truth)
    s = dataclasses.replace(spec(fresh_client, f"drive-{method}"),
                            first_boot=FirstBoot("h", USER_DATA))
    fresh_farm.fail_next(method, 1, code, params)
    with pytest.raises(XenError) as err:
        fresh_client.build(s)
    assert (err.value.code, err.value.params) == (code, params)
    assert footprint(truth) == before
    assert not runtime(fresh_farm.pools[0]).vdi_data


@pytest.fixture
def guest_farm() -> Iterator[tuple[Farm, int]]:
    port = free_port()
    with Farm.generate(pools=1, hosts=1, speed=SPEED, guest_ssh_port=port,
                       guest_logins={"root": "pw"}) as farm:
        yield farm, port


def test_the_guest_takes_the_drives_key(guest_farm: tuple[Farm, int]) -> None:
    farm, port = guest_farm
    key, other = paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()
    user_data = f"#cloud-config\nssh_authorized_keys:\n  - {key.get_name()} {key.get_base64()}\n"
    with pool_client(farm) as c, truth_session(farm):
        vm = c.build(dataclasses.replace(spec(c, "keyed"),
                                         first_boot=FirstBoot("keyed", user_data)))
        ip = c.wait_ready(vm.uuid, windows=False, timeout=30)

        assert wait_until(lambda: can_log_in(ip, port, "root", pkey=key), timeout=10)
        assert not can_log_in(ip, port, "root", pkey=other)
