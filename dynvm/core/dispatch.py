"""Serving the queue: the background leader's duty of taking room for queued requests.

One pass (`Dispatcher.run`) ends the requests that waited their longest,
orders the rest (`queueorder.order`) and serves each that finds room now, in
that order. The first that finds none is the head: room that frees is kept
for it, and a request behind it is served only if its leases end before the
head could start anyway (`queueorder.may_backfill`).

Serving a request is exactly-once across leaders and instances: the entry is
claimed in the store (a claim that lapses if its holder dies), room is taken
(`obtain.take`, all or nothing, with the owner's quota), then the request's
record moves `queued -> running` by compare-and-set; whoever loses any of
these steps gives back what it took. The leader runs a pass on every tick,
and at once when room frees in its process (`Context.room_freed`: a release,
an expiry, a failed build giving its room back, an undrained host, a reload).
"""

from __future__ import annotations

import enum
import logging
from typing import Any

from dynvm.core import asyncreq, lifecycle, obtain, queueing
from dynvm.core.context import Context
from dynvm.core.errors import BadRequest, NoCapacity, QuotaExceeded, Unprocessable
from dynvm.core.getservers import check_request, effective_spec
from dynvm.core.lifecycle import RequestState
from dynvm.core.placement import eligible_hosts
from dynvm.core.queueorder import may_backfill
from dynvm.core.records import QueueEntry, RequestRecord
from dynvm.core.v1request import QUEUED_KEYS

log = logging.getLogger("dynvm.dispatch")


class Outcome(enum.Enum):
    SERVED = "served"
    NO_ROOM = "no room"
    OVER_QUOTA = "over quota"  # its owner's other VMs fill the quota: it waits, not the queue
    ELSEWHERE = "elsewhere"  # another leader holds it, or it left the queue


class Dispatcher:
    """The leader's queue duty; `run` is one pass."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.builds = queueing.BUILDS
        self.passes = 0  # for tests that wait for a pass
        self.served = 0

    def run(self) -> int:
        """One pass over the queue; returns how many requests were served."""
        ctx = self.ctx
        entries = ctx.store.queue.entries()
        self.passes += 1
        if not entries:
            return 0
        now = ctx.clock()
        entries = queueing.expire_due(ctx, entries, now)
        if not entries:
            return 0
        snap = queueing.snapshot(ctx, self.builds, entries)
        served = 0
        head: QueueEntry | None = None
        for e in snap.ordered:
            rec = snap.records.get(e.id)
            if rec is None or rec.state != RequestState.QUEUED:
                self._stale(e, rec)
                continue
            if head is not None and not may_backfill(now, e, snap.builds.get(e.os, 0.0),
                                                     snap.starts.get(head.id)):
                continue  # it would delay the head
            outcome = self.serve(e, rec)
            if outcome is Outcome.SERVED:
                served += 1
            elif outcome is Outcome.NO_ROOM and head is None:
                head = e
        self.served += served
        return served

    def _stale(self, e: QueueEntry, rec: RequestRecord | None) -> None:
        """An entry whose request left the queue (served by a leader that died before it
        removed the entry, cancelled, ended): only the entry is left to remove."""
        if rec is None or rec.state != RequestState.QUEUED:
            self.ctx.store.queue.remove(e.id)

    def serve(self, e: QueueEntry, rec: RequestRecord) -> Outcome:
        """Claim the entry, take room, move the request to `running`, start its build."""
        ctx = self.ctx
        cfg = ctx.config()
        now = ctx.clock()
        if ctx.store.direct.queue.claim(e.id, ctx.instance, cfg.reservation_ttl_secs,
                                        now) is None:
            return Outcome.ELSEWHERE
        req = asyncreq.request_of(rec)
        names = list(rec.detail.get("names", []))
        try:
            sreq = asyncreq.legacy_view(req)
            check_request(cfg, sreq)  # a reload may have taken its OS, host or labels away
            spec = effective_spec(cfg, sreq)
            setup, hostnames = asyncreq.setup_of(ctx, cfg, req, names)  # keys registered now
        except (BadRequest, Unprocessable) as exc:
            queueing.leave(ctx, rec, RequestState.REFUSED,
                           f"refused: it can no longer be served ({exc.message})")
            return Outcome.ELSEWHERE
        except BaseException:  # the store, say: the next pass tries again
            ctx.store.queue.unclaim(e.id, ctx.instance)
            raise
        expires = now + cfg.lease_minutes(req.lease_minutes) * 60  # its leases start now
        hosts = eligible_hosts(cfg, req.os, frozenset(req.labels), False, req.host)
        want = asyncreq.want_of(cfg, req, spec, names, expires, rec.id, hosts, setup,
                                hostnames)
        try:
            held = obtain.take(ctx, cfg, want)
        except (NoCapacity, QuotaExceeded) as exc:
            ctx.store.queue.unclaim(e.id, ctx.instance)
            return Outcome.NO_ROOM if isinstance(exc, NoCapacity) else Outcome.OVER_QUOTA
        except BaseException:
            ctx.store.queue.unclaim(e.id, ctx.instance)
            raise
        waited = now - float(rec.detail.get("queue", {}).get("since", rec.started))
        detail: dict[str, Any] = {
            "instance": ctx.instance, "expires": expires, "waited": round(waited, 3),
            "queue": {**rec.detail.get("queue", {}), "served": now},
            QUEUED_KEYS: None,  # handed to its build; the record keeps fingerprints
            "vms": asyncreq.reserved_steps(names, now)}
        if not lifecycle.leave_queue(ctx.store.direct, rec.id, RequestState.RUNNING, detail):
            obtain.give_back(ctx, held)  # cancelled or served by another meanwhile
            ctx.store.queue.remove(e.id)
            return Outcome.ELSEWHERE
        ctx.store.queue.remove(e.id)
        ctx.event(lifecycle.CoreEvent.QUEUE_LEFT, os=rec.os, seconds=waited)
        rec = ctx.store.requests.get(rec.id) or rec
        log.info("request %s served from the queue after %.0f s", rec.id, waited)
        asyncreq.start_build(ctx, rec, req, want, held, names if req.name else [])
        return Outcome.SERVED
