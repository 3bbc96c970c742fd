"""`PUT /import_raw_vdi`: XAPI's HTTP upload of a raw disk image, with its
session check, its task, its size and writer rules, and the bytes kept."""

from __future__ import annotations

import http.client
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from dynvm.sim import Farm
from dynvm.sim.vmruntime import runtime

from .conftest import fast_timing, login
from .test_vm_life import wait_task

MIB = 1 << 20


def put(url: str, query: dict[str, str], body: bytes | None,
        headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """One PUT as the SDKs send it (body None: an empty chunked one)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=10)
    path = f"/import_raw_vdi?{urlencode(query)}"
    if body is None:
        conn.putrequest("PUT", path)
        for k, v in {**(headers or {}), "Transfer-Encoding": "chunked"}.items():
            conn.putheader(k, v)
        conn.endheaders()
        conn.send(b"0\r\n\r\n")
    else:
        conn.request("PUT", path, body=body, headers=headers or {})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def local_sr(x: Any, host_name: str) -> str:
    host = x.host.get_by_name_label(host_name)[0]
    return next(sr for pbd in x.host.get_PBDs(host) for sr in [x.PBD.get_SR(pbd)]
                if x.SR.get_name_label(sr) == "Local storage")


def new_vdi(x: Any, sr: str, size: int = MIB, **extra: Any) -> str:
    return x.VDI.create({"name_label": "upload", "name_description": "", "SR": sr,
                         "virtual_size": str(size), "type": "user", "sharable": False,
                         "read_only": False, "other_config": {}, "xenstore_data": {},
                         "sm_config": {}, "tags": [], **extra})


@pytest.fixture
def pool_farm() -> Any:
    with Farm.generate(pools=1, hosts=2, vms_per_host=1, timing=fast_timing()) as farm:
        yield farm


@pytest.fixture
def xs(pool_farm: Farm) -> Any:
    session = login(pool_farm.pools[0].master.url)
    yield session
    session.xenapi.session.logout()


def test_an_upload_completes_its_task_and_keeps_the_bytes(pool_farm: Farm, xs: Any) -> None:
    x = xs.xenapi
    url = pool_farm.pools[0].master.url
    sr = local_sr(x, "xenhost1-1")
    vdi = new_vdi(x, sr)
    used_before = int(x.SR.get_physical_utilisation(sr))
    task = x.task.create("upload", "a test upload")
    assert x.task.get_status(task) == "pending"
    data = b"cidata" * 1000
    resp = put(url, {"session_id": xs.handle, "vdi": vdi, "task_id": task, "format": "raw"}, data)
    assert resp.status == 200 and resp.getheader("task-id") == task
    rec = wait_task(x, task)
    assert rec["status"] == "success" and rec["result"] == f"<value>{vdi}</value>"
    assert runtime(pool_farm.pools[0]).vdi_data[vdi] == data
    assert int(x.VDI.get_physical_utilisation(vdi)) == len(data)
    assert int(x.SR.get_physical_utilisation(sr)) == used_before + len(data)
    # By uuid, without a task of the caller's: one is made and named in the answer.
    resp = put(url, {"session_id": xs.handle, "vdi": x.VDI.get_uuid(vdi)}, b"new")
    made = resp.getheader("task-id")
    assert resp.status == 200 and made and made != task
    assert wait_task(x, made)["status"] == "success"
    assert runtime(pool_farm.pools[0]).vdi_data[vdi] == b"new" + data[3:]
    x.VDI.destroy(vdi)
    assert vdi not in runtime(pool_farm.pools[0]).vdi_data


def test_no_live_session_is_a_401_and_the_task_is_left(pool_farm: Farm, xs: Any) -> None:
    x = xs.xenapi
    url = pool_farm.pools[0].master.url
    vdi = new_vdi(x, local_sr(x, "xenhost1-1"))
    task = x.task.create("upload", "")
    for query in ({"vdi": vdi, "task_id": task},
                  {"session_id": "OpaqueRef:nobody", "vdi": vdi, "task_id": task}):
        assert put(url, query, b"x").status == 401
    assert x.task.get_status(task) == "pending"
    assert vdi not in runtime(pool_farm.pools[0]).vdi_data
    # The session may come as a cookie, as xapi reads it.
    resp = put(url, {"vdi": vdi, "task_id": task}, b"x", {"Cookie": f"session_id={xs.handle}"})
    assert resp.status == 200 and wait_task(x, task)["status"] == "success"


def test_refusals_fail_the_task_and_write_nothing(pool_farm: Farm, xs: Any) -> None:
    x = xs.xenapi
    url = pool_farm.pools[0].master.url
    sr = local_sr(x, "xenhost1-1")
    kept = runtime(pool_farm.pools[0]).vdi_data

    def attempt(vdi: str, body: bytes | None, status: int, **query: str) -> list[str]:
        task = x.task.create("upload", "")
        resp = put(url, {"session_id": xs.handle, "vdi": vdi, "task_id": task, **query}, body)
        assert resp.status == status
        rec = wait_task(x, task)
        assert rec["status"] == "failure" and vdi not in kept
        return list(rec["error_info"])

    small = new_vdi(x, sr, size=4096)
    assert attempt(small, b"x" * 4097, 200) == ["VDI_IO_ERROR", "Device I/O errors"]
    assert attempt("OpaqueRef:nothing", b"x", 400) == ["VDI_MISSING"]
    assert attempt(small, b"x", 404, format="vhd") == ["INTERNAL_ERROR", "Unknown format vhd"]
    assert attempt(small, None, 404) == ["INTERNAL_ERROR", "Cannot handle encoding: chunked"]
    readonly = new_vdi(x, sr, read_only=True)
    assert attempt(readonly, b"x", 200) == ["VDI_READONLY", readonly]
    pool_farm.fail_next("import_raw_vdi", 1, "SR_BACKEND_FAILURE_44", ["", "no space", ""])
    assert attempt(small, b"x", 200) == ["SR_BACKEND_FAILURE_44", "", "no space", ""]
    assert put(url, {"session_id": xs.handle, "vdi": small, "task_id": "OpaqueRef:gone"},
               b"x").status == 500


def test_a_disk_a_running_vm_writes_is_refused(pool_farm: Farm, xs: Any) -> None:
    x = xs.xenapi
    url = pool_farm.pools[0].master.url
    vm = next(ref for ref, rec in x.VM.get_all_records().items()
              if rec["power_state"] == "Running" and not rec["is_control_domain"]
              and rec["resident_on"] == x.host.get_by_name_label("xenhost1-1")[0])
    vbd = next(v for v in x.VM.get_VBDs(vm) if x.VBD.get_type(v) == "Disk")
    vdi = x.VBD.get_VDI(vbd)
    task = x.task.create("upload", "")
    assert put(url, {"session_id": xs.handle, "vdi": vdi, "task_id": task}, b"x").status == 200
    rec = wait_task(x, task)
    assert rec["error_info"] == [
        "SR_BACKEND_FAILURE_46", "",
        f"The VDI is not available [opterr=VDI {x.VDI.get_uuid(vdi)} already attached RW]", ""]


def test_a_disk_on_a_members_local_sr_is_redirected_there(pool_farm: Farm, xs: Any) -> None:
    x = xs.xenapi
    master = pool_farm.pools[0].master
    member = next(h for h in pool_farm.pools[0].hosts if h is not master)
    vdi = new_vdi(x, local_sr(x, member.name_label))
    task = x.task.create("upload", "")
    query = {"session_id": xs.handle, "vdi": vdi, "task_id": task}
    resp = put(master.url, query, b"member")
    assert resp.status == 302
    location = resp.getheader("Location")
    assert location == f"{member.url}/import_raw_vdi?{urlencode(query)}"
    assert x.task.get_status(task) == "pending"
    assert put(member.url, query, b"member").status == 200
    assert wait_task(x, task)["status"] == "success"
    assert runtime(pool_farm.pools[0]).vdi_data[vdi] == b"member"
