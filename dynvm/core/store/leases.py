"""The lease repository: which VMs dynvm owns, whose they are, and when they expire."""

from __future__ import annotations

import abc
from typing import Any

from dynvm.core import lifecycle
from dynvm.core.records import Lease


class Leases(abc.ABC):
    """One lease per dynvm VM, keyed by the VM's uuid; its state moves only by `transition`."""

    @abc.abstractmethod
    def put(self, lease: Lease) -> None:
        """Create or replace a lease; its state must be a birth state (`lifecycle.check_birth`)."""

    @abc.abstractmethod
    def get(self, vm_uuid: str) -> Lease | None: ...

    def update(self, vm_uuid: str, **changes: Any) -> Lease | None:
        """Atomically change fields of a lease other than its state; None if it does not exist."""
        lifecycle.check_changes(changes)
        return self._swap(vm_uuid, None, changes)

    def transition(self, vm_uuid: str, src: str, dst: str, **changes: Any) -> Lease | None:
        """Move a lease from `src` to `dst` (compare-and-set), changing `changes` with it.

        Only the moves `dynvm.core.lifecycle` declares are accepted: any other
        raises IllegalTransition and changes nothing. Returns the new lease, or
        None if the lease is missing or no longer in `src` (another process got
        there first): that is how a warm VM is handed out exactly once and
        exactly one releaser destroys a VM.
        """
        lifecycle.lease_move(src, dst)
        lifecycle.check_changes(changes)
        return self._swap(vm_uuid, src, {**changes, "state": lifecycle.LeaseState(dst).value})

    @abc.abstractmethod
    def _swap(self, vm_uuid: str, expect_state: str | None,
              changes: dict[str, Any]) -> Lease | None:
        """Backends: in one atomic step, apply `changes` to a lease if it is in
        `expect_state` (any state for None). Callers use `transition` / `update`."""

    @abc.abstractmethod
    def delete(self, vm_uuid: str) -> None: ...

    @abc.abstractmethod
    def find(self, *, name: str | None = None, state: str | None = None,
             os: str | None = None) -> list[Lease]:
        """Leases filtered by exact VM name, state and/or OS, soonest expiry first."""

    @abc.abstractmethod
    def due(self, now: float) -> list[Lease]:
        """Active leases whose expiry is at or before `now`."""
