"""A whole getservers request: validate, hand out warm VMs, reserve, build in parallel.

The request is recorded in the store before any XenAPI call, so a crash
mid-way can be reconciled; all-or-none failures release everything.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import uuid

from dynvm.config import Config, HostConfig, OsSpec
from dynvm.core import guestsetup, lifecycle, obtain, progress, quota, staticpool, trace
from dynvm.core.answers import ServerResult, ServersRequest, ServersResult
from dynvm.core.capacity import GIB
from dynvm.core.context import Context
from dynvm.core.errors import (
    AllOrNoneFailed,
    BadRequest,
    NameInUse,
    NoCapacity,
    ProvisionFailed,
    ServiceStopping,
    StoreDown,
)
from dynvm.core.lifecycle import CoreEvent, RequestState
from dynvm.core.names import check_free
from dynvm.core.networks import with_network
from dynvm.core.placement import Slot, eligible_hosts, reserve, why_no_host
from dynvm.core.provisioning import STORE_FAILED, Built, Job, run_jobs
from dynvm.core.release import names_for, release_lease
from dynvm.core.store import (
    QuotaCheck,
    RequestRecord,
    StoreUnavailable,
)

log = logging.getLogger("dynvm.servers")

RETRY_ROUNDS = 3  # a failed VM is tried on at most this many more member hosts
NO_ROOM_INSTEAD = ("its ready VM could not be handed out, and no room was left to build one "
                   "instead")
NAME_LOCK = "name:"
# What turns a request down before any VM is built for it: it ends `refused`, not `failed`.
Refused = (NoCapacity, quota.QuotaExceeded, BadRequest)


def effective_spec(cfg: Config, req: ServersRequest) -> OsSpec:
    """The OS's sizes with the request's overrides (the first host serving it sets them).

    Call after `check_request`: the OS is known to be served.
    """
    spec = cfg.os_spec(req.os)
    if spec is None:  # check_request refuses it first
        raise BadRequest(f"Error: unknown os '{req.os}'")
    return with_overrides(spec, req)


def with_overrides(spec: OsSpec, req: ServersRequest) -> OsSpec:
    """`spec` with the request's `cpus` and `mem` (rounded up to whole GiB) where given."""
    if req.cpus is not None:
        spec = dataclasses.replace(spec, vcpus=req.cpus)
    if req.mem_bytes is not None:
        spec = dataclasses.replace(spec, memory_gib=max(math.ceil(req.mem_bytes / GIB), 1))
    return spec


def served_os(cfg: Config) -> frozenset[str]:
    return cfg.served_os


def check_request(cfg: Config, req: ServersRequest) -> None:
    if req.os not in served_os(cfg):
        raise BadRequest(f"Error: unknown os '{req.os}'; served: {', '.join(sorted(served_os(cfg)))}")
    if req.xhostref is not None and req.xhostref not in cfg.hosts:
        raise BadRequest(f"Error: xhostref={req.xhostref} is not a configured host; "
                         f"known: {', '.join(str(r) for r in sorted(cfg.hosts))}")
    if req.xhostref is not None and req.os not in cfg.hosts[req.xhostref].os:
        raise BadRequest(f"Error: xenhost{req.xhostref} has no template for os '{req.os}'")


def get_servers(ctx: Context, req: ServersRequest) -> ServersResult:
    cfg = ctx.config()
    check_request(cfg, req)
    check_static_pools(ctx, req)
    if req.network_id:  # before any name lock, request record or XenAPI call
        with_network(eligible_hosts(cfg, req.os, req.labels, req.ignore_labels, req.xhostref),
                     req.network_id, ctx.view)
    spec = effective_spec(cfg, req)
    names = names_for(req.name, req.count)
    now = ctx.clock()
    expires = now + cfg.lease_minutes(req.expires_in_minutes) * 60
    request_id = _request_id(ctx)
    ttl = cfg.reservation_ttl_secs
    held: list[str] = []
    try:
        # Names are claimed in the store, so two requests racing for one name
        # cannot both build it; a name stays taken by its lease afterwards.
        for n in names:
            if not ctx.store.locks.acquire(NAME_LOCK + n, request_id, ttl):
                raise NameInUse(f"Error: VM {n} is being created by another request")
            held.append(n)
        check_free(ctx, names, prefix="Error: ")
        ctx.store.requests.put(RequestRecord(id=request_id, name=req.name, os=req.os,
                                             count=req.count, instance=ctx.instance, started=now,
                                             detail={"owner": req.owner or req.name}))
    except StoreUnavailable as exc:
        _free_names(ctx, held, request_id)
        raise StoreDown(f"Error: the state store is unreachable, so capacity cannot be "
                        f"reserved safely; try again shortly ({exc})") from exc
    except NameInUse:
        _free_names(ctx, held, request_id)
        raise
    log.info("getservers %s: %d %s VM(s) asked", req.name, req.count, req.os)
    try:
        result = _serve(ctx, cfg, req, spec, names, expires, request_id, ttl)
    except Refused as exc:  # turned down before any VM was built for it
        _finish(ctx, request_id, RequestState.REFUSED, {"error": exc.message})
        raise
    except Exception as exc:
        _finish(ctx, request_id, RequestState.FAILED, {"error": str(exc)})
        raise
    finally:
        _free_names(ctx, held, request_id)
    _finish(ctx, request_id, RequestState.PARTIAL if result.failed else RequestState.DONE,
            {"failed": result.failed})
    staticpool.publish(ctx, result.servers, req.static_pools)
    return result


def _request_id(ctx: Context) -> str:
    """The HTTP request's id when one is bound (so one id names the request in the
    response, the store, the history and the logs), else a fresh one; never one a
    request record already has (a client may resend its X-Request-Id)."""
    rid = trace.current()
    try:
        if rid and ctx.store.requests.get(rid) is None:
            return rid
    except StoreUnavailable:
        pass  # get_servers reports the outage at its first write
    if rid:
        log.info("request id %s already names a request record; using a fresh one", rid)
    return uuid.uuid4().hex


def check_static_pools(ctx: Context, req: ServersRequest) -> None:
    """pools= needs somewhere to put the static-pool documents (refused before any build)."""
    if req.static_pools and ctx.static_pools is None:
        raise BadRequest("Error: pools= needs the static.* keys (static.server, static.bucket, "
                         "static.username, static.userpassword) in [couchbase]")


def _free_names(ctx: Context, names: list[str], request_id: str) -> None:
    for n in names:
        try:
            ctx.store.locks.release(NAME_LOCK + n, request_id)
        except Exception:  # it lapses on its own
            log.warning("could not free the name %s", n)


def _finish(ctx: Context, request_id: str, state: RequestState, detail: dict) -> None:
    try:
        lifecycle.end_request(ctx.store, request_id, state, detail)
    except Exception:
        log.exception("could not close request %s", request_id)


def want_of(cfg: Config, req: ServersRequest, spec: OsSpec, names: list[str], expires: float,
            request_id: str, hosts: list[HostConfig],
            setup: guestsetup.GuestSetup | None = None) -> obtain.Want:
    """What a legacy request needs, as every way of asking describes it."""
    return obtain.Want(
        os=req.os, names=names, owner=req.owner or req.name, request_id=request_id,
        expires=expires, labels=sorted(req.labels), hosts=hosts, spec=spec,
        # None: each host's own <os>.* sizes, as /getavailablecount counts them
        vcpus=req.cpus, memory_gib=obtain.whole_gib(req.mem_bytes),
        quota_owner=req.owner,
        # Warm VMs have the OS's sizes and network: a request asking its own builds.
        warm=req.cpus is None and req.mem_bytes is None and not req.network_id,
        check_ssh=req.check_vms, ttl=cfg.reservation_ttl_secs, setup=setup,
        no_host="" if hosts else why_no_host(cfg, req.os, req.labels, req.ignore_labels,
                                             req.xhostref))


def _serve(ctx: Context, cfg: Config, req: ServersRequest, spec: OsSpec, names: list[str],
           expires: float, request_id: str, ttl: float) -> ServersResult:
    hosts = eligible_hosts(cfg, req.os, req.labels, req.ignore_labels, req.xhostref)
    if req.network_id:
        hosts = with_network(hosts, req.network_id, ctx.view)
    try:  # a token's owner gets its registered keys on every VM
        setup = guestsetup.for_owner(ctx.store, cfg, req.owner or "", req.os)
    except StoreUnavailable as exc:
        raise StoreDown(f"Error: the state store is unreachable, so the owner's keys cannot "
                        f"be read; try again shortly ({exc})") from exc
    want = want_of(cfg, req, spec, names, expires, request_id, hosts, setup)
    try:
        held = obtain.take(ctx, cfg, want)
        warm, instead = obtain.hand_out(ctx, cfg, want, held)
    except StoreUnavailable as exc:
        raise StoreDown(f"Error: the state store is unreachable, so capacity cannot be "
                        f"reserved safely; try again shortly ({exc})") from exc
    for b in warm:
        progress.note(ctx, request_id, b.name, progress.Step.READY, ip=b.ip, host_ref=b.host_ref)
    jobs = [job_for(req, request_id, n, s, expires, setup)
            for n, s in [*zip(held.cold_names(want), held.slots, strict=True),
                         *((n, s) for n, s in instead if s is not None)]]
    no_room = [(n, NO_ROOM_INSTEAD) for n, s in instead if s is None]
    check = obtain.quota_check(cfg, want)
    built, failed = run_jobs(ctx, jobs)
    if failed:
        more, failed = retry_elsewhere(ctx, cfg, hosts, spec, jobs, failed, request_id, ttl,
                                       quota=check)
        built += more
    for n, why in no_room:
        progress.note(ctx, request_id, n, progress.Step.FAILED, reason=why)
    failed += no_room
    for _ in failed:  # a VM the request asked for and did not get
        ctx.event(CoreEvent.VM_FAILED, os=req.os)
    built = warm + built
    if failed and (req.all_or_none or not built):
        for b in built:
            try:  # a failed destroy stays `releasing`; the background worker retries it
                release_lease(ctx, b.lease, reason="rollback: all-or-none request failed",
                              keep_trying=True)
            except Exception:
                log.exception("rollback of %s failed; left for the background worker", b.name)
        reasons = "; ".join(r for _, r in failed)
        if ctx.stopping.is_set():
            raise ServiceStopping("Error: dynvm is stopping; the request was cancelled and "
                                  "rolled back, retry it")
        store_failed = next((r for _, r in failed if r.startswith(STORE_FAILED)), None)
        if store_failed:
            raise StoreDown(f"Error: {store_failed}; every VM of the request was destroyed")
        if req.all_or_none:
            raise AllOrNoneFailed(f"all vms couldn't be created successfully: {reasons}")
        raise ProvisionFailed(f"Error: no VM could be created: {reasons}")
    for _ in built:  # kept: each VM is now its requester's, built or warm
        ctx.event(CoreEvent.HANDED_OUT, os=req.os)
    order = {n: i for i, n in enumerate(names)}
    servers = sorted((ServerResult(b.name, b.ip, b.host_ref, b.vm_uuid, b in warm)
                      for b in built), key=lambda s: order[s.name])
    return ServersResult(servers=servers, failed=failed)


def job_for(req: ServersRequest, request_id: str, name: str, slot: Slot, expires: float,
            setup: guestsetup.GuestSetup | None = None) -> Job:
    return Job(name=name, owner=req.owner or req.name, request_id=request_id, slot=slot,
               spec=with_overrides(slot.host.os[req.os], req),  # that host's template and sizes
               memory_bytes=req.mem_bytes or int(slot.reservation.memory_gib * GIB),
               expires=expires, labels=sorted(req.labels),
               network_id=req.network_id, check_vms=req.check_vms,
               size_overridden=(req.cpus is not None, req.mem_bytes is not None),
               setup=setup)


def retry_elsewhere(ctx: Context, cfg: Config, hosts: list[HostConfig], spec: OsSpec,
                    jobs: list[Job], failed: list[tuple[str, str]], request_id: str,
                    ttl: float, quota: QuotaCheck | None = None
                    ) -> tuple[list[Built], list[tuple[str, str]]]:
    """Build a VM whose clone failed again on the next member host with room, as the seed did.

    Only a failure of that member host moves: a failed clone (its template or
    SR is at fault), or a start refused because the host was disabled (taken
    into maintenance) or filled after placement chose it;
    a VM is never tried twice on one member host, and fails for good when no
    other host has room. Returns (built now, failed for good).
    """
    by_name = {j.name: j for j in jobs}
    tried = {j.name: {j.slot.reservation.host_key} for j in jobs}
    built: list[Built] = []
    for _round in range(RETRY_ROUNDS):
        retry: list[Job] = []
        given_up: list[tuple[str, str]] = []
        for name, reason in failed:
            if not by_name[name].another_host:
                given_up.append((name, reason))
                continue
            job = by_name[name]  # sizes: the request's if asked, else the new host's own
            cpus = job.spec.vcpus if job.size_overridden[0] else None
            mem = job.spec.memory_gib if job.size_overridden[1] else None
            try:
                slots, _, _ = reserve(ctx.store, cfg, hosts, spec, 1, request_id, ctx.view,
                                      vcpus=cpus, memory_gib=mem, ttl=ttl,
                                      exclude=frozenset(tried[name]), quota=quota)
            except StoreUnavailable:
                slots = []
            if not slots:
                given_up.append((name, reason))
                continue
            slot = slots[0]
            tried[name].add(slot.reservation.host_key)
            log.warning("%s failed (%s); trying again on xenhost%d member %s", name, reason,
                        slot.host.ref, slot.member_name)
            host_spec = slot.host.os.get(spec.key, job.spec)  # that host's template
            host_spec = dataclasses.replace(
                host_spec, vcpus=cpus if cpus is not None else host_spec.vcpus,
                memory_gib=mem if mem is not None else host_spec.memory_gib)
            by_name[name] = dataclasses.replace(job, slot=slot, spec=host_spec,
                                                another_host=False)
            retry.append(by_name[name])
        if not retry:
            return built, given_up
        more, failed = run_jobs(ctx, retry)
        built += more
        failed = given_up + failed
        if not failed:
            break
    return built, failed

