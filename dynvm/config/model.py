"""The configuration as every other layer reads it: frozen dataclasses, no parsing."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

RESERVATION_SLACK_SECS = 900.0  # clone and boot time on top of the network waits
SNAPSHOTS_MAX = 30  # XenServer refuses a longer snapshot chain (VHD's limit)

Lines = Mapping[tuple[str, str | None], int]  # (section, key or None) -> line in the file


def location(source: str, lines: Lines, section: str | None, key: str | None) -> tuple[int, str]:
    """(line, "file:line: [section] key: "): how every report about the file begins."""
    line = lines.get((section, key)) if section is not None else None
    if line is None and section is not None:
        line = lines.get((section, None))
    loc = f"{source}:{line}" if line else source
    if section is None:
        return line or 0, f"{loc}: "
    return line or 0, f"{loc}: [{section}] {key + ': ' if key else ''}"


def is_windows(os_key: str) -> bool:
    """The seed's rule: an OS key starting with "win" is Windows (sizes, guest login)."""
    return os_key.startswith("win")


@dataclass(frozen=True)
class OsSpec:
    key: str  # e.g. "centos", "windows"
    template: str  # exact template name_label
    vcpus: int
    memory_gib: int
    disk_gib: int
    # <os>.cloudinit: the template runs cloud-init (cloudbase-init on Windows), so a
    # config drive attached before the first boot gives the VM its keys and hostname.
    cloudinit: bool = False

    @property
    def is_windows(self) -> bool:
        return is_windows(self.key)


@dataclass(frozen=True)
class HostConfig:
    ref: int  # N of [xenhostN]
    name: str  # host.name as written: "10.1.2.3", "host:port" or a URL
    url: str  # normalised XAPI URL, "https://10.1.2.3" or "http://127.0.0.1:9001"
    user: str
    password: str = field(repr=False)
    storage_name: str
    labels: frozenset[str] = frozenset()
    network_id: str | None = None  # PIF device (e.g. "eth1") whose network VMs join
    template_networks: dict[str, str] = field(default_factory=dict)  # <os>.template.network
    vms_max: dict[str, int] = field(default_factory=dict)  # host.vms.max.<os>
    os: dict[str, OsSpec] = field(default_factory=dict)  # OSes this host can serve
    verify_tls: bool = True  # host.tls.verify
    drain: bool = False  # host.drain: no new VMs here; running ones live out their leases
    ca_file: str | None = None  # host.tls.ca
    connect_timeout: float = 5.0  # host.timeout.connect.secs
    call_timeout: float = 60.0  # host.timeout.call.secs


@dataclass(frozen=True)
class CouchbaseConfig:
    server: str  # "127.0.0.1" or a couchbase:// connection string
    bucket: str
    username: str
    password: str = field(repr=False)
    scope: str = "_default"
    collection: str = "_default"


@dataclass(frozen=True)
class StaticPoolConfig:
    """The seed's `static.*` keys: the bucket of the static server pools (`pools=`)."""

    server: str
    bucket: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class GuestLogin:
    """`vm.<linux|windows>.username/password`: how `checkvms` logs in to a new VM."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class StoreConfig:
    backend: str = "sqlite"  # sqlite | couchbase
    sqlite_path: str = ".dynvm/dynvm.sqlite"
    outbox_path: str = ".dynvm/outbox.sqlite"
    couchbase: CouchbaseConfig | None = None
    static_pool: StaticPoolConfig | None = None  # [couchbase] static.*


@dataclass(frozen=True)
class PoolConfig:
    """[pool <os>]: warm VMs kept ready for one OS."""

    os: str
    ready: int  # with `auto`, the size until demand is known (its `min`)
    labels: frozenset[str] = frozenset()
    ttl_minutes: int = 240
    auto: bool = False  # ready=auto: sized from demand (`dynvm.core.demand`), within min..max
    min_ready: int = 0
    max_ready: int = 10


@dataclass(frozen=True)
class AuthConfig:
    """[auth]: who needs a token where, and how failed attempts are slowed down."""

    legacy: str = "open"  # open | mutating | all: legacy routes that need a token
    fail_limit: int = 20  # failed authentications per client address per window
    fail_window_secs: int = 60


@dataclass(frozen=True)
class QuotaLimits:
    """[quota <owner>] (or [quota] for everyone else); None means no limit."""

    vms: int | None = None
    vcpus: int | None = None
    memory_gib: int | None = None
    priority_max: int = 0  # priority.max: the highest queue priority its requests may ask


@dataclass(frozen=True)
class QueueConfig:
    """[queue]: how long a request with no room may wait for it."""

    max_wait_minutes: int = 60  # max_wait_minutes: a request's wait when it names none
    max_wait_minutes_cap: int = 1440  # max_wait_minutes.max: the longest any may ask
    legacy_wait_secs: int = 0  # legacy.wait.secs: a getservers without wait= (0: refused)

    def wait_minutes(self, asked: int | None) -> int:
        return min(asked or self.max_wait_minutes, self.max_wait_minutes_cap)

    def legacy_wait(self, asked: int | None) -> int:
        """Seconds a legacy getservers may wait in the queue (`wait=`, else the default),
        never longer than any request may wait."""
        return min(self.legacy_wait_secs if asked is None else asked,
                   self.max_wait_minutes_cap * 60)


@dataclass(frozen=True)
class FleetVm:
    """One long-lived VM of the fleet directory: `<folder>/<name>.ini`, one [vm] section.

    `host_ref` is the folder's [xenhostN] (None for `any/`: dynvm places it);
    `member` (`host=`) pins it to one member host of that pool.
    """

    name: str
    host_ref: int | None
    os: str
    vcpus: int
    memory_gib: int
    disk_gib: int
    member: str | None = None
    labels: frozenset[str] = frozenset()
    owner: str = ""
    pools: tuple[str, ...] = ()  # static pools its document goes to (pools=)
    autostart: bool = True  # started again whenever it is found halted
    group: str | None = None  # anti-affinity: never on one member with another of the group
    recreate: bool = False  # the background leader builds it again when it is missing
    source: str = ""  # the file, for reports

    @property
    def folder(self) -> str:
        return "any" if self.host_ref is None else f"xenhost{self.host_ref}"

    @property
    def declared(self) -> str:
        """Where the file says it runs: "xenhost1", "xenhost1/<member>" or "any"."""
        return self.folder + (f"/{self.member}" if self.member else "")


@dataclass(frozen=True)
class Fleet:
    """The fleet directory, validated: every declared VM by name."""

    path: str
    vms: dict[str, FleetVm] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def groups(self) -> dict[str, list[FleetVm]]:
        """Anti-affinity groups: group name -> its VMs, by name."""
        out: dict[str, list[FleetVm]] = {}
        for vm in sorted(self.vms.values(), key=lambda v: v.name):
            if vm.group:
                out.setdefault(vm.group, []).append(vm)
        return out


@dataclass(frozen=True)
class Config:
    hosts: dict[int, HostConfig]
    store: StoreConfig = field(default_factory=StoreConfig)
    pools: dict[str, PoolConfig] = field(default_factory=dict)
    expiry_minutes_max: int = 720  # vm.expiry.minutes
    default_expiry_minutes: int = 1440  # before the cap
    network_timeout_secs: int = 400  # vm.network.timeout.secs
    per_host_parallel: int = 4  # vm.parallel.per.host
    ssh_port: int = 22  # vm.ssh.port, for checkvms
    snapshots_max: int = 3  # vm.snapshots.max: snapshots one VM may have (0: none)
    inventory_cache: bool = True  # inventory.cache: false reads XenServer on every request
    leader_ttl_secs: float = 10.0  # background.leader.ttl.secs: takeover time if the leader dies
    linux_login: GuestLogin | None = None  # vm.linux.username/password
    windows_login: GuestLogin | None = None  # vm.windows.username/password
    # vm.password.login: false turns password logins off on VMs given an owner's keys.
    password_login: bool = True
    source: str | None = None  # file it came from
    warnings: tuple[str, ...] = ()  # accepted but suspicious, logged at WARNING
    auth: AuthConfig = field(default_factory=AuthConfig)
    quotas: dict[str, QuotaLimits] = field(default_factory=dict)  # owner -> limits
    default_quota: QuotaLimits = field(default_factory=QuotaLimits)
    fleet_path: str | None = None  # [fleet] path: the fleet directory (absolute)
    queue: QueueConfig = field(default_factory=QueueConfig)
    lines: Lines = field(default_factory=dict, compare=False, repr=False)  # for reports

    def where(self, section: str, key: str | None = None) -> str:
        """"file:line: [section] key: ", to begin a report about that place of the file."""
        return location(self.source or "<string>", self.lines, section, key)[1]

    def quota_for(self, owner: str) -> QuotaLimits:
        return self.quotas.get(owner, self.default_quota)

    def guest_login(self, os_key: str) -> GuestLogin | None:
        """The SSH login of a guest of this OS (the seed: windows, else linux)."""
        return self.windows_login if is_windows(os_key) else self.linux_login

    @functools.cached_property
    def served_os(self) -> frozenset[str]:
        """Every OS key at least one host has a template for (asked twice by every count;
        a configuration is never changed, a reload makes a new one)."""
        return frozenset(k for h in self.hosts.values() for k in h.os)

    def os_spec(self, os_key: str) -> OsSpec | None:
        """An OS's sizes as the first host (lowest N) serving it sets them; None if none does."""
        return next((self.hosts[ref].os[os_key] for ref in sorted(self.hosts)
                     if os_key in self.hosts[ref].os), None)

    def lease_minutes(self, asked: int | None) -> int:
        """A new lease's length: what was asked (or the default), never over the cap."""
        return min(asked or self.default_expiry_minutes, self.expiry_minutes_max)

    @property
    def reservation_ttl_secs(self) -> float:
        """How long a reservation, name claim or cancel mark outlives a builder that died
        (three network waits and the slack), so a crash never holds room for good."""
        return self.network_timeout_secs * 3 + RESERVATION_SLACK_SECS
