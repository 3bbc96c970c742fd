"""Leases through the outbox: what a claim holder does next may queue; claims never do.

A new lease is new work (straight to the backend). Field updates, the moves
that follow a claim, and deletes queue during an outage, and reads show them
already. A claim (`lifecycle.Move.claim`: a warm VM taken, a release begun)
is a compare-and-set that must reach the backend now: it is never queued,
and it is refused while the lease has queued changes the backend has not
seen, as it would judge stale state.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from dynvm.core import lifecycle
from dynvm.core.store import LEASE_ACTIVE, Lease, Leases, StoreUnavailable
from dynvm.store.outbox.journal import Outbox, Queued

LEASE_CACHE_MAX = 10000


class OutboxLeases(Leases):
    def __init__(self, primary: Leases, outbox: Outbox) -> None:
        self.primary = primary
        self._outbox = outbox
        # Leases this process has seen, so a queued update can still answer
        # with a best-effort Lease.
        self._seen: OrderedDict[str, Lease] = OrderedDict()
        self._seen_lock = threading.Lock()
        outbox.handle({
            "update_lease": self._replay_update,
            "transition": lambda a: self.primary.transition(
                a["vm_uuid"], a["src"], a["dst"], **a["changes"]),
            "delete_lease": lambda a: self.primary.delete(a["vm_uuid"]),
        })

    def _replay_update(self, a: dict[str, Any]) -> Lease | None:
        changes = dict(a["changes"])
        if "state" in changes:  # queued before state changes became transitions
            lease = self.primary.get(a["vm_uuid"])
            if lease is None or lease.state == changes["state"]:
                return lease
            return self.primary.transition(a["vm_uuid"], lease.state, changes.pop("state"),
                                           **changes)
        return self.primary.update(a["vm_uuid"], **changes)

    # -- what this process has seen, and queued changes over it ------------------------
    def _remember(self, lease: Lease | None) -> Lease | None:
        if lease is not None:
            with self._seen_lock:
                self._seen[lease.vm_uuid] = lease
                self._seen.move_to_end(lease.vm_uuid)
                while len(self._seen) > LEASE_CACHE_MAX:
                    self._seen.popitem(last=False)
        return lease

    @staticmethod
    def _overlay(lease: Lease | None, ops: list[Queued]) -> Lease | None:
        for op, _, a in ops:
            if op == "update_lease" and lease is not None:
                lease = lease.with_(**a["changes"])
            elif op == "transition" and lease is not None and lease.state == a["src"]:
                lease = lease.with_(**a["changes"], state=a["dst"])
            elif op == "delete_lease":
                lease = None
        return lease

    def _overlaid(self, queued: list[Queued]) -> list[Lease]:
        ops_by_key: dict[str, list[Queued]] = {}
        for item in queued:
            ops_by_key.setdefault(item[1], []).append(item)
        out = []
        for lease in self.primary.find():
            self._remember(lease)
            new = self._overlay(lease, ops_by_key.get(f"lease:{lease.vm_uuid}", []))
            if new is not None:
                out.append(new)
        return out

    # -- the repository ---------------------------------------------------------------
    def put(self, lease: Lease) -> None:
        self.primary.put(lease)
        self._remember(lease)

    def get(self, vm_uuid: str) -> Lease | None:
        queued = self._outbox.queued_view(f"lease:{vm_uuid}")
        lease = self._remember(self.primary.get(vm_uuid))
        return self._overlay(lease, queued) if queued else lease

    def update(self, vm_uuid: str, **changes: Any) -> Lease | None:
        lifecycle.check_changes(changes)
        return self._write("update_lease", vm_uuid, {"changes": changes})

    def transition(self, vm_uuid: str, src: str, dst: str, **changes: Any) -> Lease | None:
        move = lifecycle.lease_move(src, dst)
        lifecycle.check_changes(changes)
        if move.claim:
            # A claim is a compare-and-set: against a state the backend has not
            # seen yet it is unsafe, and it can never wait in the outbox.
            if self._outbox.queued_view(f"lease:{vm_uuid}"):
                raise StoreUnavailable(f"lease {vm_uuid} has queued changes not yet replayed")
            return self._remember(self.primary.transition(vm_uuid, src, dst, **changes))
        return self._write("transition", vm_uuid,
                           {"src": str(src), "dst": str(dst), "changes": changes})

    def _swap(self, vm_uuid: str, expect_state: str | None,
              changes: dict[str, Any]) -> Lease | None:
        raise NotImplementedError("the outbox changes leases through update / transition")

    def _write(self, op: str, vm_uuid: str, args: dict[str, Any]) -> Lease | None:
        """A lease write applied now or queued; answers the lease as it is (or will be)."""
        changes = args["changes"]
        unknown = set(changes) - set(Lease.__dataclass_fields__)
        if unknown or changes.get("vm_uuid", vm_uuid) != vm_uuid:
            # A bad call must fail now, not sit in the outbox until replay.
            raise TypeError(f"cannot change lease fields {sorted(unknown) or ['vm_uuid']}")
        key = f"lease:{vm_uuid}"
        queued, result = self._outbox.write(op, key, {"vm_uuid": vm_uuid, **args})
        if not queued:
            return self._remember(result)
        ops = self._outbox.pending_ops(key)
        if not ops:  # queued behind others, and already replayed
            try:
                return self._remember(self.primary.get(vm_uuid))
            except StoreUnavailable:
                ops = [(op, key, args)]
        with self._seen_lock:
            seen = self._seen.get(vm_uuid)
        # Best effort: what this process last saw, with every queued change applied.
        return self._overlay(seen, ops)

    def delete(self, vm_uuid: str) -> None:
        self._outbox.write("delete_lease", f"lease:{vm_uuid}", {"vm_uuid": vm_uuid})

    def find(self, *, name: str | None = None, state: str | None = None,
             os: str | None = None) -> list[Lease]:
        queued = self._outbox.queued_view()
        if queued is None:
            return self.primary.find(name=name, state=state, os=os)
        return [lease for lease in self._overlaid(queued)
                if (name is None or lease.name == name)
                and (state is None or lease.state == state)
                and (os is None or lease.os == os)]

    def due(self, now: float) -> list[Lease]:
        queued = self._outbox.queued_view()
        if queued is None:
            return self.primary.due(now)
        return sorted((lease for lease in self._overlaid(queued)
                       if lease.state == LEASE_ACTIVE and lease.expires <= now),
                      key=lambda lease: (lease.expires, lease.vm_uuid))
