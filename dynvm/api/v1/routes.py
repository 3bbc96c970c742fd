"""The /api/v1 routes. Each is declared once with `operation`, which registers the Flask
view and records what the OpenAPI document says about it (same models, same rules)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app, request, url_for
from pydantic import BaseModel

from dynvm.api import access, jsonbody
from dynvm.api.auth import Unauthorized
from dynvm.api.v1 import docs, models, problems
from dynvm.core.errors import NotFound
from dynvm.core.records import Lease
from dynvm.core.services import (
    Caller,
    NewRequest,
    OwnerKey,
    RequestState,
    RequestStatus,
    SshLogin,
    VmSnapshot,
    key_id,
)

if TYPE_CHECKING:
    from dynvm.core.services import Dynvm

bp = Blueprint("v1", __name__, url_prefix="/api/v1")


@dataclass(frozen=True)
class Operation:
    """What the OpenAPI document says about one route."""

    method: str
    path: str  # OpenAPI form: /api/v1/vms/{name}
    op_id: str
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    responses: Mapping[int, tuple[str, type[BaseModel] | None]] = field(default_factory=dict)
    secured: bool = True
    headers: dict[int, list[str]] = field(default_factory=dict)  # status -> header names


OPERATIONS: list[Operation] = []


def operation(method: str, rule: str, *, summary: str, tag: str,
              body: type[BaseModel] | None = None, query: type[BaseModel] | None = None,
              responses: Mapping[int, tuple[str, type[BaseModel] | None]],
              secured: bool = True, headers: dict[int, list[str]] | None = None
              ) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    def register(view: Callable[..., Response]) -> Callable[..., Response]:
        path = "/api/v1" + rule.replace("<", "{").replace(">", "}")
        OPERATIONS.append(Operation(method.upper(), path, view.__name__, summary, tag, body,
                                    query, responses, secured, headers or {}))
        # Declared where the route is: a secured operation needs a bearer token in every mode.
        access.declare(access.Access.API if secured else access.Access.PUBLIC)(view)
        bp.add_url_rule(rule, view.__name__, view, methods=[method.upper()])
        return view
    return register


# -- helpers ------------------------------------------------------------------------------

def service() -> Dynvm:
    return current_app.extensions["dynvm"]


def caller() -> Caller:
    """The token's caller (authenticated before the view, as every secured route is)."""
    c = access.caller()
    if c is None:
        raise Unauthorized("a token is needed: send `Authorization: Bearer <token>`")
    return c


def body_of(model: type[BaseModel]) -> Any:
    """The body as `model`: 64 KiB at most, nesting and duplicate keys refused (jsonbody)."""
    return model.model_validate(jsonbody.json_object())


def query_of(model: type[BaseModel]) -> Any:
    return model.model_validate({k: request.args.get(k) for k in request.args})


def out(model: BaseModel, status: int = 200, **headers: str) -> Response:
    resp = Response(model.model_dump_json(), status=status, mimetype="application/json")
    resp.headers.update(headers)
    return resp


def check_name(name: str) -> str:
    if not models.re_name.fullmatch(name):
        raise NotFound(f"no VM named {name[:64]!r}")
    return name


def request_view(st: RequestStatus) -> models.RequestOut:
    return models.RequestOut(
        id=st.id, state=st.state, cancelling=st.cancelling, owner=st.owner, os=st.os,
        count=st.count, names=st.names, created=st.created, finished=st.finished,
        expires=st.expires, error=st.error,
        vms=[models.VmProgressOut(name=p.name, step=p.step, since=p.since, ip=p.ip,
                                  reason=p.reason, host=p.host_ref) for p in st.vms],
        ssh_keys=st.ssh_keys, hostname=st.hostname, user_data=st.user_data,
        queue=None if st.queue is None else models.QueueOut(**asdict(st.queue)))


def vm_view(lease: Lease) -> models.VmOut:
    ssh: SshLogin = service().vms.ssh_login(lease)
    return models.VmOut(name=lease.name, owner=lease.owner, os=lease.os, state=lease.state,
                        ip=lease.ip, host=lease.host_ref, created=lease.created,
                        expires=lease.expires, request_id=lease.request_id,
                        labels=list(lease.labels), ssh_user=ssh.user, ssh_port=ssh.port,
                        ssh_keys=ssh.keys)


def key_view(key: OwnerKey) -> models.KeyOut:
    kind, _, rest = key.line.partition(" ")
    return models.KeyOut(id=key_id(key.fingerprint), fingerprint=key.fingerprint, type=kind,
                         comment=rest.partition(" ")[2], added=key.added)


OK_REQUEST = {200: ("the request", models.RequestOut)}
OK_VM = {200: ("the VM", models.VmOut)}


# -- requests ------------------------------------------------------------------------------

@operation("POST", "/requests", summary="Ask for VMs; built in the background", tag="requests",
           body=models.RequestIn,
           responses={202: ("accepted: room is held and building has begun, or (state "
                            "`queued`) it waits in the queue for room", models.RequestOut)},
           headers={202: ["Location"]})
def create_request() -> Response:
    c = caller()
    body: models.RequestIn = body_of(models.RequestIn)
    new = NewRequest(owner=c.owner, os=body.os, count=body.count, name=body.name,
                     cpus=body.cpus, memory_gib=body.memory_gib,
                     lease_minutes=body.lease_minutes, labels=tuple(body.labels),
                     host=body.host, all_or_none=body.all_or_none, check_ssh=body.check_ssh,
                     ssh_keys=tuple(body.ssh_keys), hostname=body.hostname,
                     user_data=body.user_data, queue=body.queue,
                     priority=body.priority, max_wait_minutes=body.max_wait_minutes)
    st = service().requests.submit(new)
    location = url_for("v1.get_request", request_id=st.id)
    return out(request_view(st), 202, Location=location)


@operation("GET", "/requests", summary="My requests in flight (every one for an admin)",
           tag="requests", responses={200: ("the requests being built", models.RequestList)})
def list_requests() -> Response:
    c = caller()
    return out(models.RequestList(requests=[request_view(st) for st in
                                            service().requests.in_flight(c)]))


@operation("GET", "/requests/<request_id>", summary="A request's state and each VM's step",
           tag="requests", query=models.WaitQuery, responses=OK_REQUEST)
def get_request(request_id: str) -> Response:
    c = caller()
    q: models.WaitQuery = query_of(models.WaitQuery)
    return out(request_view(service().requests.status(c, request_id, q.wait)))


@operation("DELETE", "/requests/<request_id>",
           summary="Cancel: every VM built so far is destroyed", tag="requests",
           responses={**OK_REQUEST, 202: ("cancelling: the builder is stopping",
                                          models.RequestOut)})
def cancel_request(request_id: str) -> Response:
    c = caller()
    st = service().requests.cancel(c, request_id)
    return out(request_view(st), 202 if st.state == RequestState.RUNNING else 200)


# -- VMs --------------------------------------------------------------------------------------

@operation("GET", "/vms", summary="My VMs (every VM for an admin)", tag="vms",
           query=models.VmQuery, responses={200: ("the VMs", models.VmList)})
def list_vms() -> Response:
    c = caller()
    q: models.VmQuery = query_of(models.VmQuery)
    leases = service().vms.listing(c, owner=q.owner, os=q.os, host=q.host, state=q.state)
    return out(models.VmList(vms=[vm_view(lease) for lease in leases]))


@operation("GET", "/vms/<name>", summary="One VM", tag="vms", responses=OK_VM)
def get_vm(name: str) -> Response:
    c = caller()
    return out(vm_view(service().vms.find(c, check_name(name))))


RELEASED = "released"  # what a VM is once DELETE answered: destroyed, its lease gone


@operation("DELETE", "/vms/<name>", summary="Release a VM (destroyed with its disks)",
           tag="vms", responses={200: ("the VM, destroyed: state `released`", models.VmOut)})
def release_vm(name: str) -> Response:
    c = caller()
    lease = service().vms.release(c, check_name(name))
    return out(vm_view(lease).model_copy(update={"state": RELEASED}))


@operation("POST", "/vms/<name>/extend", summary="Move a VM's expiry to now + minutes",
           tag="vms", body=models.ExtendIn, responses=OK_VM)
def extend_vm(name: str) -> Response:
    c = caller()
    body: models.ExtendIn = body_of(models.ExtendIn)
    return out(vm_view(service().vms.extend(c, check_name(name), body.minutes)))


@operation("GET", "/vms/<name>/snapshots", summary="A VM's snapshots, oldest first",
           tag="vms", responses={200: ("its snapshots", models.SnapshotList)})
def list_snapshots(name: str) -> Response:
    c = caller()
    vm = check_name(name)
    snaps = service().vms.snapshots(c, vm)
    return out(models.SnapshotList(
        vm=vm, snapshots=[snapshot_view(vm, s) for s in snaps],
        max=service().config().snapshots_max))


@operation("POST", "/vms/<name>/snapshots",
           summary="Take a disk-only snapshot of a VM (destroyed with the VM)", tag="vms",
           body=models.SnapshotIn, responses={201: ("the snapshot", models.SnapshotOut)})
def snapshot_vm(name: str) -> Response:
    c = caller()
    body: models.SnapshotIn = body_of(models.SnapshotIn)
    vm = check_name(name)
    label = body.name or f"{vm}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    return out(snapshot_view(vm, service().vms.snapshot(c, vm, label)), 201)


@operation("DELETE", "/vms/<name>/snapshots/<snapshot>",
           summary="Delete a VM's snapshot with the disks only it uses (room for another)",
           tag="vms", responses={200: ("the snapshot, deleted", models.SnapshotOut)})
def delete_snapshot(name: str, snapshot: str) -> Response:
    c = caller()
    vm = check_name(name)
    if not models.re_name.fullmatch(snapshot):
        raise NotFound(f"VM {vm}: the VM has no snapshot named {snapshot[:64]!r}")
    return out(snapshot_view(vm, service().vms.delete_snapshot(c, vm, snapshot)))


@operation("POST", "/vms/<name>/revert",
           summary="Revert a VM to one of its snapshots (a running VM is started again and "
                   "its new address recorded)",
           tag="vms", body=models.RevertIn,
           responses={200: ("the snapshot reverted to, and the VM's address",
                            models.RevertOut)})
def revert_vm(name: str) -> Response:
    c = caller()
    body: models.RevertIn = body_of(models.RevertIn)
    vm = check_name(name)
    done = service().vms.revert(c, vm, body.snapshot)
    return out(models.RevertOut(**snapshot_view(vm, done.snapshot).model_dump(), ip=done.ip))


def snapshot_view(vm: str, snap: VmSnapshot) -> models.SnapshotOut:
    return models.SnapshotOut(vm=vm, name=snap.name, uuid=snap.uuid, taken=snap.taken)


# -- keys ---------------------------------------------------------------------------------------

@operation("GET", "/keys", summary="My registered SSH keys", tag="keys",
           responses={200: ("the keys", models.KeyList)})
def list_keys() -> Response:
    c = caller()
    return out(models.KeyList(keys=[key_view(k) for k in service().keys.listing(c)]))


@operation("POST", "/keys", summary="Register an SSH key: put on every VM I get", tag="keys",
           body=models.KeyIn, responses={201: ("registered", models.KeyOut),
                                         200: ("registered already", models.KeyOut)})
def add_key() -> Response:
    c = caller()
    body: models.KeyIn = body_of(models.KeyIn)
    key, added = service().keys.add(c, body.key)
    return out(key_view(key), 201 if added else 200)


@operation("DELETE", "/keys/<ident>", summary="Forget one of my SSH keys (by its id)",
           tag="keys", responses={200: ("forgotten", models.KeyOut)})
def remove_key(ident: str) -> Response:
    c = caller()
    return out(key_view(service().keys.remove(c, ident)))


# -- farm ---------------------------------------------------------------------------------------

@operation("GET", "/capacity", summary="VMs that fit now, every OS, per label", tag="farm",
           responses={200: ("capacity", models.CapacityOut)})
def capacity() -> Response:
    caller()
    rows = [models.OsCapacity(os=os, by_label=by_label)
            for os, by_label in service().farm.capacity().items()]
    return out(models.CapacityOut(capacity=rows))


@operation("GET", "/hosts", summary="The configured hosts", tag="farm",
           responses={200: ("hosts", models.HostList)})
def hosts() -> Response:
    caller()
    rows = [models.HostOut.model_validate(h) for h in service().farm.hosts()]
    return out(models.HostList(hosts=rows))


@operation("GET", "/history", summary="History documents, newest first", tag="farm",
           query=models.HistoryQuery, responses={200: ("a page of history", models.HistoryOut)})
def history() -> Response:
    c = caller()
    q: models.HistoryQuery = query_of(models.HistoryQuery)
    items, more = service().history.page(c, owner=q.owner, os=q.os, since=q.since,
                                         until=q.until, page=q.page, per_page=q.per_page)
    return out(models.HistoryOut(items=items, page=q.page, next_page=q.page + 1 if more else None))


@operation("GET", "/quota", summary="My quota and what I use of it", tag="farm",
           query=models.QuotaQuery, responses={200: ("quota and usage", models.QuotaOut)})
def get_quota() -> Response:
    c = caller()
    q: models.QuotaQuery = query_of(models.QuotaQuery)
    report = service().quotas.of(c, q.owner)
    limits, used = report.limits, report.usage
    return out(models.QuotaOut(
        owner=report.owner, limits=models.Limits(vms=limits.vms, vcpus=limits.vcpus,
                                                 memory_gib=limits.memory_gib),
        usage=models.Used(vms=used.vms, vcpus=used.vcpus, memory_gib=used.memory_gib)))


# -- the document ---------------------------------------------------------------------------------

@operation("GET", "/openapi.json", summary="This document", tag="meta", secured=False,
           responses={200: ("OpenAPI 3.1", None)})
def openapi_json() -> Response:
    from dynvm.api.v1.openapi import Served, document

    offer = service().farm.offer()  # the document speaks of what this configuration allows
    return Response(document(Served(offer.max_lease_minutes, offer.os_keys, offer.host_refs)),
                    mimetype="application/json")


@operation("GET", "/docs", summary="The API reference, rendered", tag="meta", secured=False,
           responses={200: ("HTML page", None)})
def docs_page() -> Response:
    return Response(docs.PAGE, mimetype="text/html")


@bp.errorhandler(Exception)
def _problem(exc: Exception) -> Response:
    return problems.from_exception(exc)
