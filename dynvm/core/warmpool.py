"""Warm pools: VMs of an OS kept booted and addressed, handed out in one step.

Ready VMs are leases in state `ready` owned by nobody. A request claims one
with a compare-and-set (so two workers never hand out the same VM), renames
and retags it, and starts its lease; the filler (run by the elected
background worker only) builds replacements with the normal provisioning
steps and recycles ready VMs that are too old or whose guest went away.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from dynvm.config import Config, HostConfig, PoolConfig
from dynvm.core import demand, guestsetup, history, lifecycle, trace
from dynvm.core.capacity import GIB, host_key
from dynvm.core.context import Context
from dynvm.core.lifecycle import WARM_REQUEST_PREFIX, RequestState
from dynvm.core.placement import eligible_hosts, reserve
from dynvm.core.ports import TAG_EXPIRES, TAG_LEASE, TAG_OWNER
from dynvm.core.provisioning import BuildFailed, Built, Job, description, run_jobs, wait_ssh
from dynvm.core.release import release_lease
from dynvm.core.store import (
    LEASE_READY,
    Lease,
    QuotaCheck,
    RequestRecord,
    Reservation,
    StoreError,
    StoreUnavailable,
)

log = logging.getLogger("dynvm.warmpool")

READY_OWNER = ""  # ready VMs belong to nobody
READY_PREFIX = "dynvm-ready-"
HANDOUT_SSH_SECS = 3.0  # a ready guest's sshd is long up: answer now or be replaced
QUOTA_TOKEN_SECS = 60.0  # a warm VM's quota reservation, dropped once claimed; a safety net


@dataclass(frozen=True)
class Claimed:
    """A ready VM claimed for a request: its lease is the request's (`provisioning`), the
    VM itself not renamed yet. `before` is the lease as the pool held it (to give it back)."""

    before: Lease
    name: str


def claim(ctx: Context, hosts: list[HostConfig], os_key: str, names: list[str], *,
          owner: str, request_id: str, expires: float, labels: list[str],
          quota: QuotaCheck | None = None) -> list[Claimed]:
    """Claim up to len(names) ready VMs of `os_key` on the allowed hosts, oldest first.

    Only the store changes (one compare-and-set per VM, so two workers never take the
    same VM); `hand_out` then makes each VM its caller's, `unclaim` gives it back.
    With `quota`, each VM is first counted against the owner's quota in the store's
    atomic reservation step (a reservation naming the VM, so the host's room is not
    counted twice), and claiming stops when the quota is used up.
    """
    allowed = {h.ref: h for h in hosts}
    try:
        ready = [lease for lease in ctx.store.leases.find(state=LEASE_READY, os=os_key)
                 if lease.host_ref in allowed]
    except StoreUnavailable:
        return []
    ready.sort(key=lambda lease: lease.created)
    out: list[Claimed] = []
    for lease in ready:
        if len(out) == len(names):
            break
        token = None
        if quota is not None:
            token = _count_against_quota(ctx, allowed[lease.host_ref], lease, request_id,
                                         quota)
            if token is None:
                break  # the owner's quota is used up
        name = names[len(out)]
        try:
            claimed = lifecycle.take_warm(ctx.store, lease, name=name, owner=owner,
                                          request_id=request_id, expires=expires,
                                          labels=labels)
        finally:
            if token is not None:  # the claimed lease counts from now on
                ctx.store.reservations.settle(token.id, settle_secs=0.0)
        if claimed is not None:
            out.append(Claimed(lease, name))
        # else: another worker took it
    return out


def _count_against_quota(ctx: Context, host: HostConfig, lease: Lease, request_id: str,
                         quota: QuotaCheck) -> Reservation | None:
    """A reservation for the warm VM, taken with the owner's quota check; None: no room."""
    spec = host.os[lease.os]
    now = time.time()  # reservations live by the store's wall time
    token = Reservation(id=uuid.uuid4().hex, host_key=host_key(host.ref, lease.host_uuid),
                        request_id=request_id, os=lease.os, vcpus=spec.vcpus,
                        memory_gib=spec.memory_gib, disk_gib=0.0, created=now,
                        expires=now + QUOTA_TOKEN_SECS, vm_uuid=lease.vm_uuid,
                        owner=quota.owner)
    got = ctx.store.reservations.reserve(token.host_key, [token], lambda _live: 1, quota)
    return got[0] if got else None


def unclaim(ctx: Context, claimed: list[Claimed]) -> None:
    """Claimed VMs the request will not use after all go back to the pool as they were."""
    for c in claimed:
        try:
            lifecycle.return_warm(ctx.store, c.before)
        except Exception:  # its lease stays the request's: reconciliation judges it
            log.exception("could not give ready VM %s back to its pool", c.before.vm_uuid)


def hand_out(ctx: Context, cfg: Config, hosts: list[HostConfig], claimed: list[Claimed], *,
             owner: str, request_id: str, expires: float, labels: list[str],
             check_ssh: bool = False, setup: guestsetup.GuestSetup | None = None,
             hostnames: Mapping[str, str] | None = None) -> tuple[list[Built], list[str]]:
    """Make each claimed VM its caller's: renamed, retagged, its lease started.

    Returns (VMs handed out, names whose VM could not be: recycled, to be built
    instead). With `check_ssh` (checkvms=true) a VM whose SSH port does not answer
    at once is recycled instead of handed out. With a `setup` (the owner's keys,
    a hostname: `obtain` claims warm VMs only for one they can take) each VM gets
    it over SSH before it is handed out; one that cannot be given it is destroyed,
    and the rest are given back to the pool and built cold.
    """
    allowed = {h.ref: h for h in hosts}
    out: list[Built] = []
    lost: list[str] = []
    for i, c in enumerate(claimed):
        lease, name = c.before, c.name
        host = allowed.get(lease.host_ref) or cfg.hosts[lease.host_ref]
        now = ctx.clock()
        current = ctx.store.leases.get(lease.vm_uuid)
        if current is None or current.request_id != request_id:
            lost.append(name)  # released meanwhile (by its new name)
            continue
        if check_ssh:
            try:
                wait_ssh(ctx.guest, lease.ip, cfg.ssh_port, HANDOUT_SSH_SECS, None,
                         cfg.guest_login(lease.os), ctx.clock)
            except BuildFailed as exc:
                _recycle(ctx, current, f"SSH check failed: {exc}")
                lost.append(name)
                continue
        if setup:
            try:
                guestsetup.install(ctx.access, cfg, lease.os, setup,
                                   (hostnames or {}).get(name) or setup.hostname_of(name),
                                   lease.ip, timeout=guestsetup.WARM_INSTALL_SECS,
                                   clock=ctx.clock)
            except guestsetup.SetupFailed as exc:
                # Never handed out without its keys; the others would likely fail alike,
                # so they go back to the pool untouched and every one is built cold.
                log.warning("ready VM %s could not be given its owner's setup; destroying "
                            "it, the rest is built cold: %s", lease.vm_uuid, exc)
                _recycle(ctx, current, f"giving it its owner's keys failed: {exc}")
                rest = claimed[i + 1:]
                unclaim(ctx, rest)
                lost += [name, *(r.name for r in rest)]
                break
        try:
            done = lifecycle.hand_out(
                ctx.store, ctx.pool(host), lease.vm_uuid, name=name,
                description=description(name, host.os[lease.os].template, now),
                tags={TAG_OWNER: owner, TAG_LEASE: request_id, TAG_EXPIRES: str(int(expires))})
        except StoreError:
            raise
        except Exception:
            log.exception("handing out ready VM %s failed; recycling it", lease.vm_uuid)
            _recycle(ctx, current, "hand-out failed")
            lost.append(name)
            continue
        done = done or current
        if setup and setup.fingerprints:  # `dynvm ssh` finds the owner's key by them
            ctx.store.leases.update(lease.vm_uuid, extra={**done.extra,
                                                          "ssh_keys": list(setup.fingerprints)})
        ctx.store.history.update(lease.vm_uuid, history.handed_out_patch(
            name=name, owner=owner, request_id=request_id, expires=expires, labels=labels,
            ready_since=lease.created, at=now, took_secs=ctx.clock() - now))
        out.append(Built(name, lease.ip, lease.vm_uuid, lease.host_ref, done))
    return out, lost


def ready_count(ctx: Context, os_key: str, host_refs: set[int]) -> int:
    return sum(1 for lease in ctx.store.leases.find(state=LEASE_READY, os=os_key)
               if lease.host_ref in host_refs)


def _recycle(ctx: Context, lease: Lease, reason: str) -> None:
    try:
        release_lease(ctx, lease, reason=f"warm pool recycle: {reason}")
    except Exception:
        log.exception("recycling %s failed", lease.vm_uuid)


class Filler:
    """Keeps every [pool <os>] at its size. Run only by the elected background worker."""

    def __init__(self, ctx: Context, max_parallel: int = 8) -> None:
        self.ctx = ctx
        self._exec = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="dynvm-fill")
        self._inflight: dict[str, list[Future]] = {}
        self._batches: dict[str, int] = {}  # warm request id -> builds still running
        self._outcomes: dict[str, tuple[int, list[tuple[str, str]]]] = {}  # built, failed
        self._lock = threading.Lock()
        # ready=auto: (pool as configured, hour it was sized for, size), resized hourly
        self._sized: dict[str, tuple[PoolConfig, float, int]] = {}

    def target(self, pool: PoolConfig) -> int:
        """How many ready VMs the pool keeps now: its `ready`, or (ready=auto) what the
        demand of this hour of the week asks for (`dynvm.core.demand`)."""
        if not pool.auto:
            return pool.ready
        hour = demand.hour_start(self.ctx.clock())
        got = self._sized.get(pool.os)
        if got is not None and got[0] == pool and got[1] == hour:
            return got[2]
        docs = self.ctx.store.history.recent(limit=demand.HISTORY_SCAN)
        size = demand.target(docs, pool.os, self.ctx.clock(), low=pool.min_ready,
                             high=pool.max_ready, ready_owner=READY_OWNER)
        self._sized[pool.os] = (pool, hour, size)
        log.info("warm pool %s: %d ready for this hour, from demand", pool.os, size)
        return size

    def tick(self) -> None:
        cfg = self.ctx.config()
        try:
            for lease in self.ctx.store.leases.find(state=LEASE_READY):
                if lease.os not in cfg.pools:
                    _recycle(self.ctx, lease, "its warm pool was removed from the configuration")
        except StoreUnavailable:
            return
        for pool in cfg.pools.values():
            try:
                self._recycle_stale(cfg, pool)
                self._fill(cfg, pool)
            except StoreUnavailable:
                return
            except Exception:
                log.exception("warm pool %s", pool.os)

    def _hosts(self, cfg: Config, pool: PoolConfig) -> list[HostConfig]:
        return eligible_hosts(cfg, pool.os, pool.labels, ignore_labels=False)

    def _recycle_stale(self, cfg: Config, pool: PoolConfig) -> None:
        now = self.ctx.clock()
        for lease in self.ctx.store.leases.find(state=LEASE_READY, os=pool.os):
            host = cfg.hosts.get(lease.host_ref)
            if host is None:
                _recycle(self.ctx, lease, "host no longer configured")
                continue
            if now - lease.created > pool.ttl_minutes * 60:
                _recycle(self.ctx, lease, "older than its TTL")
                continue
            try:
                vm = self.ctx.view(host).vms.get(lease.vm_uuid)
            except Exception:
                continue  # host unreachable: judge it later
            if vm is None or vm.power_state != "Running" or lease.ip not in vm.ips:
                _recycle(self.ctx, lease, "guest stopped answering")

    def _fill(self, cfg: Config, pool: PoolConfig) -> None:
        with self._lock:
            running = [f for f in self._inflight.get(pool.os, []) if not f.done()]
            self._inflight[pool.os] = running
        hosts = self._hosts(cfg, pool)
        have = ready_count(self.ctx, pool.os, {h.ref for h in hosts}) + len(running)
        want = self.target(pool) - have
        if want <= 0 or not hosts:
            return
        spec = hosts[0].os[pool.os]
        request_id = f"{WARM_REQUEST_PREFIX}{uuid.uuid4().hex}"
        slots, _avail, _down = reserve(
            self.ctx.store, cfg, hosts, spec, want, request_id, self.ctx.view,
            vcpus=spec.vcpus, memory_gib=spec.memory_gib,
            ttl=cfg.reservation_ttl_secs)
        if not slots:
            return
        self.ctx.store.requests.put(RequestRecord(
            id=request_id, name=f"warm pool {pool.os}", os=pool.os, count=len(slots),
            instance=self.ctx.instance, started=self.ctx.clock()))
        expires = self.ctx.clock() + pool.ttl_minutes * 60 + 3600
        jobs = [Job(name=f"{READY_PREFIX}{pool.os}-{uuid.uuid4().hex[:8]}", owner=READY_OWNER,
                    request_id=request_id, slot=slot, spec=slot.host.os[pool.os],
                    memory_bytes=spec.memory_gib * GIB, expires=expires,
                    labels=sorted(pool.labels), network_id=None, check_vms=False,
                    final_state=LEASE_READY)
                for slot in slots]
        with self._lock:
            self._batches[request_id] = len(jobs)
            self._inflight.setdefault(pool.os, []).extend(
                self._exec.submit(self._build, request_id, job) for job in jobs)

    def _build(self, request_id: str, job: Job) -> None:
        with trace.bound(request_id):  # its log lines carry the refill's request id
            built, failed = run_jobs(self.ctx, [job])
        for name, reason in failed:
            log.warning("warm pool %s: %s: %s", job.spec.key, name, reason)
        for b in built:
            log.info("warm pool %s: %s ready", job.spec.key, b.name)
        with self._lock:
            ok, failures = self._outcomes.get(request_id, (0, []))
            self._outcomes[request_id] = (ok + len(built), failures + failed)
            self._batches[request_id] -= 1
            last = self._batches[request_id] == 0
            if last:
                del self._batches[request_id]
                ok, failures = self._outcomes.pop(request_id)
        if last:
            _close_refill(self.ctx, request_id, ok, failures)

    def inflight(self) -> int:
        with self._lock:
            return sum(1 for fs in self._inflight.values() for f in fs if not f.done())

    def close(self) -> None:
        self._exec.shutdown(wait=False, cancel_futures=True)


def _close_refill(ctx: Context, request_id: str, built: int,
                  failed: list[tuple[str, str]]) -> None:
    """A refill ends as what happened to its VMs: done, partial, or failed with each reason."""
    state = (RequestState.DONE if not failed else
             RequestState.PARTIAL if built else RequestState.FAILED)
    detail: dict = {"failed": failed}
    if failed:
        detail["reason"] = (f"{len(failed)} of {built + len(failed)} warm VM(s) could not be "
                            f"built; the pool is refilled again on the next pass")
    try:
        lifecycle.end_request(ctx.store, request_id, state, detail)
    except Exception:
        log.exception("closing warm request %s", request_id)
