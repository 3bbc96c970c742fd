"""The core's errors: what went wrong, with its data. The API alone decides the
status code and the wording each API has always used (`dynvm.api.errors`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dynvm.core.store.errors import StoreError, StoreUnavailable

if TYPE_CHECKING:
    from dynvm.core.fleet.plan import FleetPlan

__all__ = [
    "AllOrNoneFailed", "BadRequest", "Conflict", "DynvmError", "FleetRefused", "Forbidden",
    "HostNotConfigured",
    "MaintenanceFailed", "MaintenanceRefused", "NameInUse", "NoCapacity", "NotFound",
    "ProvisionFailed", "QuotaExceeded", "ServiceStopping", "StoreDown", "StoreError",
    "StoreUnavailable",
]


class DynvmError(Exception):
    """Base of the errors the API turns into HTTP answers."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(DynvmError):
    """Bad input (unknown OS, bad count, unknown xhostref...): nothing touched."""


class Unprocessable(DynvmError):
    """Well-formed input that cannot be used (a bad SSH key, a cloud-config that does
    not parse, keys for VMs that cannot take them): nothing touched."""


class NotFound(DynvmError):
    """No VM (or request) of that name."""


class NoCapacity(DynvmError):
    """Not enough room for the request: `asked` VMs of `os`, `available` fit, hosts down."""

    def __init__(self, message: str = "", *, asked: int | None = None, os: str = "",
                 available: int | None = None, unreachable: Sequence[int] = (),
                 why: str = "") -> None:
        self.asked, self.os, self.available = asked, os, available
        self.unreachable = list(unreachable)
        if asked is not None and not message:
            where = (f" ({', '.join(f'xenhost{r}' for r in self.unreachable)} unreachable)"
                     if self.unreachable else "")
            message = f"No capacity is available! {asked} {os} VM(s) asked, {available} available{where}"
            if why:  # no host could take the request at all: say what to change
                message += f": {why}"
        super().__init__(message)


class StoreDown(DynvmError):
    """The store cannot be reached, so capacity cannot be reserved safely."""


class HostNotConfigured(DynvmError):
    """A leased VM's host is no longer in the configuration: it cannot be destroyed."""


class ServiceStopping(DynvmError):
    """The process is stopping: the request was cancelled and rolled back; retry."""


class NameInUse(DynvmError):
    """A VM of that name already exists: nothing created."""


class ProvisionFailed(DynvmError):
    """Every VM of the request failed (allornone=false): XenServer could not build them."""


class AllOrNoneFailed(DynvmError):
    """allornone=true and some VM failed: everything was released."""


class Conflict(DynvmError):
    """The VM cannot do that now (its power state, another operation): nothing changed."""


class Forbidden(DynvmError):
    """The caller may not act on that VM (or route)."""


class QuotaExceeded(DynvmError):
    """The owner's quota has no room for the request: nothing built."""

    def __init__(self, message: str, limit: str, quota: int, used: int, asked: int) -> None:
        super().__init__(message)
        self.limit, self.quota, self.used, self.asked = limit, quota, used, asked


class MaintenanceRefused(Exception):
    """The run cannot start (not N+1, a VM that cannot move, another run holds the pool)."""


class MaintenanceFailed(Exception):
    """The run stopped part way; the status document says where and what to do."""


class FleetRefused(Exception):
    """Nothing was done to the fleet: no fleet, a directory that does not validate, a
    plan with problems (`plan` says them all), or another apply holding the fleet."""

    def __init__(self, message: str, plan: FleetPlan | None = None) -> None:
        super().__init__(message)
        self.plan = plan
