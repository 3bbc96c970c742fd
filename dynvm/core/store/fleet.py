"""The fleet repository: one record per fleet VM dynvm built, claimed while it is built or
destroyed, so that a VM of the fleet exists exactly once whichever process acts on it."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

from dynvm.core import lifecycle
from dynvm.core.lifecycle import FleetState
from dynvm.core.records import FleetEntry

Check = Callable[[FleetEntry], bool]


class FleetEntries(abc.ABC):
    """Records by declared name; every read-modify-write is one atomic step of the backend."""

    def claim(self, name: str, holder: str, until: float, now: float, *,
              missing: str | None = None) -> FleetEntry | None:
        """Claim the right to build `name` until `until`: a new `creating` record, one whose
        claim lapsed (its holder died) taken over, one `holder` holds already (renewed),
        or, with `missing`, a `present` record that still names that VM, which the
        caller found gone. None when another process holds it or it is present. The
        holder looks at the farm again before it builds anything."""
        entry = FleetEntry(name=name, state=FleetState.CREATING.value, holder=holder,
                           until=until, created=now)
        if self._insert(entry):
            return entry
        if missing is not None:
            lifecycle.check_fleet_move(FleetState.PRESENT, FleetState.CREATING)
        return self._take(name, FleetState.CREATING, holder, until, now,
                          lambda e: missing is not None and e.state == FleetState.PRESENT
                          and e.vm_uuid == missing)

    def claim_removal(self, name: str, holder: str, until: float,
                      now: float) -> FleetEntry | None:
        """Claim the right to destroy a present VM (or take over a lapsed claim to)."""
        lifecycle.check_fleet_move(FleetState.PRESENT, FleetState.REMOVING)
        return self._take(name, FleetState.REMOVING, holder, until, now,
                          lambda e: e.state == FleetState.PRESENT)

    def _take(self, name: str, dst: FleetState, holder: str, until: float, now: float,
              also: Check) -> FleetEntry | None:
        """Claim `name` into `dst` if its claim there lapsed or is `holder`'s, or `also`."""
        def may(e: FleetEntry) -> bool:
            return (e.state == dst and (e.until <= now or e.holder == holder)) or also(e)
        return self._swap(name, may, {"state": dst.value, "holder": holder, "until": until})

    def adopt(self, entry: FleetEntry) -> bool:
        """Record a fleet VM found without a record (the store was lost); False if one exists."""
        if FleetState(entry.state) not in lifecycle.FLEET_BIRTH:
            raise lifecycle.IllegalTransition("a fleet record", "(new)", entry.state)
        return self._insert(entry)

    def settle(self, name: str, src: str, holder: str, **changes: Any) -> FleetEntry | None:
        """The holder of a claim is done: the record is `present` again (built, or its
        destroy failed), with `changes`. None if `holder` no longer holds it in `src`."""
        lifecycle.check_fleet_move(src, FleetState.PRESENT)
        if "state" in changes:
            raise lifecycle.IllegalTransition("a fleet record", src, "a state in changes")
        return self._swap(name, lambda e: e.state == src and e.holder == holder,
                          {**changes, "state": FleetState.PRESENT.value, "holder": "",
                           "until": 0.0})

    def update(self, name: str, **changes: Any) -> FleetEntry | None:
        """Change fields other than the state; None if there is no record."""
        if "state" in changes:
            raise lifecycle.IllegalTransition("a fleet record", "(any)", "a state without a move")
        return self._swap(name, lambda e: True, changes)

    def end(self, name: str, state: str, holder: str) -> bool:
        """Remove the record of a build that failed or a VM destroyed, if `holder` still
        holds it in `state`; False otherwise (another process took it over)."""
        if FleetState(state) not in lifecycle.FLEET_END:
            raise lifecycle.IllegalTransition("a fleet record", state, "(deleted)")
        return self._remove(name, lambda e: e.state == state and e.holder == holder)

    @abc.abstractmethod
    def get(self, name: str) -> FleetEntry | None: ...

    @abc.abstractmethod
    def find(self) -> list[FleetEntry]:
        """Every record, by name."""

    # -- what a backend implements, each one atomic ---------------------------------------
    @abc.abstractmethod
    def _insert(self, entry: FleetEntry) -> bool:
        """Store `entry` if no record has its name; True if it was stored."""

    @abc.abstractmethod
    def _swap(self, name: str, check: Check, changes: dict[str, Any]) -> FleetEntry | None:
        """Apply `changes` to the record if `check(record)`; the new record, else None."""

    @abc.abstractmethod
    def _remove(self, name: str, check: Check) -> bool:
        """Delete the record if `check(record)`; True if it was deleted."""
