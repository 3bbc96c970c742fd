"""What the maintenance runner needs from the hypervisor side, as plain records."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class HostState:
    uuid: str
    name: str
    enabled: bool
    live: bool  # host_metrics.live and XAPI answering for it
    memory_free: int
    memory_total: int
    is_master: bool
    boot_time: str = ""  # other_config:boot_time, stamped by xapi at every start; "" unknown


@dataclass(frozen=True)
class VmState:
    uuid: str
    name: str
    host: str  # uuid of the member it runs on
    power_state: str
    memory: int  # bytes it needs on a host (static max + overhead)
    blocker: str  # why it cannot be live-migrated, "" when it can
    other_config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HaState:
    enabled: bool
    heartbeat_srs: list[str]  # SR uuids
    configuration: dict[str, str]  # e.g. {"timeout": "180"}
    failures_to_tolerate: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "heartbeat_srs": list(self.heartbeat_srs),
                "configuration": dict(self.configuration),
                "failures_to_tolerate": self.failures_to_tolerate}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HaState:
        return cls(bool(d.get("enabled")), list(d.get("heartbeat_srs", [])),
                   dict(d.get("configuration", {})), int(d.get("failures_to_tolerate", 0)))


@dataclass(frozen=True)
class PoolState:
    hosts: list[HostState]
    vms: list[VmState]  # running guests (no templates, no control domains)
    ha: HaState


class MaintenancePort(Protocol):
    """The XenAPI operations of a rolling reboot on one pool."""

    def state(self) -> PoolState: ...
    def hosts(self) -> list[HostState]:
        """The member hosts alone: what a wait on a reboot or a master change reads."""
    def storage_shared(self, sr_name: str) -> bool:
        """Whether disks on the SR(s) named `sr_name` can follow a VM to any member host."""
    def disable_ha(self) -> None: ...
    def enable_ha(self, heartbeat_srs: list[str], configuration: dict[str, str],
                  failures_to_tolerate: int) -> None: ...
    def disable_host(self, host_uuid: str) -> None: ...
    def enable_host(self, host_uuid: str) -> None: ...
    def designate_master(self, host_uuid: str) -> None: ...
    def migrate(self, vm_uuid: str, host_uuid: str) -> bool:
        """Live-migrate and wait for it to finish; False if the VM was gone meanwhile."""
    def reboot(self, host_uuid: str) -> None: ...
    def host_back(self, host_uuid: str, booted_before: str = "") -> bool:
        """The host answers again after a reboot (metrics live, XAPI answering).

        With `booted_before` (its boot_time before the reboot), only once it
        has booted since: a short reboot may never be seen down.
        """
