"""What the core needs from outside, with no XenAPI or SSH library in sight.

`dynvm.xen` implements `XenPool` for one `[xenhostN]` section (a standalone
host or a pool master); `dynvm.guest` implements `GuestProbe` (can a new
guest be reached?) and `GuestAccess` (give a booted guest its owner's keys).
The core only sees these plain views and calls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from dynvm.config import GuestLogin

# other_config tags dynvm puts on every VM it creates.
TAG_OWNER = "dynvm_owner"
TAG_LEASE = "dynvm_lease"  # request id
TAG_CREATED = "dynvm_created"  # epoch seconds
TAG_EXPIRES = "dynvm_expires"  # epoch seconds
TAG_OS = "dynvm_os"
TAG_STATE = "dynvm_state"  # "provisioning" until complete, then "ready" / "active"
TAG_RESERVATION = "dynvm_reservation"  # the capacity reservation the VM was built under
# Which deployment (store) the VM belongs to: dynvm only ever acts on its own.
TAG_DEPLOYMENT = "dynvm_deployment"
TAG_BUILDER = "dynvm_builder"  # the instance that built it, judged by its heartbeat
# A long-lived VM of the fleet directory: its declared name. Such a VM has no lease
# (`dynvm_lease`), so reconciliation and expiry never take it for one of theirs.
TAG_FLEET = "dynvm_fleet"


class XenError(Exception):
    """A XenAPI call failed; `code` and `params` are XAPI's ErrorDescription."""

    def __init__(self, code: str, params: list[str] | None = None, message: str = "") -> None:
        self.code = code
        self.params = list(params or [])
        super().__init__(message or f"{code} {self.params}")


class HostUnreachable(XenError):
    """The pool cannot be reached (connect refused, timeout, TLS failure)."""

    def __init__(self, message: str) -> None:
        super().__init__("HOST_UNREACHABLE", [], message)


class HostCannotTake(XenError):
    """This member host cannot take the VM now; another member may well take it."""


class CloneFailed(HostCannotTake):
    """The template could not be cloned on this host; another host may well do it."""


class LinkLocalOnly(XenError):
    """The guest only got a 169.254.x.y address: its subnet has no free lease."""

    def __init__(self, ip: str) -> None:
        super().__init__("LINK_LOCAL_ONLY", [ip], f"guest kept link-local address {ip}")


class WaitTimeout(XenError):
    def __init__(self, what: str, secs: float) -> None:
        super().__init__("TIMEOUT", [what, str(secs)], f"timed out after {secs:.0f}s waiting for {what}")


@dataclass(frozen=True, slots=True)  # slots: a worker keeps one per VM of the farm
class VmView:
    ref: str
    uuid: str
    name_label: str
    name_description: str
    power_state: str  # Running | Halted | ...
    vcpus_max: int
    memory_static_max: int  # bytes
    resident_on: str  # member host uuid, "" when not running
    is_template: bool
    is_control_domain: bool
    other_config: Mapping[str, str]
    ips: tuple[str, ...]  # guest addresses, IPv4 first ("networkinfo")
    os_name: str = ""  # guest metrics os_version name, "" when unknown


@dataclass(frozen=True)
class HostView:
    uuid: str
    ref: str
    name_label: str
    address: str
    enabled: bool
    cpu_count: int
    memory_free: int  # bytes (host_metrics.memory_free)
    memory_total: int
    # SRs attached to this host, by name_label: (physical_size, physical_utilisation)
    srs: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    # PIF devices of this host (eth0, eth1, bond0...): what `networkid` may name
    pif_devices: frozenset[str] = frozenset()


@dataclass(frozen=True)
class HostLoad:
    """What the running VMs of one member host take, computed once per view."""

    vcpus: int  # Σ VCPUs_max
    shown: frozenset[str]  # their uuids and the reservation ids they were tagged with


@dataclass(frozen=True)
class PoolView:
    """A consistent snapshot of one [xenhostN] pool, as the inventory sees it."""

    host_ref: int
    hosts: tuple[HostView, ...]
    vms: Mapping[str, VmView]  # by uuid; excludes templates and control domains
    templates: Mapping[str, str]  # name_label -> VM ref
    age_secs: float  # how old the freshest data is
    # Running VMs by member host, built on first use. Shared (not copied) by
    # dataclasses.replace, so a view re-issued with a new age keeps it.
    _running: dict[str, list[VmView]] = field(default_factory=dict, compare=False, repr=False)
    _anywhere: list[frozenset[str]] = field(default_factory=list, compare=False, repr=False)
    _loads: dict[str, HostLoad] = field(default_factory=dict, compare=False, repr=False)

    def running_on(self, host_uuid: str) -> list[VmView]:
        """Running VMs of one member host (capacity asks this for every host, every request)."""
        index = self._running
        if not index:
            built: dict[str, list[VmView]] = {"": []}  # "" marks the index as built
            for v in self.vms.values():
                if v.power_state == "Running":
                    built.setdefault(v.resident_on, []).append(v)
            index.update(built)
        return index.get(host_uuid, [])

    def load_on(self, host_uuid: str) -> HostLoad:
        """The running VMs' load on one member host: every count of free room asks it,
        so it is summed once per view, not once per request."""
        load = self._loads.get(host_uuid)
        if load is None:
            running = self.running_on(host_uuid)
            shown = {v.uuid for v in running}
            shown.update(tag for v in running if (tag := v.other_config.get(TAG_RESERVATION)))
            load = HostLoad(sum(v.vcpus_max for v in running), frozenset(shown))
            self._loads[host_uuid] = load
        return load

    def running_anywhere(self) -> frozenset[str]:
        """Uuids of the VMs running on any member host (a migrated VM runs elsewhere)."""
        if not self._anywhere:
            self.running_on("")
            self._anywhere.append(frozenset(v.uuid for vs in self._running.values() for v in vs))
        return self._anywhere[0]


@dataclass(frozen=True)
class FirstBoot:
    """What a VM is told at its first boot (a NoCloud config drive), for cloud-init.

    Holds an owner's keys and cloud-config: never logged, never kept.
    """

    hostname: str
    user_data: str  # a complete `#cloud-config` document

    def __repr__(self) -> str:  # a log line or a traceback must not show the contents
        return f"FirstBoot(hostname={self.hostname!r}, user_data=<{len(self.user_data)} chars>)"


@dataclass(frozen=True)
class Outage:
    """A pool this process cannot read now: since when (epoch seconds), why, and the
    last inventory it read before, so an operator still sees what the pool held."""

    since: float
    detail: str
    last: PoolView | None


@dataclass(frozen=True)
class VmBuild:
    """Everything needed to build one VM on one member host."""

    name: str
    description: str
    template: str  # template name_label
    host_uuid: str  # member to start it on
    storage_name: str  # SR name_label for the disks spec
    vcpus: int | None  # None: keep the template's
    memory_bytes: int | None
    network_device: str | None  # PIF device whose network the VIF joins
    tags: Mapping[str, str]  # merged into other_config
    # Told "cloning", "provisioning", "starting" as the build reaches each step,
    # so a caller can show where a VM is; must not raise.
    on_step: Callable[[str], None] | None = field(default=None, compare=False)
    disk_bytes: int | None = None  # system disk at least this big (grown, never shrunk)
    first_boot: FirstBoot | None = None  # a config drive is attached before the first start


@dataclass(frozen=True)
class VmSnapshot:
    """A disk-only snapshot of a VM (XAPI VM.snapshot): its name, uuid and when taken."""

    name: str
    uuid: str
    taken: str  # ISO 8601, as XAPI reports snapshot_time


class XenPool(Protocol):
    """One [xenhostN]: a standalone host or a pool, seen through its master."""

    host_ref: int

    def view(self, max_age: float | None = None) -> PoolView:
        """Current inventory; raises HostUnreachable if it cannot be had."""

    def outage(self) -> Outage | None:
        """Since when and why the pool fails to answer, with the last inventory read
        before; None while it answers."""

    def build(self, spec: VmBuild, cancel: threading.Event | None = None) -> VmView:
        """Clone, describe, size, network, tag, provision and start the VM.

        On failure everything it created is destroyed before raising.
        """

    def wait_ready(self, vm_uuid: str, *, windows: bool, timeout: float,
                   cancel: threading.Event | None = None) -> str:
        """Wait for a usable IPv4; raises LinkLocalOnly or WaitTimeout."""

    def destroy(self, vm_uuid: str) -> bool:
        """Hard shutdown and destroy the VM with its VDIs; False if it was gone."""

    def update(self, vm_uuid: str, *, name: str | None = None,
               description: str | None = None,
               tags: Mapping[str, str] | None = None) -> None:
        """Rename / redescribe / retag a VM (warm-pool hand-out)."""

    def disk_sizes(self, vm_uuid: str) -> list[int]:
        """Size in bytes of each of the VM's disks (history's `disk`)."""

    def tagged_vms(self) -> list[VmView]:
        """Every VM (any power state) carrying dynvm tags, for reconciliation."""

    def exists(self, vm_uuid: str) -> bool:
        """Whether the pool's master knows the VM now: asked, never the inventory's copy,
        so False proves it gone. Raises (HostUnreachable, XenError) when it cannot tell."""

    def snapshot(self, vm_uuid: str, name: str) -> VmSnapshot:
        """Take a disk-only snapshot of the VM (destroyed with it by `destroy`)."""

    def snapshots(self, vm_uuid: str) -> list[VmSnapshot]:
        """The VM's snapshots, oldest first (asked, not the inventory's copy)."""

    def delete_snapshot(self, vm_uuid: str, name: str) -> VmSnapshot:
        """Destroy the VM's snapshot `name` with the disks only it uses.
        XenError("SNAPSHOT_NOT_FOUND") when it has no such snapshot."""

    def revert(self, vm_uuid: str, name: str | None) -> VmSnapshot:
        """Revert the VM to its snapshot `name` (None: the newest); the VM is left
        halted. XenError("SNAPSHOT_NOT_FOUND") when it has no such snapshot."""

    def close(self) -> None: ...


class LoginRefused(Exception):
    """The guest's sshd answered but refused the credentials: waiting will not help."""


class GuestProbe(Protocol):
    """`checkvms`: one attempt to reach a new guest, as the seed checked it.

    The core decides how long to wait and how often to ask again
    (`provisioning.wait_ssh`); the adapter only makes the attempt.
    """

    def attempt(self, ip: str, port: int, login: GuestLogin | None, timeout: float) -> None:
        """Log in over SSH with `login`, else accept a TCP connection on `port`.

        Returns once the guest answered. Raises LoginRefused on bad credentials,
        an OSError when the guest (or its sshd) is not there yet.
        """


class KeyInstallFailed(Exception):
    """The guest let us in but a step of the key install failed (the message says which)."""


class GuestAccess(Protocol):
    """A booted guest given what cloud-init gives a new one: the owner's keys and a
    hostname, over SSH with the template's credentials (a warm VM's first boot is gone).
    """

    def install(self, ip: str, port: int, login: GuestLogin, keys: Sequence[str],
                hostname: str, lock_password: bool, timeout: float) -> None:
        """Add `keys` to the login user's authorized keys, set the hostname and, with
        `lock_password`, lock that user's password.

        Raises LoginRefused (bad credentials), KeyInstallFailed (a step failed) or
        an OSError (the guest is not reachable). Never logs or raises a key.
        """
