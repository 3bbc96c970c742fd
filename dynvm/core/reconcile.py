"""Crash recovery: finding what an interrupted process left behind and cleaning it up.

A process that dies (kill -9) mid-request leaves a request record in state
`running`, perhaps reservations, perhaps leases in `provisioning` and VMs
tagged with the request id. Each process keeps a heartbeat lock
(`instance:<id>`) in the store; once it lapses, the elected background
worker destroys the half-built VMs with their disks, gives the reservations
back, closes their history documents and marks the request interrupted.
Completed VMs (active or ready leases) are kept: they were handed out.
"""

from __future__ import annotations

import logging

from dynvm.core import history
from dynvm.core.context import Context
from dynvm.core.ports import TAG_CREATED, TAG_LEASE
from dynvm.core.release import finish_stuck_release
from dynvm.store.base import LEASE_PROVISIONING, LEASE_RELEASING, Lease

log = logging.getLogger("dynvm.reconcile")

HEARTBEAT_PREFIX = "instance:"
ORPHAN_GRACE_SECS = 120.0
STUCK_RELEASE_SECS = 600.0  # a release takes seconds; one this old lost its process  # an untracked tagged VM younger than this may still be recorded


def instance_alive(ctx: Context, instance: str) -> bool:
    return instance == ctx.instance or ctx.store.leader(HEARTBEAT_PREFIX + instance) is not None


def reconcile(ctx: Context) -> dict[str, int]:
    """One pass; returns counts of what was cleaned."""
    stats = {"requests": 0, "vms": 0, "leases": 0}
    requests = {r.id: r for r in ctx.store.requests(state="running")}
    dead = {rid for rid, r in requests.items() if not instance_alive(ctx, r.instance)}
    leases = ctx.store.leases()
    by_uuid = {lease.vm_uuid: lease for lease in leases}
    cfg = ctx.config()

    # VMs in Xen tagged by dynvm that no completed lease owns.
    for host in cfg.hosts.values():
        try:
            tagged = ctx.pool(host).tagged_vms()
        except Exception as exc:
            log.warning("reconcile: xenhost%d unreachable: %s", host.ref, exc)
            continue
        for vm in tagged:
            rid = vm.other_config.get(TAG_LEASE, "")
            lease = by_uuid.get(vm.uuid)
            if lease is not None and lease.state != LEASE_PROVISIONING:
                continue  # handed out, ready, or being released by its owner
            req = requests.get(rid)
            if req is not None and rid not in dead:
                continue  # still being built by a live process
            if req is None and lease is None:
                age = ctx.clock() - float(vm.other_config.get(TAG_CREATED, 0) or 0)
                if age < ORPHAN_GRACE_SECS:
                    continue  # its request record may not be visible yet
            reason = "service stopped during provisioning" if rid in dead else "orphan VM"
            try:
                ctx.pool(host).destroy(vm.uuid)
            except Exception:
                log.exception("reconcile: could not destroy %s", vm.uuid)
                continue
            stats["vms"] += 1
            log.warning("reconcile: destroyed %s (%s): %s", vm.name_label, vm.uuid, reason)
            _close(ctx, vm.uuid, lease, vm.name_label, rid, reason)

    # Leases of dead requests whose VM is already gone, and their reservations.
    for lease in leases:
        if lease.state == LEASE_PROVISIONING and lease.request_id in dead:
            _close(ctx, lease.vm_uuid, lease, lease.name, lease.request_id,
                   "service stopped during provisioning")
            stats["leases"] += 1
    # Releases whose process died half way: finish them.
    for lease in leases:
        since = lease.extra.get("releasing_since")
        if lease.state == LEASE_RELEASING and since and ctx.clock() - since > STUCK_RELEASE_SECS:
            try:
                finish_stuck_release(ctx, lease, "released (finished after an interruption)")
                stats["leases"] += 1
            except Exception:
                log.exception("reconcile: could not finish releasing %s", lease.name)
    for rid in dead:
        ctx.store.drop_reservations(rid)
        ctx.store.finish_request(rid, "interrupted",
                                 {"reason": "the process running it stopped",
                                  "instance": requests[rid].instance})
        stats["requests"] += 1
        log.warning("reconcile: request %s (%s) interrupted", rid, requests[rid].name)
    return stats


def _close(ctx: Context, vm_uuid: str, lease: Lease | None, name: str, rid: str,
           reason: str) -> None:
    now = ctx.clock()
    doc = ctx.store.get_history(vm_uuid)
    if doc is None:
        ctx.store.put_history(vm_uuid, {
            "name": name, "uuid": vm_uuid, "request_id": rid, "state": "failed",
            "failure_reason": reason, "deleted_time": int(now),
            "created_time": int(lease.created) if lease else int(now)})
    else:
        ctx.store.update_history(vm_uuid, history.deleted_patch(
            doc, at=now, delete_secs=0.0, reason=reason))
    if lease is not None:
        ctx.store.delete_lease(vm_uuid)
