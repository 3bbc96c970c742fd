"""What the legacy use cases take and give back: a getservers request and its result,
the /showall rows and the available count."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    wait_secs: int | None = None  # wait=: how long it may wait in the queue for room


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
