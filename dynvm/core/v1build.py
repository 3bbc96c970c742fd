"""The background half of a v1 request: build every VM (warm ones handed out first),
stop when a cancel is asked through the store, then settle the request's outcome
(`done`, `partial`, `failed`, `cancelled`), destroying what an all-or-none failure
or a cancel leaves behind. It runs in a thread of the process that took the room:
the one that accepted the request, or the leader that served it from the queue."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from dynvm.config import OsSpec
from dynvm.core import lifecycle, obtain, progress
from dynvm.core.capacity import GIB
from dynvm.core.context import Context
from dynvm.core.getservers import NAME_LOCK, NO_ROOM_INSTEAD, with_overrides
from dynvm.core.lifecycle import CoreEvent, RequestState
from dynvm.core.placement import Slot
from dynvm.core.provisioning import BuildFailed, Built, Job, build_one, release_slot
from dynvm.core.release import release_lease
from dynvm.core.store import RequestRecord
from dynvm.core.v1request import (
    CANCEL_LOCK,
    CANCELLED,
    DONE,
    FAILED,
    PARTIAL,
    NewRequest,
    legacy_view,
)

log = logging.getLogger("dynvm.asyncreq")

CANCEL_POLL_SECS = 0.5


@dataclass
class Running:
    """What the building thread needs: the request, what it wants, the room and the names
    it holds."""

    record: RequestRecord
    req: NewRequest
    want: obtain.Want
    held: obtain.Held = field(default_factory=obtain.Held)
    held_names: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return self.want.names


def start(ctx: Context, run: Running) -> None:
    threading.Thread(target=_build, args=(ctx, run), daemon=True,
                     name=f"dynvm-v1-{run.record.id[:8]}").start()


def free_names(ctx: Context, run: Running) -> None:
    """Give back the names the request claimed (a claim lapses on its own too)."""
    for n in run.held_names:
        try:
            ctx.store.locks.release(NAME_LOCK + n, run.record.id)
        except Exception:  # it lapses on its own
            log.warning("could not free the name %s", n)
    run.held_names = []


def _watch_cancel(ctx: Context, request_id: str, cancel: threading.Event,
                  done: threading.Event) -> None:
    while not ctx.clock.wait(done, CANCEL_POLL_SECS):
        try:
            if ctx.store.locks.holder(CANCEL_LOCK + request_id) is not None:
                cancel.set()
                return
        except Exception:  # the store may come back; keep building meanwhile
            continue


def _canceller(ctx: Context, request_id: str) -> str:
    """Who cancelled the request (the cancel mark's holder), for its record."""
    try:
        return ctx.store.locks.holder(CANCEL_LOCK + request_id) or "its owner"
    except Exception:  # the record says "cancelled" all the same
        return "its owner"


def _build(ctx: Context, run: Running) -> None:
    """The background half: build every VM, then settle the request's outcome."""
    rid = run.record.id
    req = run.req
    cancel, done = threading.Event(), threading.Event()
    threading.Thread(target=_watch_cancel, args=(ctx, rid, cancel, done), daemon=True,
                     name=f"dynvm-v1-cancel-{rid[:8]}").start()
    built: list[Built] = []
    failed: list[tuple[str, str]] = []
    stopped: list[str] = []  # builds a cancel cut short
    jobs: list[Job] = []
    try:
        want, held = run.want, run.held
        warm, instead = obtain.hand_out(ctx, ctx.config(), want, held)
        for b in warm:
            progress.note(ctx, rid, b.name, progress.Step.READY, ip=b.ip, host_ref=b.host_ref)
            _record_size(ctx, b, want.spec)
        built += warm
        for name, slot in [*zip(held.cold_names(want), held.slots, strict=True), *instead]:
            if slot is None:
                failed.append((name, NO_ROOM_INSTEAD))
                progress.note(ctx, rid, name, progress.Step.FAILED, reason=NO_ROOM_INSTEAD)
            else:
                jobs.append(_job(req, want, name, slot))
        with ThreadPoolExecutor(max_workers=max(min(len(jobs), 64), 1),
                                thread_name_prefix="dynvm-v1-build") as pool:
            futures = {pool.submit(build_one, ctx, job, cancel): job for job in jobs}
            for fut, job in futures.items():
                try:
                    b = fut.result()
                    built.append(b)
                    _record_size(ctx, b, job.spec)
                except Exception as exc:
                    if not isinstance(exc, BuildFailed):
                        log.exception("building %s", job.name)
                    release_slot(ctx, job.slot)
                    ctx.room_freed.set()  # its room is free again
                    if cancel.is_set():
                        stopped.append(job.name)
                        continue  # noted below, with who cancelled
                    failed.append((job.name, str(exc)))
                    progress.note(ctx, rid, job.name, progress.Step.FAILED, reason=str(exc))
        detail: dict = {"failed": failed}
        for _ in failed:  # a VM the request asked for and did not get
            ctx.event(CoreEvent.VM_FAILED, os=req.os)
        if cancel.is_set() or ctx.store.locks.holder(CANCEL_LOCK + rid) is not None:
            who = _canceller(ctx, rid)
            for name in stopped:
                progress.note(ctx, rid, name, progress.Step.CANCELLED,
                              reason=f"cancelled by {who} while it was being built; what was "
                                     f"built of it was destroyed with its disks")
            _rollback(ctx, rid, built, f"cancelled by {who}", progress.Step.CANCELLED)
            state = CANCELLED
            detail["reason"] = (
                f"cancelled by {who} after {ctx.clock() - run.record.started:.0f} s: "
                f"{len(built)} VM(s) already built were destroyed with their disks, "
                f"{len(stopped)} stopped while being built"
                + (f", {len(failed)} had failed" if failed else ""))
        elif failed and (req.all_or_none or not built):
            _rollback(ctx, rid, built, "rollback: all-or-none request failed")
            state = FAILED
        else:
            state = PARTIAL if failed else DONE
            for _ in built:  # kept: each VM is now its requester's, built or warm
                ctx.event(CoreEvent.HANDED_OUT, os=req.os)
        if state in (CANCELLED, FAILED):
            ctx.store.reservations.drop_request(rid)
        free_names(ctx, run)  # before the request reads as finished: nothing left held
        lifecycle.end_request(ctx.store, rid, state, detail)
    except Exception as exc:
        log.exception("request %s", rid)
        try:
            _rollback(ctx, rid, built, "rollback: internal error")
            free_names(ctx, run)
            lifecycle.end_request(ctx.store, rid, RequestState.FAILED,
                                  {"error": f"internal error: {exc!r}"})
        except Exception:  # reconciliation finishes what is left once this process is gone
            log.exception("could not settle request %s", rid)
    finally:
        done.set()
        free_names(ctx, run)


def _job(req: NewRequest, want: obtain.Want, name: str, slot: Slot) -> Job:
    return Job(name=name, owner=req.owner, request_id=want.request_id, slot=slot,
               spec=with_overrides(slot.host.os[req.os], legacy_view(req)),  # that host's
               memory_bytes=int(slot.reservation.memory_gib * GIB), expires=want.expires,
               labels=sorted(req.labels), network_id=None, check_vms=req.check_ssh,
               size_overridden=(req.cpus is not None, req.memory_gib is not None),
               setup=want.setup, hostname=want.hostnames.get(name))


def _record_size(ctx: Context, b: Built, spec: OsSpec) -> None:
    """The lease carries its size, so the owner's quota counts what it really holds."""
    try:
        lease = ctx.store.leases.get(b.vm_uuid)
        if lease is not None:
            ctx.store.leases.update(b.vm_uuid, extra={**lease.extra, "vcpus": spec.vcpus,
                                                      "memory_gib": spec.memory_gib})
    except Exception:  # the OS's configured size is counted instead
        log.warning("could not record the size of %s", b.name)


def _rollback(ctx: Context, rid: str, built: list[Built], reason: str,
              step: progress.Step = progress.Step.FAILED) -> None:
    """Destroy what was built; each VM's step says so, with `reason`."""
    for b in built:
        try:
            lease = ctx.store.leases.get(b.vm_uuid) or b.lease
            release_lease(ctx, lease, reason=reason)
            why = f"{reason}: it was ready, and was destroyed with its disks"
        except Exception:
            log.exception("rollback of %s failed", b.name)
            why = f"{reason}: it was ready; destroying it failed and is retried"
        progress.note(ctx, rid, b.name, step, reason=why)
