"""The v1 API's requests: asked for, watched (long poll) and cancelled, by their owner.

Asking is `dynvm.core.asyncreq`'s, the building `dynvm.core.v1build`'s; this is what an entry point
may do with a request, and what it is told about one (`RequestStatus`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from dynvm.core import asyncreq, followreq, queueing, v1request
from dynvm.core.asyncreq import NewRequest
from dynvm.core.callers import Caller, request_owner
from dynvm.core.errors import NotFound
from dynvm.core.lifecycle import RequestState
from dynvm.core.progress import VmProgress, of_request
from dynvm.core.records import RequestRecord
from dynvm.core.services.base import Subject

__all__ = ["NewRequest", "QueueStatus", "RequestStatus", "Requests"]

log = logging.getLogger("dynvm.requests")


@dataclass(frozen=True)
class QueueStatus:
    """A request's time in the queue: where it stands while it waits, how long it waited."""

    reason: str  # why it waits (which OS and labels, how many VMs short)
    since: float  # when it began to wait
    deadline: float  # it expires then, unless served
    priority: int
    waited: float  # seconds, until now or until it left the queue
    position: int | None = None  # 1: served next (None: no longer waiting)
    waiting: int | None = None  # requests waiting in all
    eta_secs: float | None = None  # until its VMs should be ready (None: unknown)

    @classmethod
    def of(cls, rec: RequestRecord, now: float,
           standing: queueing.Standing | None) -> QueueStatus | None:
        q = rec.detail.get("queue")
        if not isinstance(q, dict):
            return None
        since = float(q.get("since", rec.started))
        left = q.get("served") or (rec.finished if rec.state != RequestState.QUEUED else None)
        return cls(reason=str(q.get("reason", "")), since=since,
                   deadline=float(q.get("deadline", since)), priority=int(q.get("priority", 0)),
                   waited=round(float(left if left is not None else now) - since, 3),
                   position=standing.position if standing else None,
                   waiting=standing.of if standing else None,
                   eta_secs=None if standing is None or standing.eta_secs is None
                   else round(standing.eta_secs, 1))


@dataclass(frozen=True)
class RequestStatus:
    """A request as its owner sees it: its state, and where each of its VMs is."""

    id: str
    state: RequestState
    cancelling: bool  # a cancel was asked and the builder is still stopping
    owner: str
    os: str
    count: int
    names: list[str]
    created: float
    finished: float | None
    expires: float | None
    error: str | None
    vms: list[VmProgress]
    # What its VMs are given: the keys' fingerprints, the hostname and the cloud-config
    # asked (only ever shown to the owner and admins: this whole view is theirs).
    ssh_keys: list[str]
    hostname: str | None
    user_data: str | None
    queue: QueueStatus | None = None  # it waited (or waits) in the queue

    @classmethod
    def of(cls, rec: RequestRecord, cancelling: bool,
           queue: QueueStatus | None = None) -> RequestStatus:
        d = rec.detail
        setup = d.get("setup") or {}
        # A state written by a newer dynvm reads as failed rather than as a guess.
        state = (RequestState(rec.state) if rec.state in v1request.STATES
                 else RequestState.FAILED)
        return cls(id=rec.id, state=state,
                   cancelling=cancelling and state == RequestState.RUNNING,
                   owner=str(d.get("owner", "")), os=rec.os, count=rec.count,
                   names=list(d.get("names", [])), created=rec.started, finished=rec.finished,
                   expires=d.get("expires"), error=d.get("error") or d.get("reason"),
                   vms=of_request(rec), ssh_keys=list(setup.get("ssh_keys") or []),
                   hostname=setup.get("hostname"), user_data=setup.get("user_data"), queue=queue)


class Requests(Subject):
    """`POST/GET/DELETE /api/v1/requests`: a caller sees and cancels only its own (an
    admin any)."""

    def submit(self, new: NewRequest) -> RequestStatus:
        """Check, hold names, quota and capacity, record; the VMs are then built in the
        background, or (no room now, `new.queue`) the request waits in the queue. Raises
        (BadRequest, NameInUse, QuotaExceeded, NoCapacity, StoreDown) having changed
        nothing."""
        self.rt.touch()
        return self._status(asyncreq.submit(self.ctx, new), False)

    def _status(self, rec: RequestRecord, cancelling: bool) -> RequestStatus:
        standing = None
        if rec.state == RequestState.QUEUED:
            try:
                snap = queueing.snapshot(self.ctx, self.rt.background.dispatcher.builds)
                standing = snap.standing(rec.id)
            except Exception:  # where it stands is an estimate; the request is what matters
                log.warning("could not tell where request %s stands", rec.id, exc_info=True)
        return RequestStatus.of(rec, cancelling, QueueStatus.of(rec, self.ctx.clock(), standing))

    def _visible(self, caller: Caller, request_id: str) -> RequestRecord:
        rec = followreq.get(self.ctx, request_id)
        if not caller.may_own(str(rec.detail.get("owner") or "")):
            raise NotFound(f"no request {request_id}")
        return rec

    def status(self, caller: Caller, request_id: str, wait: float = 0.0) -> RequestStatus:
        """The request now, or (long poll) once it changes or ends, at most `wait` seconds."""
        self.rt.touch()
        rec = self._visible(caller, request_id)
        if wait:
            rec = followreq.wait(self.ctx, request_id, wait)
        return self._status(rec, followreq.cancelling(self.ctx, request_id))

    def in_flight(self, caller: Caller) -> list[RequestStatus]:
        """The caller's requests still being built (every one for an admin), oldest first:
        what is queued for it."""
        self.rt.touch()
        records = self.rt.read(lambda: self.ctx.store.requests.find(state=RequestState.RUNNING))
        mine = [r for r in records if caller.may_own(request_owner(r))]
        return [RequestStatus.of(r, followreq.cancelling(self.ctx, r.id))
                for r in sorted(mine, key=lambda r: r.started)]

    def cancel(self, caller: Caller, request_id: str) -> RequestStatus:
        """Cancel a running request (its builder destroys what it built; `running` until
        it has), or release every VM of a finished one."""
        self.rt.touch()
        self._visible(caller, request_id)
        return self._status(followreq.cancel(self.ctx, request_id, by=caller.owner), True)
