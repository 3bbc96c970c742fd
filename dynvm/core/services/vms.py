"""VMs as their owners see them: listing, releasing and extending with ownership checks.

A VM belongs to the lease's owner: the token owner whose request built it.
Only that owner or an admin may see (through v1), release, extend, snapshot or revert it
(`dynvm.core.callers` holds the rule; `release.touched` which VM a name means).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from dynvm.config import HostConfig
from dynvm.config.model import is_windows
from dynvm.core import history, staticpool
from dynvm.core.answers import ServerResult
from dynvm.core.callers import Caller
from dynvm.core.errors import BadRequest, Conflict, NotFound, ProvisionFailed, StoreDown
from dynvm.core.ports import (
    TAG_EXPIRES,
    HostUnreachable,
    LinkLocalOnly,
    VmSnapshot,
    WaitTimeout,
    XenError,
    XenPool,
)
from dynvm.core.release import Target, release_lease, touched
from dynvm.core.services.base import Subject
from dynvm.core.store import LEASE_ACTIVE, LEASE_READY, Lease, StoreUnavailable

log = logging.getLogger("dynvm.vms")

UNREACHABLE = "the state store is unreachable"
SNAPSHOT_LOCK = "snapshots:"  # + VM uuid: one snapshot or revert of a VM at a time
SNAPSHOT_LOCK_SLACK_SECS = 600.0  # a snapshot or revert itself, beside the address wait


@dataclass(frozen=True)
class SshLogin:
    """How to log in to a VM (`dynvm ssh`): the template's user, the port, and the
    fingerprints of the owner's keys it was given."""

    user: str | None
    port: int
    keys: list[str]


class Vms(Subject):
    """`/api/v1/vms`: a caller's VMs (every VM for an admin), one by name, released, extended."""

    def listing(self, caller: Caller, *, owner: str | None = None, os: str | None = None,
                host: int | None = None, state: str | None = None) -> list[Lease]:
        """Handed-out VMs the caller may see, filtered; warm-pool VMs are never listed."""
        self.rt.touch()
        try:
            leases = self.ctx.store.leases.find(os=os, state=state)
        except StoreUnavailable as exc:
            raise StoreDown(f"{UNREACHABLE} ({exc})") from exc
        out = [lease for lease in leases
               if lease.state != LEASE_READY and caller.may(lease)
               and (owner is None or lease.owner == owner)
               and (host is None or lease.host_ref == host)]
        return sorted(out, key=lambda lease: (lease.name, lease.vm_uuid))

    def find(self, caller: Caller, name: str) -> Lease:
        """The VM named `name` the caller may act on; NotFound otherwise (others' VMs stay
        hidden)."""
        self.rt.touch()
        try:
            leases = touched(self.ctx, Target.named(name))
        except StoreUnavailable as exc:
            raise StoreDown(f"{UNREACHABLE} ({exc})") from exc
        for lease in leases:
            if caller.may(lease):
                return lease
        raise NotFound(f"no VM named {name}")

    def ssh_login(self, lease: Lease) -> SshLogin:
        cfg = self.rt.config()
        login = cfg.guest_login(lease.os)
        return SshLogin(login.username if login else None, cfg.ssh_port,
                        [str(k) for k in lease.extra.get("ssh_keys") or []])

    def release(self, caller: Caller, name: str) -> Lease:
        """Destroy the caller's VM `name` with its disks; its lease as it was."""
        lease = self.find(caller, name)
        try:
            if not release_lease(self.ctx, lease, reason=f"released by {caller.owner}"):
                raise NotFound(f"VM {name} is already being released")
        except StoreUnavailable as exc:
            raise StoreDown(f"{UNREACHABLE} ({exc})") from exc
        return lease

    def extend(self, caller: Caller, name: str, minutes: int) -> Lease:
        """Move the expiry to now + minutes, at most the configured maximum lease."""
        cfg = self.rt.touch()
        if minutes > cfg.expiry_minutes_max:
            raise BadRequest(f"minutes {minutes} is more than the maximum lease "
                             f"({cfg.expiry_minutes_max} minutes)")
        lease = self.find(caller, name)
        ctx = self.ctx
        expires = ctx.clock() + minutes * 60
        changed = ctx.store.leases.update(lease.vm_uuid, expires=expires)
        if changed is None:
            raise NotFound(f"no VM named {name}")
        ctx.store.history.update(lease.vm_uuid, history.expiry_patch(expires))
        host = cfg.hosts.get(lease.host_ref)
        if host is not None:
            try:
                ctx.pool(host).update(lease.vm_uuid, tags={TAG_EXPIRES: str(int(expires))})
            except Exception:  # the lease is the record; the tag only helps during outages
                log.warning("could not retag %s with its new expiry", lease.name)
        return changed


    def snapshots(self, caller: Caller, name: str) -> list[VmSnapshot]:
        """The caller's VM's snapshots, oldest first."""
        lease, pool, _ = self._acting_on(caller, name)
        with _xen_errors(name, lease.host_ref):
            return pool.snapshots(lease.vm_uuid)

    def snapshot(self, caller: Caller, name: str, snapshot: str) -> VmSnapshot:
        """A disk-only snapshot of the caller's VM, destroyed with the VM; at most
        `vm.snapshots.max` per VM (each one lengthens its disks' chain on the host's SR)."""
        lease, pool, _ = self._acting_on(caller, name)
        limit = self.rt.config().snapshots_max
        with self._one_at_a_time(lease), _xen_errors(name, lease.host_ref):
            if limit == 0:
                raise Conflict("snapshots are turned off on this service (vm.snapshots.max=0)")
            have = len(pool.snapshots(lease.vm_uuid))
            if have >= limit:
                raise Conflict(f"VM {name} has {have} snapshot(s), the most one VM may have "
                               f"(vm.snapshots.max={limit}); delete one first (DELETE "
                               f"/api/v1/vms/{name}/snapshots/SNAPSHOT, dynvm snapshots {name} "
                               f"--delete SNAPSHOT)")
            return pool.snapshot(lease.vm_uuid, snapshot)

    def delete_snapshot(self, caller: Caller, name: str, snapshot: str) -> VmSnapshot:
        """Destroy the caller's VM's snapshot `snapshot` with its disks (room for another)."""
        lease, pool, _ = self._acting_on(caller, name)
        with self._one_at_a_time(lease), _xen_errors(name, lease.host_ref):
            return pool.delete_snapshot(lease.vm_uuid, snapshot)

    def revert(self, caller: Caller, name: str, snapshot: str | None) -> Reverted:
        """Revert the caller's VM to its snapshot `snapshot` (None: the newest).

        A running VM is started again and may get another address from DHCP: the
        revert waits for the one it reports and records it (lease, history, static
        pools), so every answer after it gives the address the VM has.
        """
        lease, pool, host = self._acting_on(caller, name)
        with self._one_at_a_time(lease), _xen_errors(name, lease.host_ref):
            snap = pool.revert(lease.vm_uuid, snapshot)
            vm = self.ctx.view(host).vms.get(lease.vm_uuid)
            if vm is None or vm.power_state != "Running":
                return Reverted(snap, "")  # left halted, as it was: no address now
            timeout = self.rt.config().network_timeout_secs
            try:
                ip = pool.wait_ready(lease.vm_uuid, windows=is_windows(lease.os),
                                     timeout=timeout)
            except (WaitTimeout, LinkLocalOnly) as exc:
                self._readdress(lease, "")
                raise ProvisionFailed(f"VM {name} was reverted to {snap.name} and started "
                                      f"again, but reported no usable address within "
                                      f"{timeout}s ({exc})") from exc
        self._readdress(lease, ip)
        return Reverted(snap, ip)

    def _readdress(self, lease: Lease, ip: str) -> None:
        """Record the VM's address after a revert where every reader finds it."""
        if ip == lease.ip:
            return
        ctx = self.ctx
        ctx.store.leases.update(lease.vm_uuid, ip=ip)
        ctx.store.history.update(lease.vm_uuid, {"ipaddr": ip})
        doc = ctx.store.history.get(lease.vm_uuid) or {}
        pools = tuple(doc.get("static_pools") or ())
        if pools:  # the static-pool documents are keyed by address
            staticpool.withdraw(ctx, lease, lease.ip)
            if ip:
                staticpool.publish(ctx, [ServerResult(lease.name, ip, lease.host_ref,
                                                      lease.vm_uuid)], pools)
        log.info("%s: address %s after its revert (was %s)", lease.name, ip or "none",
                 lease.ip or "none")

    @contextmanager
    def _one_at_a_time(self, lease: Lease) -> Iterator[None]:
        """One snapshot or revert of a VM at a time (a count of its snapshots holds
        until the next one is taken), however many workers or instances serve."""
        holder = uuid.uuid4().hex
        key = SNAPSHOT_LOCK + lease.vm_uuid
        ttl = self.rt.config().network_timeout_secs + SNAPSHOT_LOCK_SLACK_SECS
        if not self.ctx.store.locks.acquire(key, holder, ttl):
            raise Conflict(f"VM {lease.name}: another snapshot or revert of it is under way; "
                           f"try again once it is done")
        try:
            yield
        finally:
            self.ctx.store.locks.release(key, holder)

    def _acting_on(self, caller: Caller, name: str) -> tuple[Lease, XenPool, HostConfig]:
        """The caller's active VM `name`, its pool and host; a VM being built or released
        has no snapshots to list, take, delete or revert to."""
        lease = self.find(caller, name)
        if lease.state != LEASE_ACTIVE:
            raise Conflict(f"VM {name} is {lease.state}: only an active VM's snapshots can "
                           "be listed, taken, deleted or reverted to")
        host = self.rt.config().hosts.get(lease.host_ref)
        if host is None:
            raise Conflict(f"VM {name} runs on xenhost{lease.host_ref}, which is no longer "
                           "configured")
        return lease, self.ctx.pool(host), host


@dataclass(frozen=True)
class Reverted:
    """A revert: the snapshot gone back to, and the VM's address after it ("" if halted)."""

    snapshot: VmSnapshot
    ip: str


@contextmanager
def _xen_errors(name: str, host_ref: int) -> Iterator[None]:
    """XenAPI's refusals as the API's answers: 404 for what is not there, 502 for a
    host that does not answer, 409 for what the VM cannot do now."""
    try:
        yield
    except HostUnreachable as exc:
        raise ProvisionFailed(f"xenhost{host_ref} does not answer: {exc}") from exc
    except XenError as exc:
        if exc.code == "SNAPSHOT_NOT_FOUND":
            raise NotFound(f"VM {name}: {exc}") from exc
        if exc.code in ("UUID_INVALID", "HANDLE_INVALID"):
            raise NotFound(f"no VM named {name}") from exc
        detail = " ".join([exc.code, *map(str, exc.params)])
        raise Conflict(f"VM {name}: XenServer refused ({detail})") from exc
