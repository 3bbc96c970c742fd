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

What a request is and how its record keeps it: `v1request`; the build
itself: `v1build`; following and cancelling from any process: `followreq`.
"""

from __future__ import annotations

import logging
import secrets
import uuid

from dynvm.config import Config, HostConfig, OsSpec
from dynvm.core import cloudinit, guestsetup, lifecycle, obtain, queueing, sshkeys, v1build
from dynvm.core.context import Context
from dynvm.core.errors import DynvmError, NameInUse, NoCapacity, StoreDown, Unprocessable
from dynvm.core.getservers import NAME_LOCK, check_request, effective_spec
from dynvm.core.lifecycle import RequestState
from dynvm.core.names import check_free
from dynvm.core.placement import eligible_hosts, why_no_host
from dynvm.core.release import names_for
from dynvm.core.store import RequestRecord, StoreUnavailable
from dynvm.core.v1build import Running
from dynvm.core.v1request import (
    API,
    WAITING,
    NewRequest,
    legacy_view,
    params_of,
    request_of,
    reserved_steps,
)

__all__ = ["WAITING", "NewRequest", "legacy_view", "request_of", "reserved_steps", "submit",
           "start_build", "setup_of", "want_of"]

log = logging.getLogger("dynvm.asyncreq")


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
    dispatches it. Its owner's quota counts what the owner holds and what it has
    waiting in the queue: queueing many requests never adds up to more than the
    quota. Raises BadRequest, Unprocessable, NameInUse, QuotaExceeded, NoCapacity
    or StoreDown, having changed nothing. Returns the request record as it stands.
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
    run = Running(record, req, want_of(cfg, req, spec, names, expires, request_id, hosts,
                                        setup, hostnames))
    try:
        if req.name is not None:  # generated names are unique; chosen ones are claimed
            _claim_names(ctx, run, ttl)
        ctx.store.requests.put(record)
        if req.counted:
            queueing.check_quota(ctx, cfg, req.owner, req.count, spec)
        entry = queueing.entry_of(cfg, record, req, spec, now)
        try:
            # Requests already waiting go first, unless this one may backfill.
            behind = queueing.held_back(ctx, entry, record) if req.queue else None
            if behind is None:
                run.held = obtain.take(ctx, cfg, run.want)
        except NoCapacity as exc:
            if not req.queue or not queueing.may_wait(ctx, cfg, entry, record, exc):
                raise
            behind = queueing.reason_of(exc, sorted(req.labels))
        if behind is not None:
            queueing.enqueue(ctx, cfg, entry, run.held_names, behind, req.ssh_keys)
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
        v1build.start(ctx, run)
    return record


def start_build(ctx: Context, record: RequestRecord, req: NewRequest, want: obtain.Want,
                held: obtain.Held, held_names: list[str]) -> None:
    """Build a request served from the queue (room held, record `running`) in the background."""
    v1build.start(ctx, Running(record, req, want, held, held_names))


def _claim_names(ctx: Context, run: Running, ttl: float) -> None:
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
        vcpus=req.cpus, memory_gib=req.memory_gib,
        quota_owner=req.owner if req.counted else None,
        warm=req.cpus is None and req.memory_gib is None,  # warm VMs have the OS's sizes
        check_ssh=req.check_ssh, ttl=cfg.reservation_ttl_secs,
        setup=setup, hostnames=hostnames or {},
        no_host="" if hosts else why_no_host(cfg, req.os, frozenset(req.labels), False, req.host))


def _abandon(ctx: Context, run: Running, reason: str, *, refused: bool) -> None:
    """A request turned down before any build: `refused` (or failed, on a bug), holding
    nothing and listing no VM: none was reserved for it, none will be built."""
    v1build.free_names(ctx, run)  # before the request reads as finished: nothing left held
    try:
        ctx.store.reservations.drop_request(run.record.id)  # none should be left; be sure
        lifecycle.end_request(ctx.store, run.record.id,
                              RequestState.REFUSED if refused else RequestState.FAILED,
                              {"error": reason, "vms": {}})
    except Exception:
        log.exception("could not close request %s", run.record.id)
