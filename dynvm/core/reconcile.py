"""Reconciliation: the store and the farm agree again, touching only what is provably ours.

A process that dies (kill -9) mid-request leaves a request record in state
`running`, perhaps reservations, name locks, leases in `provisioning` and VMs
tagged with the request id. Each process keeps a heartbeat lock
(`instance:<id>`) in the store; once it lapses, the elected background
worker destroys the half-built VMs with their disks, gives the reservations
and names back, closes their history documents and marks the request
interrupted. Completed VMs (active or ready leases) are kept: they were
handed out.

A VM of the fleet directory (tagged `dynvm_fleet`, never `dynvm_lease`) is none
of this pass's business: the pool lists only VMs with a `dynvm_lease` tag
(`tagged_vms`), so a fleet VM is never adopted as a lease, never expires and
is never destroyed here (the fleet's own duty keeps it, `dynvm.core.fleet`).

Every VM carries its deployment's identity. A VM of another deployment, or
one with no identity (built before identities existed), is never touched,
only reported. A VM of ours that has no lease (the store was lost or
restored from a backup) is adopted from its tags, never destroyed. Only what
is provably abandoned is destroyed: a VM of a request that ended or was
interrupted, or one whose tags say it was still being built by an instance
that is dead. A lease whose VM is gone is closed as `vanished`, and a VM
without a lease adopted, only when two consecutive passes saw the same: one
listing is never trusted alone.

Over 400 lines because a pass is one procedure: each of its steps reads the
same two listings and the same dead-instance evidence, and splitting them
would hand that evidence around instead of keeping it in one `_Pass`.

A pass runs these steps over the lifecycle of `dynvm.core.lifecycle`, in order:
`_own_vms` (per host: adopt, destroy or leave our VMs no finished lease
covers), `_dead_builds`, `_vanished`, `_releases` (retry or finish
`releasing` leases) and `_dead_requests` (`running` -> `interrupted`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from dynvm.config import HostConfig
from dynvm.core import history, lifecycle, progress
from dynvm.core.context import Context
from dynvm.core.getservers import NAME_LOCK
from dynvm.core.lifecycle import (
    GONE,
    HISTORY_OF_LEASE,
    CoreEvent,
    LeaseState,
    RequestState,
    TagState,
    tag_state,
)
from dynvm.core.liveness import instance_alive
from dynvm.core.ports import (
    TAG_BUILDER,
    TAG_CREATED,
    TAG_DEPLOYMENT,
    TAG_EXPIRES,
    TAG_LEASE,
    TAG_OS,
    TAG_OWNER,
    TAG_STATE,
    VmView,
)
from dynvm.core.release import (
    RETRY_MARK,
    close_gone,
    finish_stuck_release,
    names_for,
    retry_release,
)
from dynvm.core.store import (
    LEASE_ACTIVE,
    LEASE_PROVISIONING,
    LEASE_READY,
    LEASE_RELEASING,
    Lease,
    RequestRecord,
)

log = logging.getLogger("dynvm.reconcile")

# A VM still being built whose request record cannot be found (the store was
# lost) is judged by its builder's heartbeat, but only after this long: a
# live builder's heartbeat may not be in a fresh store yet.
ORPHAN_GRACE_SECS = 120.0
STUCK_RELEASE_SECS = 600.0  # a release takes seconds; one this old lost its process
RETRY_BACKOFF_MAX_SECS = 300.0  # between attempts to destroy a VM whose rollback failed
MAX_ACTIONS = 20  # VMs destroyed or adopted per pass: a pass stays short, the next goes on


def _being_built(vm: VmView) -> bool:
    """The tags say the build never completed (`provisioning`, then `started`; completion
    tags it `active`, or `ready` for a warm-pool VM: `lifecycle.tag_state`)."""
    oc = vm.other_config
    return tag_state(oc.get(TAG_STATE, ""), oc.get(TAG_LEASE, "")) in (
        TagState.PROVISIONING, TagState.STARTED)


@dataclass
class _Pass:
    """What one pass read once (requests, leases) and what its steps found and did."""

    own: str | None  # this deployment's identity
    running: dict[str, RequestRecord]
    dead: set[str]  # running requests whose process is gone
    leases: list[Lease]
    by_uuid: dict[str, Lease]
    budget: int = MAX_ACTIONS
    listed: set[int] = field(default_factory=set)  # hosts whose listing succeeded
    present: set[str] = field(default_factory=set)  # every VM uuid seen on them
    unleased: set[str] = field(default_factory=set)
    foreign: set[str] = field(default_factory=set)
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("requests", "vms", "leases", "adopted", "vanished", "foreign", "names"), 0))


@dataclass
class Reconciler:
    """One per background worker: remembers the last pass for second sightings."""

    ctx: Context
    orphan_grace: float = ORPHAN_GRACE_SECS
    unleased: set[str] = field(default_factory=set)  # own VMs with no lease, last pass
    missing: set[str] = field(default_factory=set)  # leases whose VM was absent, last pass
    reported: set[str] = field(default_factory=set)  # foreign VMs already logged

    def run(self) -> dict[str, int]:
        """One pass: the named steps below, in order; returns counts of what was done."""
        ctx = self.ctx
        running = {r.id: r for r in ctx.store.requests.find(state=RequestState.RUNNING)}
        leases = ctx.store.leases.find()
        p = _Pass(own=ctx.deployment(), running=running,
                  dead={rid for rid, r in running.items() if not instance_alive(ctx, r.runner)},
                  leases=leases, by_uuid={lease.vm_uuid: lease for lease in leases})
        for host in ctx.config().hosts.values():
            self._own_vms(p, host)
        p.stats["foreign"] = len(p.foreign)
        self.reported = p.foreign
        self.unleased = p.unleased
        self._dead_builds(p)
        p.stats["vanished"] = self._vanished(p.leases, p.listed, p.present, p.running, p.dead)
        p.stats["leases"] += self._releases(p.leases)
        self._dead_requests(p)
        return p.stats

    def _own_vms(self, p: _Pass, host: HostConfig) -> None:
        """Our VMs on one host that no finished lease covers: adopt, destroy, or leave them."""
        ctx = self.ctx
        try:
            tagged = ctx.pool(host).tagged_vms()
            p.present.update(ctx.view(host).vms)
        except Exception as exc:
            log.warning("reconcile: xenhost%d unreachable: %s", host.ref, exc)
            return
        p.listed.add(host.ref)
        p.present.update(vm.uuid for vm in tagged)
        for vm in tagged:
            if vm.other_config.get(TAG_DEPLOYMENT) != p.own:
                p.foreign.add(vm.uuid)
                if vm.uuid not in self.reported:
                    log.warning("reconcile: %s (%s) on xenhost%d belongs to %s: left alone",
                                vm.name_label, vm.uuid, host.ref,
                                f"deployment {vm.other_config[TAG_DEPLOYMENT]}"
                                if vm.other_config.get(TAG_DEPLOYMENT)
                                else "no known deployment (no identity tag)")
                continue
            lease = p.by_uuid.get(vm.uuid)
            if lease is not None and lease.state != LEASE_PROVISIONING:
                continue  # handed out, ready, or being released
            verdict = self._judge(vm, lease, p.running, p.dead)
            if verdict == "adopt":
                p.unleased.add(vm.uuid)
                if vm.uuid in self.unleased and p.budget > 0 and self._adopt(host.ref, vm):
                    p.stats["adopted"] += 1
                    p.budget -= 1
                continue
            if verdict is None or p.budget <= 0:
                continue
            # The lease list is older than the VM listing: a build or warm hand-out
            # may have completed or begun in between (its lease now handed out, or
            # claimed by a live request). Only the lease as it is now may condemn the VM.
            lease = ctx.store.leases.get(vm.uuid)
            if lease is not None and (lease.state != LEASE_PROVISIONING or self._judge(
                    vm, lease, p.running, p.dead) in (None, "adopt")):
                continue
            p.budget -= 1
            try:
                ctx.pool(host).destroy(vm.uuid)
            except Exception:
                log.exception("reconcile: could not destroy %s", vm.uuid)
                continue
            p.stats["vms"] += 1
            log.warning("reconcile: destroyed %s (%s): %s", vm.name_label, vm.uuid, verdict)
            _close(ctx, vm.uuid, lease, vm.name_label,
                   vm.other_config.get(TAG_LEASE, ""), verdict)

    def _dead_builds(self, p: _Pass) -> None:
        """Leases a dead request was building whose VM is already gone."""
        for lease in p.leases:
            if lease.state == LEASE_PROVISIONING and lease.request_id in p.dead \
                    and lease.vm_uuid not in p.present:
                _close(self.ctx, lease.vm_uuid, lease, lease.name, lease.request_id,
                       "service stopped during provisioning")
                p.stats["leases"] += 1

    def _dead_requests(self, p: _Pass) -> None:
        """Requests whose process stopped: reservations and names back, then `interrupted`."""
        store = self.ctx.store
        for rid in p.dead:
            req = p.running[rid]
            store.reservations.drop_request(rid)
            p.stats["names"] += _free_names(self.ctx, req)
            cut = _interrupt_vms(self.ctx, req)
            lifecycle.end_request(store, rid, RequestState.INTERRUPTED, {
                "reason": f"the dynvm process running it ({req.runner}) stopped; "
                          f"{len(cut)} VM(s) it was still building are destroyed with their "
                          f"disks, those it had finished are kept",
                "instance": req.runner})
            p.stats["requests"] += 1
            log.warning("reconcile: request %s (%s) interrupted", rid, req.name)

    def _judge(self, vm: VmView, lease: Lease | None, running: dict[str, RequestRecord],
               dead: set[str]) -> str | None:
        """None (leave it), "adopt", or the reason it is provably abandoned.

        A VM with a lease is judged by the lease's request: a warm VM being
        handed out still carries the tag of the request that filled the pool
        (done) until the hand-out retags it, while its lease already names the
        request it is handed to.
        """
        oc = vm.other_config
        rid = (lease.request_id if lease is not None and lease.request_id
               else oc.get(TAG_LEASE, ""))
        req = running.get(rid) or self.ctx.store.requests.get(rid)
        if req is not None and req.state == RequestState.RUNNING:
            if rid in dead or not instance_alive(self.ctx, req.runner):
                return "service stopped during provisioning"
            return None  # a live process is building it
        building = lease is not None or _being_built(vm)
        if req is not None:
            if req.state in (RequestState.FAILED, RequestState.INTERRUPTED,
                             RequestState.REFUSED):
                return f"its request {req.state}"
            if building:
                return "left half built when its request ended"
            return "adopt"  # a finished request's VM whose lease was lost
        if not building:
            return "adopt"  # no record at all: the store was lost or restored
        builder = oc.get(TAG_BUILDER, "")
        age = self.ctx.clock() - float(oc.get(TAG_CREATED, 0) or 0)
        if builder and age >= self.orphan_grace and not instance_alive(self.ctx, builder):
            return "left half built by an instance that stopped"
        return None

    def _adopt(self, host_ref: int, vm: VmView) -> bool:
        """Recreate a lost lease from the VM's tags (seen without one on two passes)."""
        ctx = self.ctx
        store = ctx.store
        if store.leases.get(vm.uuid) is not None:
            return False
        doc = store.history.get(vm.uuid)
        if doc is not None and doc.get("state") in GONE:
            return False  # released meanwhile: the listing was older than the release
        oc = vm.other_config
        now = ctx.clock()
        created = float(oc.get(TAG_CREATED, 0) or 0) or now
        expires = float(oc.get(TAG_EXPIRES, 0) or 0) or \
            now + ctx.config().default_expiry_minutes * 60
        request_id = oc.get(TAG_LEASE, "")
        state = (LeaseState.READY if tag_state(oc.get(TAG_STATE, ""), request_id)
                 is TagState.READY else LeaseState.ACTIVE)
        lease = Lease(vm_uuid=vm.uuid, name=vm.name_label, owner=oc.get(TAG_OWNER, ""),
                      host_ref=host_ref, host_uuid=vm.resident_on, vm_ref=vm.ref,
                      os=oc.get(TAG_OS, ""), request_id=request_id, created=created,
                      expires=expires, state=state, ip=vm.ips[0] if vm.ips else "",
                      extra={"adopted": now})
        note = {"adopted_time": int(now),
                "adopt_reason": "found running with its tags but no lease (store lost or "
                                "restored); lease recreated from the tags"}
        # The document first, the lease last: whoever sees the lease sees its document,
        # and a pass cut short between the two adopts the VM again on the next one.
        if doc is None:
            store.history.put(vm.uuid, history.document(
                self._adopted_facts(lease, vm), HISTORY_OF_LEASE[state], **note))
        else:
            store.history.update(vm.uuid, {**note, **history.expiry_patch(expires)})
        store.leases.put(lease)
        log.warning("reconcile: adopted %s (%s) on xenhost%d from its tags: owner %s, "
                    "lease until %d", vm.name_label, vm.uuid, host_ref, lease.owner, expires)
        ctx.event(CoreEvent.ADOPTED)
        return True

    def _adopted_facts(self, lease: Lease, vm: VmView) -> history.VmFacts:
        """What an adopted VM's document can say: its lease, its tags, what its pool shows
        of it (sizes, member host, disks) and its host's configuration (template)."""
        hc = self.ctx.config().hosts.get(lease.host_ref)
        spec = hc.os.get(lease.os) if hc is not None else None
        member = ""
        disks: tuple[int, ...] = ()
        if hc is not None:
            try:
                view = self.ctx.view(hc)
                member = next((h.name_label for h in view.hosts if h.uuid == vm.resident_on), "")
                disks = tuple(self.ctx.pool(hc).disk_sizes(vm.uuid))
            except Exception:  # unknown, and said so by empty fields
                log.warning("reconcile: could not read %s's host or disks", vm.uuid)
        return history.VmFacts.of_lease(
            lease, xen_host=hc.name if hc is not None else "", member=member,
            template=spec.template if spec is not None else "", vcpus=vm.vcpus_max,
            memory_bytes=vm.memory_static_max, disk_bytes=disks, os_version=vm.os_name)

    def _vanished(self, leases: list[Lease], listed: set[int], present: set[str],
                  running: dict[str, RequestRecord], dead: set[str]) -> int:
        """Close leases whose VM two consecutive listings did not show."""
        ctx = self.ctx
        missing: set[str] = set()
        n = 0
        for lease in leases:
            if lease.state not in (LEASE_ACTIVE, LEASE_READY, LEASE_PROVISIONING) \
                    or lease.host_ref not in listed or lease.vm_uuid in present:
                continue
            if lease.state == LEASE_PROVISIONING and lease.request_id in running \
                    and lease.request_id not in dead:
                continue  # its builder is alive and will notice
            if lease.state == LEASE_PROVISIONING and lease.request_id in dead:
                continue  # closed above as interrupted
            missing.add(lease.vm_uuid)
            if lease.vm_uuid not in self.missing:
                continue
            current = ctx.store.leases.get(lease.vm_uuid)
            if current is None or current.state != lease.state \
                    or not close_gone(ctx, current, "vanished"):
                continue  # someone is acting on it
            log.warning("reconcile: %s (%s) on xenhost%d no longer exists: lease closed",
                        lease.name, lease.vm_uuid, lease.host_ref)
            n += 1
        self.missing = missing
        return n

    def _releases(self, leases: list[Lease]) -> int:
        """Retry failed rollbacks now; finish releases whose process died half way."""
        ctx = self.ctx
        n = 0
        for lease in leases:
            if lease.state != LEASE_RELEASING:
                continue
            since = lease.extra.get("releasing_since")
            mark = lease.extra.get(RETRY_MARK)
            try:
                if mark:
                    if ctx.clock() - float(mark.get("last", 0)) < retry_backoff(mark):
                        continue
                    if retry_release(ctx, lease):
                        n += 1
                        log.warning("reconcile: %s destroyed on retry", lease.name)
                elif since and ctx.clock() - since > STUCK_RELEASE_SECS:
                    finish_stuck_release(ctx, lease, "released (finished after an interruption)")
                    n += 1
            except Exception:
                log.exception("reconcile: could not finish releasing %s", lease.name)
        return n


def retry_backoff(mark: dict) -> float:
    """Seconds to wait after the last failed destroy before the next (`mark`: RETRY_MARK):
    2 s, 4 s, ... at most 5 minutes, while the host keeps refusing."""
    return min(2.0 ** int(mark.get("attempts", 1)), RETRY_BACKOFF_MAX_SECS)


def _interrupt_vms(ctx: Context, req: RequestRecord) -> list[str]:
    """Each VM the dead process left mid-build says so, instead of its last step."""
    cut = [p.name for p in progress.of_request(req) if p.step not in progress.FINAL_STEPS]
    for name in cut:
        progress.note(ctx, req.id, name, progress.Step.INTERRUPTED,
                      reason=f"the dynvm process building it ({req.runner}) stopped; "
                             f"anything built of it is destroyed with its disks")
    return cut


def _free_names(ctx: Context, req: RequestRecord) -> int:
    """Give back the names a dead request held (else they stay taken until the lock lapses)."""
    n = 0
    for name in names_for(req.name, req.count):
        if ctx.store.locks.holder(NAME_LOCK + name) == req.id:
            ctx.store.locks.release(NAME_LOCK + name, req.id)  # only if still the holder
            n += 1
    return n


def _close(ctx: Context, vm_uuid: str, lease: Lease | None, name: str, rid: str,
           reason: str) -> None:
    now = ctx.clock()
    doc = ctx.store.history.get(vm_uuid)
    if doc is None:
        vm = (history.VmFacts.of_lease(lease) if lease is not None
              else history.VmFacts(vm_uuid=vm_uuid, name=name, request_id=rid, created=now))
        ctx.store.history.put(vm_uuid, history.failed(vm, reason, now))
    else:
        ctx.store.history.update(vm_uuid, history.deleted_patch(
            doc, at=now, delete_secs=0.0, reason=reason))
    if lease is not None:
        ctx.store.leases.delete(vm_uuid)
