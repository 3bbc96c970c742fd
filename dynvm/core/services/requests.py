"""The v1 API's requests: asked for, watched (long poll) and cancelled, by their owner.

The building itself is `dynvm.core.asyncreq`'s; this is what an entry point
may do with a request, and what it is told about one (`RequestStatus`).
"""

from __future__ import annotations

from dataclasses import dataclass

from dynvm.core import asyncreq
from dynvm.core.asyncreq import NewRequest
from dynvm.core.callers import Caller, request_owner
from dynvm.core.errors import NotFound
from dynvm.core.lifecycle import RequestState
from dynvm.core.progress import VmProgress, of_request
from dynvm.core.records import RequestRecord
from dynvm.core.services.base import Subject

__all__ = ["NewRequest", "RequestStatus", "Requests"]


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

    @classmethod
    def of(cls, rec: RequestRecord, cancelling: bool) -> RequestStatus:
        d = rec.detail
        setup = d.get("setup") or {}
        # A state written by a newer dynvm reads as failed rather than as a guess.
        state = (RequestState(rec.state) if rec.state in asyncreq.STATES
                 else RequestState.FAILED)
        return cls(id=rec.id, state=state,
                   cancelling=cancelling and state == RequestState.RUNNING,
                   owner=str(d.get("owner", "")), os=rec.os, count=rec.count,
                   names=list(d.get("names", [])), created=rec.started, finished=rec.finished,
                   expires=d.get("expires"), error=d.get("error") or d.get("reason"),
                   vms=of_request(rec), ssh_keys=list(setup.get("ssh_keys") or []),
                   hostname=setup.get("hostname"), user_data=setup.get("user_data"))


class Requests(Subject):
    """`POST/GET/DELETE /api/v1/requests`: a caller sees and cancels only its own (an
    admin any)."""

    def submit(self, new: NewRequest) -> RequestStatus:
        """Check, hold names, quota and capacity, record; the VMs are then built in the
        background. Raises (BadRequest, NameInUse, QuotaExceeded, NoCapacity, StoreDown)
        having changed nothing."""
        self.rt.touch()
        return RequestStatus.of(asyncreq.submit(self.ctx, new), False)

    def _visible(self, caller: Caller, request_id: str) -> RequestRecord:
        rec = asyncreq.get(self.ctx, request_id)
        if not caller.may_own(str(rec.detail.get("owner") or "")):
            raise NotFound(f"no request {request_id}")
        return rec

    def status(self, caller: Caller, request_id: str, wait: float = 0.0) -> RequestStatus:
        """The request now, or (long poll) once it changes or ends, at most `wait` seconds."""
        self.rt.touch()
        rec = self._visible(caller, request_id)
        if wait:
            rec = asyncreq.wait(self.ctx, request_id, wait)
        return RequestStatus.of(rec, asyncreq.cancelling(self.ctx, request_id))

    def in_flight(self, caller: Caller) -> list[RequestStatus]:
        """The caller's requests still being built (every one for an admin), oldest first:
        what is queued for it."""
        self.rt.touch()
        records = self.rt.read(lambda: self.ctx.store.requests.find(state=RequestState.RUNNING))
        mine = [r for r in records if caller.may_own(request_owner(r))]
        return [RequestStatus.of(r, asyncreq.cancelling(self.ctx, r.id))
                for r in sorted(mine, key=lambda r: r.started)]

    def cancel(self, caller: Caller, request_id: str) -> RequestStatus:
        """Cancel a running request (its builder destroys what it built; `running` until
        it has), or release every VM of a finished one."""
        self.rt.touch()
        self._visible(caller, request_id)
        return RequestStatus.of(asyncreq.cancel(self.ctx, request_id, by=caller.owner), True)
