"""Releasing VMs (by name, on expiry, on rollback) and moving their expiry.

Exactly one process destroys a given VM: the lease is claimed with a
compare-and-set first. When the store cannot be reached, the VM is found by
its other_config tags in the inventory and destroyed all the same; the
lease and history updates then wait in the local outbox.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from dynvm.core import history, lifecycle, staticpool
from dynvm.core.callers import Caller, check_may_act
from dynvm.core.context import Context
from dynvm.core.errors import HostNotConfigured
from dynvm.core.lifecycle import CoreEvent, TagState, tag_state
from dynvm.core.placement import views_of
from dynvm.core.ports import (
    TAG_CREATED,
    TAG_DEPLOYMENT,
    TAG_EXPIRES,
    TAG_LEASE,
    TAG_OS,
    TAG_OWNER,
    TAG_STATE,
)
from dynvm.core.store import (
    LEASE_ACTIVE,
    LEASE_READY,
    LEASE_RELEASING,
    Lease,
    StoreUnavailable,
)

log = logging.getLogger("dynvm.release")

# In a releasing lease's extra: the destroy failed and must be retried until done.
RETRY_MARK = "release_retry"
EXPIRED_REASON = "expired"  # the delete_reason of a VM whose lease ran out


def names_for(name: str, count: int | None) -> list[str]:
    """The seed's naming: `name` for one VM, `name1 … nameN` for N."""
    if count is None or count == 1:
        return [name]
    return [f"{name}{i}" for i in range(1, count + 1)]


@dataclass(frozen=True)
class Target:
    """The VMs a release or an expiry change names, as the request said it.

    Either exact names (`name`, or `name1 … nameN` with a count) or, for the
    seed's `/releaseservers/<prefix>/available`, every `<prefix><N>`. Which
    leases that means is decided by `touched` alone.
    """

    said: str  # the name or prefix the caller gave, for "VM <said> doesn't exist"
    names: tuple[str, ...] = ()
    numbered: bool = False  # every <said><N>, whatever N

    @classmethod
    def named(cls, name: str, count: int | None = None) -> Target:
        return cls(name, tuple(names_for(name, count)))

    @classmethod
    def every_numbered(cls, prefix: str) -> Target:
        return cls(prefix, numbered=True)

    def covers(self, name: str) -> bool:
        if self.numbered:
            return re.fullmatch(re.escape(self.said) + r"[0-9]+", name) is not None
        return name in self.names


def touched(ctx: Context, target: Target) -> list[Lease]:
    """The handed-out leases a request for `target` acts on, in name order.

    The one place that turns a request's target into VMs: every check (who
    may act on them) and every action (release, expiry) uses its answer.
    Warm-pool VMs and VMs already being released are never touched.
    """
    if target.numbered:
        found = [lease for lease in ctx.store.leases.find() if target.covers(lease.name)]
    else:
        found = [lease for n in dict.fromkeys(target.names)
                 for lease in ctx.store.leases.find(name=n)]
    return _in_order(lease for lease in found
                     if lease.state not in (LEASE_READY, LEASE_RELEASING))


def touched_from_tags(ctx: Context, target: Target) -> list[Lease]:
    """`touched` while the store is unreachable: the leases the VMs' own tags tell."""
    cfg = ctx.config()
    views, _ = views_of(cfg.hosts.values(), ctx.view)
    return _in_order(lease for lease in tagged_leases(views, own_deployment(ctx))
                     if target.covers(lease.name))


def _in_order(leases: Iterable[Lease]) -> list[Lease]:
    return sorted(leases, key=lambda item: (len(item.name), item.name, item.vm_uuid))


def release_lease(ctx: Context, lease: Lease, reason: str,
                  release_state: str | None = None, *, keep_trying: bool = False) -> bool:
    """Destroy a leased VM and close its history. False if another process has it.

    With `keep_trying` (a rollback: the VM must not stay handed out) a failed
    destroy leaves the lease `releasing`, marked for the background worker to
    retry until the VM and its disks are gone; otherwise the lease goes back
    to its previous state and the error is raised.
    """
    claimed = lifecycle.begin_release(ctx.store, lease, ctx.clock())
    if claimed is None:
        return False
    return _destroy_and_record(ctx, claimed, reason, release_state,
                               previous=None if keep_trying else lease.state)


def _destroy_and_record(ctx: Context, lease: Lease, reason: str, release_state: str | None,
                        previous: str | None) -> bool:
    """`previous` None: on failure, stay `releasing` and leave a retry mark."""
    cfg = ctx.config()
    # A host a reload removed is still reachable with the connection data it had.
    host = cfg.hosts.get(lease.host_ref) or ctx.retired_hosts.get(lease.host_ref)
    started = ctx.clock()
    if host is None:
        # Forgetting the lease would leave the VM running with nobody to destroy it.
        _undo(ctx, lease, previous)
        raise HostNotConfigured(
            f"Error: VM {lease.name} runs on xenhost{lease.host_ref}, which is no longer "
            f"configured; it was left running and keeps its lease: put the [xenhost"
            f"{lease.host_ref}] section back to release it")
    try:
        ctx.pool(host).destroy(lease.vm_uuid)
    except Exception as exc:
        log.exception("releasing %s: destroy failed; will retry", lease.name)
        if previous is None:
            retry = lease.extra.get(RETRY_MARK) or {}
            ctx.store.leases.update(lease.vm_uuid, extra={**lease.extra, RETRY_MARK: {
                "reason": retry.get("reason", reason), "error": str(exc)[:300],
                "attempts": int(retry.get("attempts", 0)) + 1, "last": ctx.clock()}})
        else:
            _undo(ctx, lease, previous)
        raise
    _record_end(ctx, lease, reason, release_state, started)
    ctx.event(CoreEvent.RELEASED, os=lease.os)
    if reason == EXPIRED_REASON:
        ctx.event(CoreEvent.EXPIRED, os=lease.os)
    return True


def close_gone(ctx: Context, lease: Lease, reason: str) -> bool:
    """Close the lease of a VM its pool says no longer exists (nothing to destroy): its
    history says `reason`. False if another process has it (a release under way)."""
    claimed = lifecycle.begin_release(ctx.store, lease, ctx.clock())
    if claimed is None:
        return False
    _record_end(ctx, claimed, reason, None, ctx.clock(), gone=True)
    ctx.event(CoreEvent.VANISHED)
    return True


def _record_end(ctx: Context, lease: Lease, reason: str, release_state: str | None,
                started: float, *, gone: bool = False) -> None:
    """A claimed lease whose VM is no more: its history closed, its lease, reservation and
    static-pool entry gone. With `gone` (it vanished, nobody destroyed it) a VM never
    recorded is recorded failed, not released."""
    done = ctx.clock()
    try:
        doc = ctx.store.history.get(lease.vm_uuid)
    except StoreUnavailable:
        doc = {"created_time": lease.created}
    if doc is None and gone:
        ctx.store.history.put(lease.vm_uuid, history.failed(
            history.VmFacts.of_lease(lease), reason, done))
    elif doc is None:  # released before its build recorded it: the lease says what it was
        ctx.store.history.put(lease.vm_uuid, history.closed(
            history.VmFacts.of_lease(lease), at=done, delete_secs=done - started,
            reason=reason, release_state=release_state, released_while_building=True))
    else:
        ctx.store.history.update(lease.vm_uuid, history.deleted_patch(
            doc, at=done, delete_secs=done - started, reason=reason,
            release_state=release_state))
    if doc is None or "static_pools" in doc or "ipaddr" not in doc:  # published, or unknown
        staticpool.withdraw(ctx, lease, lease.ip or (doc or {}).get("ipaddr"))
    ctx.store.leases.delete(lease.vm_uuid)
    drop_reservation_of(ctx, lease.vm_uuid)
    ctx.room_freed.set()


def _undo(ctx: Context, lease: Lease, previous: str | None) -> None:
    """A destroy that did not happen: the lease goes back to `previous` (if it had left it)."""
    if previous is not None and previous != LEASE_RELEASING:
        lifecycle.undo_release(ctx.store, lease.vm_uuid, previous)


def drop_reservation_of(ctx: Context, vm_uuid: str) -> None:
    """A settling reservation must not outlive its VM, or the room stays taken."""
    try:
        for r in ctx.store.reservations.live():
            if r.vm_uuid == vm_uuid:
                ctx.store.reservations.settle(r.id, settle_secs=0.0)
    except StoreUnavailable:
        pass  # it lapses on its own within the settle time


def finish_stuck_release(ctx: Context, lease: Lease, reason: str) -> bool:
    """A release whose process died half way: destroy (again) and close the lease."""
    return _destroy_and_record(ctx, lease, reason, None, previous=LEASE_RELEASING)


def retry_release(ctx: Context, lease: Lease) -> bool:
    """Try again to destroy a VM whose rollback failed (its lease stays `releasing` until done)."""
    mark = lease.extra.get(RETRY_MARK) or {}
    return _destroy_and_record(ctx, lease, str(mark.get("reason") or "released"), None,
                               previous=None)


def own_deployment(ctx: Context) -> str | None:
    """This deployment's identity, None if it was never learnt and the store is down."""
    try:
        return ctx.deployment()
    except StoreUnavailable:
        return None


def tagged_leases(views, own: str | None) -> list[Lease]:
    """Leases as the VMs' own other_config tags tell them (handed-out VMs of `own` only).

    Without a known identity nothing can be proven ours, so nothing is returned.
    """
    out = []
    for hc, view in views:
        for vm in view.vms.values():
            oc = vm.other_config
            if own and oc.get(TAG_DEPLOYMENT) == own and TAG_LEASE in oc \
                    and tag_state(oc.get(TAG_STATE, ""), oc[TAG_LEASE]) is TagState.ACTIVE:
                out.append(Lease(vm_uuid=vm.uuid, name=vm.name_label, owner=oc.get(TAG_OWNER, ""),
                                 host_ref=hc.ref, host_uuid=vm.resident_on, vm_ref=vm.ref,
                                 os=oc.get(TAG_OS, ""), request_id=oc[TAG_LEASE],
                                 created=float(oc.get(TAG_CREATED, 0) or 0),
                                 expires=float(oc.get(TAG_EXPIRES, 0) or 0),
                                 state=LEASE_ACTIVE))
    return out


def release_target(ctx: Context, target: Target, reason: str,
                   release_state: str | None = None, caller: Caller | None = None) -> list[str]:
    """Release every VM `target` names that `caller` may act on; returns the names released.

    Forbidden (nothing released) if any of them belongs to another owner.
    """
    try:
        leases = touched(ctx, target)
        offline = False
    except StoreUnavailable:
        leases = touched_from_tags(ctx, target)
        offline = True
    check_may_act(ctx.store, caller, leases)
    released = []
    for lease in leases:
        if offline:
            ok = _destroy_and_record(ctx, lease.with_(state=LEASE_RELEASING), reason,
                                     release_state, previous=LEASE_ACTIVE)
        else:
            ok = release_lease(ctx, lease, reason, release_state)
        if ok:
            released.append(lease.name)
    return released


def release_names(ctx: Context, names: list[str], reason: str,
                  release_state: str | None = None) -> list[str]:
    """Release every VM with one of these names; returns the names released."""
    if not names:
        return []
    return release_target(ctx, Target(names[0], tuple(names)), reason, release_state)


def set_expiry(ctx: Context, target: Target, minutes: int, from_created: bool,
               caller: Caller | None = None) -> list[str]:
    """Move the expiry of the VMs `target` names; returns the names changed.

    Forbidden (nothing changed) if any of them belongs to another owner.
    """
    cfg = ctx.config()
    minutes = min(minutes, cfg.expiry_minutes_max)
    changed = []
    # Written now or refused (503), never queued in the outbox: a queued change would
    # answer 404 now and be applied later anyway.
    if ctx.store.pending():
        raise StoreUnavailable("earlier changes still wait in the outbox")
    direct = ctx.store.direct
    leases = touched(ctx, target)
    check_may_act(ctx.store, caller, leases)
    for lease in leases:
        base = lease.created if from_created else ctx.clock()
        expires = base + minutes * 60
        if direct.leases.update(lease.vm_uuid, expires=expires) is None:
            continue
        ctx.store.history.update(lease.vm_uuid, history.expiry_patch(expires))
        host = cfg.hosts.get(lease.host_ref)
        if host is not None:
            try:
                ctx.pool(host).update(lease.vm_uuid, tags={TAG_EXPIRES: str(int(expires))})
            except Exception:  # the lease is the record; the tag is a hint for outages
                log.warning("could not retag %s with its new expiry", lease.name)
        changed.append(lease.name)
    return changed


def expire_from_tags(ctx: Context) -> int:
    """Expiry while the store is unreachable: the VMs' own dynvm_expires tags decide.

    Destroying twice is harmless (the second finds nothing), so the last known
    leader keeps doing this until the store answers again; the lease and
    history updates wait in the outbox.
    """
    cfg = ctx.config()
    now = ctx.clock()
    views, _ = views_of(cfg.hosts.values(), ctx.view)
    n = 0
    for lease in tagged_leases(views, own_deployment(ctx)):
        if not lease.expires or lease.expires > now:
            continue
        try:
            if _destroy_and_record(ctx, lease.with_(state=LEASE_RELEASING), EXPIRED_REASON, None,
                                   previous=LEASE_ACTIVE):
                n += 1
        except Exception:
            log.exception("expiring %s from its tags failed", lease.name)
    return n


def expire_due(ctx: Context, limit: int | None = None) -> int:
    """Release leases whose time has come (at most `limit`); returns how many were released."""
    n = 0
    for lease in ctx.store.leases.due(ctx.clock())[:limit]:
        try:
            if release_lease(ctx, lease, reason=EXPIRED_REASON):
                n += 1
                log.info("expired %s (%s)", lease.name, lease.vm_uuid)
        except Exception:
            log.exception("expiring %s failed; will retry", lease.name)
    return n
