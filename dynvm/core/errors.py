"""The core's errors: what went wrong, with its data. The API alone decides the
status code and the wording each API has always used (`dynvm.api.errors`).
"""

from __future__ import annotations

from collections.abc import Sequence


class DynvmError(Exception):
    """Base of the errors the API turns into HTTP answers."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(DynvmError):
    """Bad input (unknown OS, bad count, unknown xhostref...): nothing touched."""


class NotFound(DynvmError):
    """No VM (or request) of that name."""


class NoCapacity(DynvmError):
    """Not enough room for the request: `asked` VMs of `os`, `available` fit, hosts down."""

    def __init__(self, message: str = "", *, asked: int | None = None, os: str = "",
                 available: int | None = None, unreachable: Sequence[int] = ()) -> None:
        self.asked, self.os, self.available = asked, os, available
        self.unreachable = list(unreachable)
        if asked is not None and not message:
            where = (f" ({', '.join(f'xenhost{r}' for r in self.unreachable)} unreachable)"
                     if self.unreachable else "")
            message = f"No capacity is available! {asked} {os} VM(s) asked, {available} available{where}"
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
