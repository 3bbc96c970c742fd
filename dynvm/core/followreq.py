"""Following and cancelling v1 requests, from any worker or instance: everything is read
from the request's record in the store, and a cancel reaches the process building it
through the store (`v1request.CANCEL_LOCK`)."""

from __future__ import annotations

from dynvm.core import lifecycle, progress, queueing
from dynvm.core.context import Context
from dynvm.core.errors import NotFound
from dynvm.core.lifecycle import RequestState
from dynvm.core.release import release_lease
from dynvm.core.store import LEASE_READY, LEASE_RELEASING, RequestRecord
from dynvm.core.v1request import API, CANCEL_LOCK, DONE, PARTIAL, RUNNING, WAITING


def get(ctx: Context, request_id: str) -> RequestRecord:
    rec = ctx.store.requests.get(request_id) if _plausible(request_id) else None
    if rec is None or rec.detail.get("api") != API:
        raise NotFound(f"no request {request_id}")
    return rec


def _plausible(request_id: str) -> bool:
    return 0 < len(request_id) <= 64 and request_id.isascii() and request_id.isalnum()


def wait(ctx: Context, request_id: str, secs: float, poll: float = 0.2) -> RequestRecord:
    """Long poll: the record once it changes or finishes, or as it is after `secs`."""
    first = get(ctx, request_id)
    clock = ctx.clock
    deadline = clock.monotonic() + secs
    rec = first
    with ctx.waiting():  # a request thread lends its place while it polls
        while rec.state in WAITING and clock.monotonic() < deadline:
            clock.sleep(min(poll, deadline - clock.monotonic()))  # polling the store
            rec = get(ctx, request_id)
            if rec.detail != first.detail:
                break
    return rec


def cancel(ctx: Context, request_id: str, by: str) -> RequestRecord:
    """Cancel a queued request (it holds nothing yet), a running one (its builder
    destroys what it built), or release a done one's VMs.

    `by` (the caller's owner name) is kept with the cancel mark, so the record says who.
    """
    rec = get(ctx, request_id)
    if rec.state == RequestState.QUEUED:
        if queueing.cancel(ctx, rec, by):
            return get(ctx, request_id)
        rec = get(ctx, request_id)  # dispatched (or ended) meanwhile: cancel it as it is now
    if rec.state == RUNNING:
        ctx.store.locks.acquire(CANCEL_LOCK + request_id, by,
                                ttl=ctx.config().reservation_ttl_secs)
        return rec
    released = []
    for lease in ctx.store.leases.find():
        if lease.request_id == request_id and lease.state not in (LEASE_READY, LEASE_RELEASING):
            if release_lease(ctx, lease, reason=f"cancelled by {by}"):
                released.append(lease.name)
                progress.note(ctx, request_id, lease.name, progress.Step.CANCELLED,
                              reason=f"cancelled by {by} after it was ready: destroyed "
                                     f"with its disks")
    if rec.state in (DONE, PARTIAL):
        lifecycle.end_request(ctx.store, request_id, RequestState.CANCELLED, {
            "reason": f"cancelled by {by} after it was {rec.state}: {len(released)} VM(s) "
                      f"destroyed with their disks"})
    return get(ctx, request_id)


def cancelling(ctx: Context, request_id: str) -> bool:
    return ctx.store.locks.holder(CANCEL_LOCK + request_id) is not None
