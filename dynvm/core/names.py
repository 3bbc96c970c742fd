"""Whether a VM name is free: a lease holds its name only while its VM may exist.

A lease can outlive its VM: the farm lost it (the embedded simulated farm restarts
empty; a host was rebuilt) while the store kept the lease. Reconciliation closes such
a lease once two passes saw the VM missing, but a caller asking for the name before
then must not be told a VM exists that does not. So the request asks the VM's pool
itself (its master, not the inventory's copy): if the pool says no VM has that uuid,
the lease is closed there and then (nothing is destroyed: there is nothing) and the
name is free. If the pool cannot be asked, the answer says so, and when the name will
be free. A lease whose VM a live process is building holds its name without asking.
"""

from __future__ import annotations

import logging
import time

from dynvm.core.context import Context
from dynvm.core.errors import NameInUse
from dynvm.core.lifecycle import RequestState
from dynvm.core.liveness import instance_alive
from dynvm.core.release import close_gone
from dynvm.core.store import LEASE_PROVISIONING, LEASE_READY, LEASE_RELEASING, Lease

log = logging.getLogger("dynvm.names")


def check_free(ctx: Context, names: list[str], prefix: str = "") -> None:
    """Raise NameInUse (its message starting with `prefix`) for the first of `names` a
    lease still holds; leases whose VM the farm proves gone are closed on the way.

    Call while holding the names' locks: no request can build one of them meanwhile.
    """
    for name in names:
        for lease in ctx.store.leases.find(name=name):
            if lease.state in (LEASE_READY, LEASE_RELEASING):
                continue  # a warm VM is renamed when handed out; a released one is going
            why = _held_because(ctx, lease)
            if why:
                raise NameInUse(prefix + why)


def _held_because(ctx: Context, lease: Lease) -> str | None:
    """Why `lease` still holds its name (None: it does not, its VM is provably gone)."""
    name, ref = lease.name, lease.host_ref
    if lease.state == LEASE_PROVISIONING:
        req = ctx.store.requests.get(lease.request_id)
        if req is not None and req.state == RequestState.RUNNING \
                and instance_alive(ctx, req.runner):
            return (f"VM {name} is being built by request {req.id}; ask again once it is "
                    f"done, or pick another name")
    host = ctx.config().hosts.get(ref) or ctx.retired_hosts.get(ref)
    if host is None:
        return (f"VM {name} has a lease on xenhost{ref}, which is not configured, so dynvm "
                f"cannot tell whether it still exists; the name is free once the "
                f"[xenhost{ref}] section is back and its pool shows the VM gone, or pick "
                f"another name")
    try:  # asked even while the inventory thinks the pool down: it may be back already
        exists = ctx.pool(host).exists(lease.vm_uuid)
    except Exception as exc:
        return (f"VM {name} has a lease on xenhost{ref}, whose pool does not answer "
                f"({exc}), so dynvm cannot tell whether it still exists; ask again once "
                f"xenhost{ref} answers: the name is free at once if the VM is gone")
    if exists:
        return (f"VM {name} already exists (on xenhost{ref}, owner {lease.owner or 'none'}, "
                f"leased until {_utc(lease.expires)}); release it or pick another name")
    reason = (f"vanished: xenhost{ref} says the VM does not exist (found when its name "
              f"was asked for again)")
    if close_gone(ctx, lease, reason):
        log.warning("%s (%s) on xenhost%d no longer exists: lease closed, name free",
                    name, lease.vm_uuid, ref)
    return None


def _utc(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when))
