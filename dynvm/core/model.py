"""Requests, results and errors of the core: what the API layer sees."""

from __future__ import annotations

from dataclasses import dataclass, field


class DynvmError(Exception):
    """Base of the errors the API turns into HTTP answers."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(DynvmError):
    """Bad input (unknown OS, bad count, unknown xhostref...): 400, nothing touched."""

    status = 400


class NotFound(DynvmError):
    """No VM of that name: 404 (body `Error: VM <name> doesn't exist`)."""

    status = 404


class NoCapacity(DynvmError):
    """Not enough room for the request: 503 (body keeps the seed's wording)."""

    status = 503


class StoreDown(DynvmError):
    """The store cannot be reached, so capacity cannot be reserved safely: 503."""

    status = 503


class HostNotConfigured(DynvmError):
    """A leased VM's host is no longer in the configuration: it cannot be destroyed."""

    status = 409


class ServiceStopping(DynvmError):
    """The process is stopping: the request was cancelled and rolled back; retry."""

    status = 503


class NameInUse(DynvmError):
    """A VM of that name already exists: 409, nothing created."""

    status = 409


class ProvisionFailed(DynvmError):
    """Every VM of the request failed (allornone=false): 502, XenServer could not build them."""

    status = 502


class AllOrNoneFailed(DynvmError):
    """allornone=true and some VM failed: everything was released; 499."""

    status = 499


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
