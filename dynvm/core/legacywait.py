"""A legacy `getservers` that may wait in the queue (`wait=N` or `[queue] legacy.wait.secs`).

Jenkins jobs call `/getservers/<name>` with curl and expect the IPs in the
answer. With a wait, the call joins the very queue v1 requests wait in (same
order, same fairness, same store, so any instance may serve it): it is made a
v1 request of its owner and the HTTP call is held until that request ends,
then answered as the legacy API always answers (the IPs, or the seed's
errors). A request still queued when its wait is over ends `expired` and the
caller gets the seed's `503 No capacity is available!`.
"""

from __future__ import annotations

import logging
import math

from dynvm.core import asyncreq, followreq, queueing, staticpool
from dynvm.core.answers import ServerResult, ServersRequest, ServersResult
from dynvm.core.context import Context
from dynvm.core.errors import (
    AllOrNoneFailed,
    BadRequest,
    NoCapacity,
    ProvisionFailed,
    ServiceStopping,
)
from dynvm.core.getservers import check_static_pools
from dynvm.core.lifecycle import RequestState
from dynvm.core.obtain import whole_gib
from dynvm.core.records import LEASE_READY, LEASE_RELEASING, RequestRecord

log = logging.getLogger("dynvm.legacywait")

POLL_SECS = 5.0  # each long poll of the record; a stopping service is noticed between two


def may_wait(req: ServersRequest) -> bool:
    """Whether the queue can hold the request: a v1 request has no network= and no
    ignorelabels=, so those are answered at once, as without a wait."""
    return req.network_id is None and not req.ignore_labels


def refuse_explicit_wait(req: ServersRequest) -> None:
    """A caller who asked `wait=` for a request the queue cannot hold is told so."""
    if req.wait_secs and not may_wait(req):
        raise BadRequest("Error: wait= cannot be combined with networkid= or ignorelabels=; "
                         "drop wait= to be answered at once")


def as_v1(req: ServersRequest, wait_secs: int) -> asyncreq.NewRequest:
    """The v1 request a waiting legacy call becomes: the same VMs, names and lease. A call
    without a token is its job name's, and counted against no quota, as on the legacy
    path."""
    return asyncreq.NewRequest(
        owner=req.owner or req.name, os=req.os, count=req.count, name=req.name,
        cpus=req.cpus, memory_gib=whole_gib(req.mem_bytes),
        lease_minutes=req.expires_in_minutes, labels=tuple(sorted(req.labels)),
        host=req.xhostref, all_or_none=req.all_or_none, check_ssh=req.check_vms,
        queue=True, max_wait_minutes=max(math.ceil(wait_secs / 60), 1),
        counted=req.owner is not None)


def get_servers(ctx: Context, req: ServersRequest, wait_secs: int) -> ServersResult:
    """Serve `req` now, or once room frees within `wait_secs`; the seed's answers."""
    check_static_pools(ctx, req)
    rec = asyncreq.submit(ctx, as_v1(req, wait_secs))  # refusals raise as they always did
    if rec.state == RequestState.QUEUED:
        log.info("getservers %s: queued for up to %d s (request %s)", req.name, wait_secs,
                 rec.id)
    rec = _until_ended(ctx, rec, wait_secs)
    result = _result(ctx, rec)
    staticpool.publish(ctx, result.servers, req.static_pools)
    return result


def _until_ended(ctx: Context, rec: RequestRecord, wait_secs: int) -> RequestRecord:
    """The request once it ended. Still queued after `wait_secs` (or when the service
    stops): it leaves the queue, and the caller is told there was no room."""
    clock = ctx.clock
    deadline = clock.monotonic() + wait_secs
    while rec.state in asyncreq.WAITING:
        left = deadline - clock.monotonic()
        if rec.state == RequestState.QUEUED and (left <= 0 or ctx.stopping.is_set()):
            if ctx.stopping.is_set():
                if queueing.leave(ctx, rec, RequestState.CANCELLED,
                                  "cancelled: dynvm stopped while its caller waited"):
                    raise ServiceStopping("Error: dynvm is stopping; the request left the "
                                          "queue with nothing built, retry it")
            elif queueing.leave(ctx, rec, RequestState.EXPIRED,
                                f"expired: no room within its caller's wait of {wait_secs} s"):
                raise NoCapacity(f"No capacity is available! {rec.count} {rec.os} VM(s) "
                                 f"asked; no room freed within wait={wait_secs} s in the "
                                 f"queue")
            # served meanwhile: its build is under way, wait for it
        rec = followreq.wait(ctx, rec.id, POLL_SECS if left <= 0 else min(left, POLL_SECS))
    return rec


def _result(ctx: Context, rec: RequestRecord) -> ServersResult:
    """The ended request as the legacy API answers it: its VMs in name order, or the
    error a legacy request would have raised."""
    failed = [(str(n), str(why)) for n, why in rec.detail.get("failed") or []]
    if rec.state in (RequestState.DONE, RequestState.PARTIAL):
        order = {n: i for i, n in enumerate(rec.detail.get("names", []))}
        servers = sorted((ServerResult(lease.name, lease.ip, lease.host_ref, lease.vm_uuid)
                          for lease in ctx.store.leases.find()
                          if lease.request_id == rec.id
                          and lease.state not in (LEASE_READY, LEASE_RELEASING)),
                         key=lambda s: order.get(s.name, len(order)))
        if servers:
            return ServersResult(servers=servers, failed=failed)
    reasons = "; ".join(f"{n}: {why}" for n, why in failed) \
        or str(rec.detail.get("error") or rec.detail.get("reason") or rec.state)
    if rec.state == RequestState.CANCELLED:
        raise ProvisionFailed(f"Error: the request was {reasons}")
    if rec.state in (RequestState.EXPIRED, RequestState.REFUSED):  # left the queue unbuilt
        raise NoCapacity(f"No capacity is available! {rec.count} {rec.os} VM(s) asked; "
                         f"the request left the queue: {reasons}")
    if rec.detail.get("params", {}).get("all_or_none", True):
        raise AllOrNoneFailed(f"all vms couldn't be created successfully: {reasons}")
    raise ProvisionFailed(f"Error: no VM could be created: {reasons}")
