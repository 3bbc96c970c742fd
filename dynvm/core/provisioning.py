"""Building one VM safely: the seed's steps, with retries and full cleanup.

A VM is recorded in the store (lease in `provisioning` state) as soon as it
exists, so a crash at any later point can be reconciled; any failure destroys
what was built and gives the reservation back.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypedDict

from dynvm.config import GuestLogin, OsSpec
from dynvm.core import guestsetup, history, lifecycle, progress
from dynvm.core.capacity import GIB
from dynvm.core.clock import SYSTEM, Clock
from dynvm.core.context import Context
from dynvm.core.lifecycle import HISTORY_OF_LEASE, CoreEvent, LeaseState, TagState
from dynvm.core.placement import SETTLE_SECS, Slot
from dynvm.core.ports import (
    TAG_BUILDER,
    TAG_CREATED,
    TAG_DEPLOYMENT,
    TAG_EXPIRES,
    TAG_LEASE,
    TAG_OS,
    TAG_OWNER,
    TAG_RESERVATION,
    TAG_STATE,
    GuestProbe,
    HostCannotTake,
    LinkLocalOnly,
    LoginRefused,
    VmBuild,
    VmView,
    XenError,
)
from dynvm.core.store import (
    LEASE_ACTIVE,
    LEASE_PROVISIONING,
    LEASE_RELEASING,
    Lease,
    StoreError,
)

log = logging.getLogger("dynvm.provisioning")

LINK_LOCAL_ATTEMPTS = 3
SSH_CHECK_SECS = 60.0


class BuildFailed(Exception):
    """One VM could not be built; everything it had was cleaned up."""


# Begins the reason of a build the store failed: the request answers 503, not 499/502.
STORE_FAILED = "the state store failed during the build"
RELEASED_DURING_BUILD = ("released while it was being built: the release destroyed it with "
                         "its disks")


@dataclass
class Job:
    """One VM to build for a request (or for a warm pool)."""

    name: str
    owner: str
    request_id: str
    slot: Slot
    spec: OsSpec  # sizes already include the request's overrides
    memory_bytes: int
    expires: float
    labels: list[str]
    network_id: str | None
    check_vms: bool
    final_state: str = LEASE_ACTIVE  # LEASE_READY for warm-pool VMs
    size_overridden: tuple[bool, bool] = (False, False)  # (cpus, memory) asked explicitly
    another_host: bool = False  # the last attempt failed for its member host's sake
    extra: dict = field(default_factory=dict)  # added to its history document
    # The owner's keys, hostname and cloud-config (never in history, never logged).
    setup: guestsetup.GuestSetup | None = None
    hostname: str | None = None  # what it is called inside (None: from its name)

    def guest_hostname(self) -> str:
        return self.hostname or guestsetup.GuestSetup().hostname_of(self.name)

    def lease_extra(self) -> dict:
        """What its lease notes of the setup: the keys' fingerprints (`dynvm ssh`)."""
        return {"ssh_keys": list(self.setup.fingerprints)} if self.setup and \
            self.setup.fingerprints else {}


@dataclass(frozen=True)
class Built:
    name: str
    ip: str
    vm_uuid: str
    host_ref: int
    lease: Lease


class BuiltSizes(TypedDict):
    vcpus: int
    memory_bytes: int
    disk_bytes: int


def built_sizes(job: Job) -> BuiltSizes:
    """The VM gets exactly what its reservation counted against the host (vCPUs,
    memory, disk), never the template's own sizes: a template of 8 vCPUs on a
    host counted for 1 would overcommit it. Memory asked in bytes is given as
    asked (the reservation counted it rounded up to whole GiB)."""
    res = job.slot.reservation
    memory = job.memory_bytes if job.size_overridden[1] else int(res.memory_gib * GIB)
    return {"vcpus": max(int(res.vcpus), 1), "memory_bytes": memory,
            "disk_bytes": int(res.disk_gib * GIB)}


def description(name: str, template: str, when: float) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))
    return f"{name} from {template} on {stamp}"


def wait_ssh(probe: GuestProbe, ip: str, port: int, timeout: float,
             cancel: threading.Event | None, login: GuestLogin | None = None,
             clock: Clock = SYSTEM) -> None:
    """checkvms: log in over SSH with `login` (the seed's check), else accept a TCP connection.

    `probe` makes each attempt; this waits for the guest's sshd between them.
    """
    deadline = clock.monotonic() + timeout
    delay = 0.2
    last: Exception | None = None
    while clock.monotonic() < deadline:
        if cancel is not None and cancel.is_set():
            raise BuildFailed("cancelled while waiting for its SSH")
        attempt = max(min(5.0, deadline - clock.monotonic()), 0.5)
        try:
            probe.attempt(ip, port, login, attempt if login is not None else min(3.0, timeout))
            return
        except LoginRefused as exc:
            raise BuildFailed(str(exc)) from None
        except OSError as exc:  # not up yet (an SSH session that fails is an OSError too)
            last = exc
        clock.sleep(delay)  # waiting for the guest's sshd, not hiding a race
        delay = min(delay * 2, 2.0)
    what = f"SSH login to {ip}:{port}" if login is not None else f"SSH port {port} of {ip}"
    raise BuildFailed(f"{what} did not answer: {last}")


def build_one(ctx: Context, job: Job, cancel: threading.Event | None = None) -> Built:
    """Build, wait for a usable address, check, record. Raises BuildFailed, cleaned up."""
    cfg = ctx.config()
    host = job.slot.host
    pool = ctx.pool(host)
    spec = job.spec
    started = ctx.clock()
    progress.note(ctx, job.request_id, job.name, progress.Step.RESERVED, host_ref=host.ref,
                  os=spec.key)
    tags = {
        TAG_OWNER: job.owner,
        TAG_LEASE: job.request_id,
        TAG_CREATED: str(int(started)),
        TAG_EXPIRES: str(int(job.expires)),
        TAG_OS: spec.key,
        TAG_STATE: TagState.PROVISIONING.value,
        TAG_RESERVATION: job.slot.reservation.id,
        TAG_DEPLOYMENT: ctx.deployment(),
        TAG_BUILDER: ctx.instance,
    }
    build = VmBuild(
        name=job.name,
        description=description(job.name, spec.template, started),
        template=spec.template,
        host_uuid=job.slot.member_uuid,
        storage_name=host.storage_name,
        network_device=(job.network_id or host.network_id  # the seed's order
                        or host.template_networks.get(spec.key)),
        tags=tags,
        on_step=lambda step: progress.note(ctx, job.request_id, job.name, step),
        **built_sizes(job),
        first_boot=guestsetup.first_boot(cfg, spec, job.setup, job.guest_hostname()),
    )
    setup = job.setup  # given over SSH once it runs (else on its config drive, or nothing)
    by_ssh = setup is not None and bool(setup) and \
        guestsetup.way(cfg, spec, setup) == guestsetup.SSH
    reason = ""
    with ctx.host_gate(job.slot.reservation.host_key):
        for attempt in range(1, LINK_LOCAL_ATTEMPTS + 1):
            vm: VmView | None = None
            leased = False  # this attempt's lease is in the store: a release can claim it
            try:
                vm = pool.build(build, cancel)
                # From now on the view may show the VM running: tie the reservation
                # to it so capacity is not counted twice meanwhile.
                res = job.slot.reservation
                ctx.store.reservations.settle(res.id, vm_uuid=vm.uuid,
                                              settle_secs=max(res.expires - ctx.clock(), 1.0))
                lease = Lease(vm_uuid=vm.uuid, name=job.name, owner=job.owner, host_ref=host.ref,
                              host_uuid=job.slot.member_uuid, vm_ref=vm.ref, os=spec.key,
                              request_id=job.request_id, created=started, expires=job.expires,
                              state=LEASE_PROVISIONING, labels=job.labels,
                              extra=job.lease_extra())
                ctx.store.leases.put(lease)
                leased = True
                progress.note(ctx, job.request_id, job.name, progress.Step.WAITING_IP)
                ip = pool.wait_ready(vm.uuid, windows=spec.is_windows,
                                     timeout=cfg.network_timeout_secs, cancel=cancel)
                if job.check_vms:
                    progress.note(ctx, job.request_id, job.name, progress.Step.CHECKING_SSH,
                                  ip=ip)
                    wait_ssh(ctx.guest, ip, cfg.ssh_port, SSH_CHECK_SECS, cancel,
                             cfg.guest_login(spec.key), ctx.clock)
                if by_ssh and setup is not None:
                    progress.note(ctx, job.request_id, job.name, progress.Step.CHECKING_SSH,
                                  ip=ip)
                    guestsetup.install(ctx.access, cfg, spec.key, setup,
                                       job.guest_hostname(), ip,
                                       timeout=guestsetup.COLD_INSTALL_SECS, clock=ctx.clock,
                                       cancel=cancel)
                built = _complete(ctx, job, lease, ip, started, attempt)
                log.info("%s ready at %s on xenhost%d (%s) after %.1fs", job.name, ip,
                         host.ref, vm.uuid, ctx.clock() - started)
                return built
            except LinkLocalOnly as exc:
                reason = f"guest kept a link-local address ({exc.params[0]}), attempt {attempt}"
                log.warning("%s: %s", job.name, reason)
                _discard(ctx, job, vm, started, reason)
            except (XenError, BuildFailed, guestsetup.SetupFailed) as exc:
                if leased and vm is not None and _released_meanwhile(ctx, vm.uuid):
                    # Its release destroyed it and closed its history: that is what happened,
                    # not the halted VM the build then saw.
                    log.info("%s was released while being built", job.name)
                    raise BuildFailed(f"{job.name}: {RELEASED_DURING_BUILD}") from exc
                job.another_host = isinstance(exc, HostCannotTake)
                reason = str(exc)
                _discard(ctx, job, vm, started, reason)
                raise BuildFailed(f"{job.name}: {reason}") from exc
            except StoreError as exc:
                reason = f"{STORE_FAILED}: {' '.join(str(exc).split())[:200]}"
                log.warning("%s: %s", job.name, reason)
                _discard(ctx, job, vm, started, reason)
                raise BuildFailed(reason) from exc
            except Exception as exc:
                reason = f"internal error: {exc!r}"
                log.exception("building %s", job.name)
                _discard(ctx, job, vm, started, reason)
                raise BuildFailed(f"{job.name}: {reason}") from exc
    raise BuildFailed(f"{job.name}: guest kept a link-local 169.254 address after "
                      f"{LINK_LOCAL_ATTEMPTS} attempts (no free DHCP lease)")


def _complete(ctx: Context, job: Job, lease: Lease, ip: str, started: float,
              attempts: int) -> Built:
    now = ctx.clock()
    host = job.slot.host
    spec = job.spec
    view = ctx.view(host)
    vm = view.vms.get(lease.vm_uuid)
    try:
        disks = ctx.pool(host).disk_sizes(lease.vm_uuid)
    except Exception:  # history then records the configured size
        log.warning("could not read the disk sizes of %s", job.name)
        disks = []
    doc = history.document(  # sizes as the VM really has them (the template's unless asked)
        _facts(job, lease.vm_uuid, started, now, ip=ip,
               vcpus=vm.vcpus_max if vm else spec.vcpus,
               memory_bytes=vm.memory_static_max if vm else job.memory_bytes,
               os_version=vm.os_name if vm else "",
               disk_bytes=tuple(disks) or (spec.disk_gib * GIB,)),
        HISTORY_OF_LEASE[LeaseState(job.final_state)],
        attempts=attempts, build_finished=round(now, 3), **job.extra)
    ctx.store.history.put(lease.vm_uuid, doc)
    done = lifecycle.finish_build(ctx.store, ctx.pool(host), lease.vm_uuid, job.final_state,
                                  ip=ip) or lease
    ctx.store.reservations.settle(job.slot.reservation.id, vm_uuid=lease.vm_uuid,
                                  settle_secs=SETTLE_SECS)
    progress.note(ctx, job.request_id, job.name, progress.Step.READY, ip=ip)
    ctx.event(CoreEvent.BUILT, os=spec.key, seconds=ctx.clock() - started)
    return Built(job.name, ip, lease.vm_uuid, host.ref, done)


def _facts(job: Job, vm_uuid: str, started: float, now: float,
           **measured: Any) -> history.VmFacts:
    """What a build knows of its VM for its history document (`measured`: what was read
    of the VM itself)."""
    host, spec = job.slot.host, job.spec
    return history.VmFacts(vm_uuid=vm_uuid, name=job.name, owner=job.owner, os=spec.key,
                           request_id=job.request_id, host_ref=host.ref, xen_host=host.name,
                           member=job.slot.member_name, template=spec.template,
                           labels=tuple(job.labels), created=started,
                           create_secs=now - started, expires=job.expires, **measured)


def _released_meanwhile(ctx: Context, vm_uuid: str) -> bool:
    """Whether a release claimed this VM's lease while it was being built."""
    try:
        lease = ctx.store.leases.get(vm_uuid)
    except StoreError:
        return False  # unknown: treated as the build's own failure
    return lease is None or lease.state == LEASE_RELEASING


def _discard(ctx: Context, job: Job, vm: VmView | None, started: float, reason: str) -> None:
    """Destroy a failed VM with its disks and record why; never raises."""
    if vm is None:
        return
    try:
        ctx.pool(job.slot.host).destroy(vm.uuid)
    except Exception:  # keep the lease: reconciliation will find the VM by its tags
        log.exception("could not destroy failed VM %s (%s)", job.name, vm.uuid)
        return
    try:
        now = ctx.clock()
        ctx.store.history.put(vm.uuid, history.failed(
            _facts(job, vm.uuid, started, now, vcpus=job.spec.vcpus,
                   memory_bytes=job.memory_bytes, disk_bytes=(job.spec.disk_gib * GIB,)),
            reason, now))
        ctx.store.leases.delete(vm.uuid)
    except Exception:
        log.exception("could not record the failure of %s", job.name)


def release_slot(ctx: Context, slot: Slot) -> None:
    """Give a reservation back at once (the VM never came up)."""
    try:
        ctx.store.reservations.settle(slot.reservation.id, settle_secs=0.0)
    except Exception:
        log.exception("could not give back reservation %s", slot.reservation.id)


def run_jobs(ctx: Context, jobs: list[Job]) -> tuple[list[Built], list[tuple[str, str]]]:
    """Build every job in parallel (each host throttles itself); never raises."""
    if not jobs:
        return [], []
    cancel = ctx.stopping  # a stopping process cancels its builds (they roll back)
    built: list[Built] = []
    failed: list[tuple[str, str]] = []
    # The caller only waits from here on: a request thread lends its place meanwhile.
    with ctx.waiting(), ThreadPoolExecutor(max_workers=min(len(jobs), 64),
                                           thread_name_prefix="dynvm-build") as pool:
        # Each build runs in a copy of the caller's context, so its log lines carry
        # the request id (dynvm.core.trace).
        futures = {pool.submit(contextvars.copy_context().run, build_one, ctx, job, cancel): job
                   for job in jobs}
        for fut, job in futures.items():
            try:
                built.append(fut.result())
            except BuildFailed as exc:
                failed.append((job.name, str(exc)))
                release_slot(ctx, job.slot)
            except StoreError as exc:  # the store failed before the build could start
                log.warning("building %s: %s", job.name, exc)
                failed.append((job.name, f"{STORE_FAILED}: {' '.join(str(exc).split())[:200]}"))
                release_slot(ctx, job.slot)
            except Exception as exc:  # build_one should not leak others; be safe
                log.exception("building %s", job.name)
                failed.append((job.name, repr(exc)))
                release_slot(ctx, job.slot)
            else:
                continue
            ctx.room_freed.set()  # its room is free again
            progress.note(ctx, job.request_id, job.name, progress.Step.FAILED,
                          reason=failed[-1][1])
    return built, failed
