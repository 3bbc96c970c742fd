"""Asynchronous VM requests (the v1 API): reserve now, answer at once, build in the background.

Everything that can refuse a request (unknown OS, name taken, quota, no
capacity) happens before the answer, so a 202 means the room is held. The
build then runs in a thread of the process that accepted it, exactly like a
legacy request: the request record, the reservations and the leases are in
the store, so any worker or instance can report on it, and a process that
dies mid-build leaves a `running` record that reconciliation cleans up.

With no room now, a request within its owner's quota waits in the queue
instead (`queueing`), and the background leader builds it here once room
frees (`dispatch`, `start_build`).

Cancelling works from any process (`followreq`): it sets a flag in the store (a lock named
`cancel:<request id>`), which the building process polls; every VM built so
far is then destroyed with its disks and every reservation given back.
"""

from __future__ import annotations

import logging
import secrets
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from dynvm.config import Config, HostConfig, OsSpec
from dynvm.core import (
    cloudinit,
    guestsetup,
    lifecycle,
    obtain,
    progress,
    queueing,
    quota,
    sshkeys,
)
from dynvm.core.answers import ServersRequest
from dynvm.core.capacity import GIB
from dynvm.core.context import Context
from dynvm.core.errors import (
    DynvmError,
    NameInUse,
    NoCapacity,
    StoreDown,
    Unprocessable,
)
from dynvm.core.getservers import (
    NAME_LOCK,
    NO_ROOM_INSTEAD,
    check_request,
    effective_spec,
    with_overrides,
)
from dynvm.core.lifecycle import CoreEvent, RequestState
from dynvm.core.names import check_free
from dynvm.core.placement import Slot, eligible_hosts, why_no_host
from dynvm.core.provisioning import BuildFailed, Built, Job, build_one, release_slot
from dynvm.core.release import names_for, release_lease
from dynvm.core.store import RequestRecord, StoreUnavailable

log = logging.getLogger("dynvm.asyncreq")

CANCEL_LOCK = "cancel:"
CANCEL_POLL_SECS = 0.5
API = "v1"

# Request states as the v1 API shows them (declared in `lifecycle`).
RUNNING, DONE, PARTIAL, FAILED, CANCELLED = (RequestState.RUNNING.value, RequestState.DONE.value,
                                             RequestState.PARTIAL.value,
                                             RequestState.FAILED.value,
                                             RequestState.CANCELLED.value)
STATES = frozenset(s.value for s in RequestState)
WAITING = frozenset({RequestState.RUNNING.value, RequestState.QUEUED.value})  # not ended yet


@dataclass(frozen=True)
class NewRequest:
    """A validated `POST /api/v1/requests` from `owner`."""

    owner: str
    os: str
    count: int = 1
    name: str | None = None
    cpus: int | None = None
    memory_gib: int | None = None
    lease_minutes: int | None = None
    labels: tuple[str, ...] = ()
    host: int | None = None
    all_or_none: bool = True
    check_ssh: bool = False
    queue: bool = True  # no room now: wait in the queue (False: refused at once, 503)
    priority: int = 0  # in the queue; capped by the owner's `priority.max`
    max_wait_minutes: int | None = None  # in the queue (None: `[queue] max_wait_minutes`)
    # What the VMs are given (never logged, never in history or a request's params):
    ssh_keys: tuple[str, ...] = field(default=(), repr=False)  # OpenSSH public key lines
    hostname: str | None = None  # None: each VM's name
    user_data: str | None = field(default=None, repr=False)  # a #cloud-config document


# The fields of a NewRequest kept apart from its params in the request record.
SETUP_FIELDS = ("ssh_keys", "hostname", "user_data")


@dataclass
class _Running:
    """What the building thread needs."""

    record: RequestRecord
    req: NewRequest
    want: obtain.Want
    held: obtain.Held = field(default_factory=obtain.Held)
    held_names: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return self.want.names


def legacy_view(req: NewRequest) -> ServersRequest:
    return ServersRequest(name=req.name or "v", count=req.count, os=req.os, cpus=req.cpus,
                          mem_bytes=req.memory_gib * GIB if req.memory_gib else None,
                          expires_in_minutes=req.lease_minutes,
                          labels=frozenset(req.labels), xhostref=req.host,
                          all_or_none=req.all_or_none, check_vms=req.check_ssh)


def guest_setup(ctx: Context, cfg: Config, req: NewRequest) -> guestsetup.GuestSetup | None:
    """The keys (the request's and the owner's registered ones), hostname and cloud-config
    the VMs get; Unprocessable names what is wrong (never with a key in it)."""
    try:
        keys = sshkeys.parse_keys(list(req.ssh_keys))
        hostname = cloudinit.check_hostname(req.hostname) if req.hostname is not None \
            else None
        doc = cloudinit.check_user_data(req.user_data) if req.user_data is not None else None
    except (sshkeys.BadKey, cloudinit.BadHostname, cloudinit.BadUserData) as exc:
        raise Unprocessable(str(exc)) from None
    try:
        registered = ctx.store.owner_keys.of_owner(req.owner)
    except StoreUnavailable as exc:
        raise StoreDown(f"the state store is unreachable, so the owner's keys cannot be "
                        f"read; try again shortly ({exc})") from exc
    setup = guestsetup.GuestSetup.of([*keys, *registered], hostname, doc)
    if not setup:
        return None
    why = guestsetup.refusal(cfg, req.os, setup)
    if why is not None:
        raise Unprocessable(why)
    return setup


def reserved_steps(names: list[str], now: float) -> dict[str, dict[str, Any]]:
    """Each VM's first step, once room is held for it."""
    return {n: {"step": str(progress.Step.RESERVED), "since": round(now, 3)} for n in names}


def setup_of(ctx: Context, cfg: Config, req: NewRequest, names: list[str]
             ) -> tuple[guestsetup.GuestSetup | None, dict[str, str]]:
    """What the VMs are given, and each VM's hostname."""
    setup = guest_setup(ctx, cfg, req)
    hostnames = {n: setup.hostname_of(n, i + 1 if req.count > 1 else None)
                 for i, n in enumerate(names)} if setup else {}
    return setup, hostnames


def submit(ctx: Context, req: NewRequest, *, start: bool = True) -> RequestRecord:
    """Check, hold names, quota and capacity, record; then build in the background.

    With no room now (and `req.queue`), the request waits in the queue instead
    (`queued`, holding nothing but its names) until the background leader
    dispatches it; one that brings its own `ssh_keys` is not queued (only their
    fingerprints are kept). Raises BadRequest, Unprocessable, NameInUse,
    QuotaExceeded, NoCapacity or StoreDown, having changed nothing. Returns the
    request record as it stands.
    """
    cfg = ctx.config()
    sreq = legacy_view(req)
    check_request(cfg, sreq)
    spec = effective_spec(cfg, sreq)
    base = req.name or f"{req.os}-{secrets.token_hex(3)}{'-' if req.count > 1 else ''}"
    names = names_for(base, req.count)
    setup, hostnames = setup_of(ctx, cfg, req, names)
    now = ctx.clock()
    expires = now + cfg.lease_minutes(req.lease_minutes) * 60
    request_id = uuid.uuid4().hex
    ttl = cfg.reservation_ttl_secs
    record = RequestRecord(
        id=request_id, name=base, os=req.os, count=req.count, instance=ctx.instance,
        started=now, detail={
            "api": API, "owner": req.owner, "names": names, "expires": expires,
            "params": params_of(req),
            # Shown to the owner (and admins) only: the v1 GET is theirs alone.
            "setup": {"ssh_keys": list(setup.fingerprints) if setup else [],
                      "hostname": req.hostname, "user_data": req.user_data},
            "vms": reserved_steps(names, now)})
    hosts = eligible_hosts(cfg, req.os, frozenset(req.labels), False, req.host)
    run = _Running(record, req, want_of(cfg, req, spec, names, expires, request_id, hosts,
                                        setup, hostnames))
    try:
        if req.name is not None:  # generated names are unique; chosen ones are claimed
            _claim_names(ctx, run, ttl)
        ctx.store.requests.put(record)
        entry = queueing.entry_of(cfg, record, req, spec, now)
        try:
            # Requests already waiting go first, unless this one may backfill.
            may_queue = req.queue and not req.ssh_keys  # its own keys are not kept
            behind = queueing.held_back(ctx, entry, record) if may_queue else None
            if behind is None:
                _reserve(ctx, cfg, run)
        except NoCapacity as exc:
            if not may_queue or not queueing.may_wait(ctx, cfg, entry, record, exc):
                raise
            behind = queueing.reason_of(exc, sorted(req.labels))
        if behind is not None:
            queueing.enqueue(ctx, cfg, entry, run.held_names, behind)
            return ctx.store.requests.get(request_id) or record
    except StoreUnavailable as exc:
        _abandon(ctx, run, "the state store is unreachable, so capacity could not be "
                           "reserved safely", refused=True)
        raise StoreDown(f"the state store is unreachable, so capacity cannot be reserved "
                        f"safely; try again shortly ({exc})") from exc
    except DynvmError as exc:  # quota, capacity, name in use: turned down as asked
        _abandon(ctx, run, exc.message, refused=True)
        raise
    except Exception as exc:
        _abandon(ctx, run, f"internal error: {exc!r}", refused=False)
        raise
    if start:
        _start(ctx, run)
    return record


def _start(ctx: Context, run: _Running) -> None:
    threading.Thread(target=_build, args=(ctx, run), daemon=True,
                     name=f"dynvm-v1-{run.record.id[:8]}").start()


def start_build(ctx: Context, record: RequestRecord, req: NewRequest, want: obtain.Want,
                held: obtain.Held, held_names: list[str]) -> None:
    """Build a request served from the queue (room held, record `running`) in the background."""
    _start(ctx, _Running(record, req, want, held, held_names))


def params_of(req: NewRequest) -> dict[str, Any]:
    """The request as asked, kept in its record (a queued one is rebuilt from it)."""
    return {k: (list(v) if isinstance(v, tuple) else v)
            for k, v in asdict(req).items() if k != "owner" and k not in SETUP_FIELDS}


def request_of(rec: RequestRecord) -> NewRequest:
    """The request a record was made for, as asked: its params, with the hostname and
    cloud-config its record keeps (a request with keys of its own is never queued)."""
    params = dict(rec.detail.get("params", {}))
    params["labels"] = tuple(params.get("labels", ()))
    known = set(NewRequest.__dataclass_fields__) - {"owner", *SETUP_FIELDS}
    setup = rec.detail.get("setup") or {}
    return NewRequest(owner=str(rec.detail.get("owner", "")),
                      **{k: v for k, v in params.items() if k in known},
                      hostname=setup.get("hostname"), user_data=setup.get("user_data"))


def _claim_names(ctx: Context, run: _Running, ttl: float) -> None:
    for n in run.names:
        if not ctx.store.locks.acquire(NAME_LOCK + n, run.record.id, ttl):
            raise NameInUse(f"VM {n} is being created by another request")
        run.held_names.append(n)
    check_free(ctx, run.names)


def want_of(cfg: Config, req: NewRequest, spec: OsSpec, names: list[str], expires: float,
            request_id: str, hosts: list[HostConfig],
            setup: guestsetup.GuestSetup | None = None,
            hostnames: dict[str, str] | None = None) -> obtain.Want:
    """What a v1 request needs, as every way of asking describes it."""
    return obtain.Want(
        os=req.os, names=names, owner=req.owner, request_id=request_id, expires=expires,
        labels=sorted(req.labels), hosts=hosts, spec=spec,
        # None: each host's own <os>.* sizes, as for the legacy API
        vcpus=req.cpus, memory_gib=req.memory_gib, quota_owner=req.owner,
        warm=req.cpus is None and req.memory_gib is None,  # warm VMs have the OS's sizes
        check_ssh=req.check_ssh, ttl=cfg.reservation_ttl_secs,
        setup=setup, hostnames=hostnames or {},
        no_host="" if hosts else why_no_host(cfg, req.os, frozenset(req.labels), False, req.host))


def _reserve(ctx: Context, cfg: Config, run: _Running) -> None:
    req, spec = run.req, run.want.spec
    check = quota.check_for(cfg, req.owner, spec.vcpus, spec.memory_gib)
    if check is not None:  # a clear answer before any room is taken
        used = quota.usage(ctx.store, cfg, req.owner)
        over = quota.exceeded(cfg, req.owner, used, req.count, spec.vcpus, spec.memory_gib)
        if over is not None:
            raise over
    run.held = obtain.take(ctx, cfg, run.want)


def _abandon(ctx: Context, run: _Running, reason: str, *, refused: bool) -> None:
    """A request turned down before any build: `refused` (or failed, on a bug), holding
    nothing and listing no VM: none was reserved for it, none will be built."""
    _free_names(ctx, run)  # before the request reads as finished: nothing left held
    try:
        ctx.store.reservations.drop_request(run.record.id)  # none should be left; be sure
        lifecycle.end_request(ctx.store, run.record.id,
                              RequestState.REFUSED if refused else RequestState.FAILED,
                              {"error": reason, "vms": {}})
    except Exception:
        log.exception("could not close request %s", run.record.id)


def _free_names(ctx: Context, run: _Running) -> None:
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


def _build(ctx: Context, run: _Running) -> None:
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
        _free_names(ctx, run)  # before the request reads as finished: nothing left held
        lifecycle.end_request(ctx.store, rid, state, detail)
    except Exception as exc:
        log.exception("request %s", rid)
        try:
            _rollback(ctx, rid, built, "rollback: internal error")
            _free_names(ctx, run)
            lifecycle.end_request(ctx.store, rid, RequestState.FAILED,
                                  {"error": f"internal error: {exc!r}"})
        except Exception:  # reconciliation finishes what is left once this process is gone
            log.exception("could not settle request %s", rid)
    finally:
        done.set()
        _free_names(ctx, run)


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
