"""Requests, results and errors of the core: what the API layer sees.

The errors say what went wrong and carry its data; the API alone decides the
status code and the wording each API has always used (`dynvm.api.errors`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


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


@dataclass(frozen=True)
class ServersRequest:
    """A validated /getservers/<name> call."""

    name: str
    count: int = 1
    os: str = "centos"
    cpus: int | None = None
    mem_bytes: int | None = None
    expires_in_minutes: int | None = None  # None: the default (1440, capped)
    labels: frozenset[str] = frozenset()
    ignore_labels: bool = False
    xhostref: int | None = None
    all_or_none: bool = True
    network_id: str | None = None
    check_vms: bool = False
    owner: str | None = None  # the token's owner, when the caller gave one; else `name`
    static_pools: tuple[str, ...] = ()  # pools=: static server pools the VMs join (the seed's)


@dataclass(frozen=True)
class ServerResult:
    name: str
    ip: str
    host_ref: int
    vm_uuid: str
    from_warm_pool: bool = False


@dataclass(frozen=True)
class ServersResult:
    servers: list[ServerResult]  # in name order: name1, name2, ...
    failed: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)


@dataclass(frozen=True)
class ShowAll:
    hosts: dict[int, list[dict]]  # host number -> VM rows (name, power_state, vcpus, ...)
    unreachable: list[int]
    age_secs: float  # age of the oldest pool view used


@dataclass(frozen=True)
class Available:
    count: int
    unreachable: list[int]
    age_secs: float
