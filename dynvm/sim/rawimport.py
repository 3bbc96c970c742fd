"""XAPI's HTTP upload of a disk image: `PUT /import_raw_vdi`, raw format.

[read] xen-api `ocaml/xapi/import_raw_vdi.ml`, `xapi_http.ml`,
`vhd_tool_wrapper.ml`. Query (or cookie) parameters: `session_id`, `vdi`
(a ref or a uuid), `task_id` (optional: a task made with `task.create`, which
the upload then completes), `format` (default `raw`), `chunked`. In order:

- no session, or one that is not live: `401`, and a given task is left as it is;
- a given task that does not exist: `500`;
- no such VDI: the task fails with `VDI_MISSING []`, `400`;
- a VDI whose SR this host cannot reach: `302` to a host that can, same path
  and query (the task is left for that host);
- a format other than raw (the simulator keeps raw bytes only) or a chunked
  body: the task fails with `INTERNAL_ERROR`, `404`;
- then `200` with a `task-id` header, and the task says how the write went:
  `VDI_READONLY [vdi]` for a read-only disk, `SR_BACKEND_FAILURE_46` when
  another VBD has the disk attached read-write (the storage manager refuses a
  second writer), `VDI_IO_ERROR ["Device I/O errors"]` when the body is
  longer than the disk's `virtual_size`; otherwise success with the VDI's ref
  as its result, and the bytes are kept (they are the disk's first bytes from
  then on; `physical_utilisation` grows to cover them).

A `fail_next` fault for the method `import_raw_vdi` fails the task with the
given error after the checks, as a storage error would, writing nothing.
"""

from __future__ import annotations

from http.cookies import SimpleCookie
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from . import sraccount
from .db import NULL
from .server import Put, Reply
from .vmruntime import runtime
from .wire import XapiError, task_result

if TYPE_CHECKING:
    from .farm import Farm, SimHost, SimPool

PATH = "/import_raw_vdi"
TASK_LABEL = "Importing raw VDI"
CONTENT_TYPE = "application/octet-stream"


def _params(put: Put) -> dict[str, str]:
    """Cookie values win over the query's, as `Xapi_http.lookup_param_of_req` reads them."""
    params = dict(parse_qsl(urlsplit(put.path).query))
    cookie = SimpleCookie()
    cookie.load(put.headers.get("Cookie", ""))
    params.update({k: m.value for k, m in cookie.items()})
    return params


def _session_ok(pool: SimPool, ref: str | None) -> bool:
    if not ref:
        return False
    try:
        pool.sessions.check(ref, pool.master)  # an HTTP handler takes pool sessions on members too
    except XapiError:
        return False
    return True


def _find_vdi(pool: SimPool, value: str) -> str | None:
    db = pool.db
    with db.lock:
        if db.find("VDI", value) is not None:
            return value
        try:
            return db.by_uuid("VDI", value)
        except XapiError:
            return None


def _sees_sr(pool: SimPool, host: SimHost, vdi: str) -> SimHost | None:
    """None when `host` reaches the VDI's SR, else a host that does (or `host` if none)."""
    db = pool.db
    with db.lock:
        sr = db.get("VDI", vdi).get("SR", NULL)
        hosts = [p.get("host") for p in (db.find("PBD", ref) for ref in
                                        db.get("SR", sr).get("PBDs", []))
                 if p is not None and p.get("currently_attached")]
    if host.ref in hosts:
        return None
    for other in pool.hosts:
        if other.ref in hosts and other.online:
            return other
    return None


def handle(farm: Farm, host: SimHost, put: Put) -> Reply:
    if urlsplit(put.path).path != PATH:
        return Reply(404, {})
    pool = host.pool
    params = _params(put)
    if not _session_ok(pool, params.get("session_id")):
        return Reply(401, {"WWW-Authenticate": 'Basic realm="VDI.import"'})
    task = params.get("task_id")
    with pool.db.lock:
        if task and pool.db.find("task", task) is None:
            return Reply(500, {})
    if not task:
        task = pool.tasks.create(TASK_LABEL, host.ref)
    vdi = _find_vdi(pool, params.get("vdi", ""))
    if vdi is None:
        pool.tasks.finish(task, "failure", error=["VDI_MISSING"])
        return Reply(400, {})
    other = _sees_sr(pool, host, vdi)
    if other is not None:
        scheme = "https" if put.secure else "http"
        return Reply(302, {"Location": f"{scheme}://{other.address}{put.path}"})
    fmt = params.get("format", "raw")
    if fmt != "raw" or put.body is None:
        why = f"Unknown format {fmt}" if fmt != "raw" else "Cannot handle encoding: chunked"
        pool.tasks.finish(task, "failure", error=["INTERNAL_ERROR", why])
        return Reply(404, {})
    try:
        _write(farm, host, vdi, put.body)
    except XapiError as exc:
        pool.tasks.finish(task, "failure", error=exc.description)
    else:
        pool.tasks.finish(task, "success", result=task_result(vdi))
    return Reply(200, {"task-id": task, "Content-Type": CONTENT_TYPE})


def _write(farm: Farm, host: SimHost, vdi: str, data: bytes) -> None:
    """Attach the disk read-write in dom0 (XAPI's checks) and write `data` at its start."""
    pool = host.pool
    db = pool.db
    rt = runtime(pool)
    with db.lock:
        rec = db.get("VDI", vdi)
        if rec.get("read_only"):
            raise XapiError("VDI_READONLY", vdi)
        for vbd in rec.get("VBDs", []):
            vbd_rec = db.find("VBD", vbd) or {}
            if vbd_rec.get("currently_attached") and vbd_rec.get("mode") == "RW":
                raise XapiError("SR_BACKEND_FAILURE_46", "",
                                f"The VDI is not available [opterr=VDI {rec['uuid']} "
                                "already attached RW]", "")
        if len(data) > int(rec.get("virtual_size", 0)):
            raise XapiError("VDI_IO_ERROR", "Device I/O errors")
        fail = farm.faults.take_failure(host.name_label, "import_raw_vdi", "import_raw_vdi")
        if fail:
            raise XapiError(*fail)
        with rt.lock:
            old = rt.vdi_data.get(vdi, b"")
            rt.vdi_data[vdi] = data + old[len(data):]
        used = int(rec.get("physical_utilisation", 0))
        if len(data) > used:
            sraccount.charge(db, rec.get("SR", NULL), len(data) - used, 0)
            db.modify("VDI", vdi, {"physical_utilisation": len(data)})
