"""dynvm configuration: the seed's INI format, validated, with hot reload.

CONTRACT (implementation pending): the dataclasses below are what every other
layer reads; `load_config` parses and validates a file into them;
`ConfigWatcher` re-reads the file when it changes and keeps the last good one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WINDOWS_DEFAULTS = (12, 6, 71)  # vcpus, memory GiB, disk GiB for win* OS keys
OTHER_DEFAULTS = (8, 4, 35)


class ConfigError(Exception):
    """The file does not parse or validate; the message says where and why."""


@dataclass(frozen=True)
class OsSpec:
    key: str  # e.g. "centos", "windows"
    template: str  # exact template name_label
    vcpus: int
    memory_gib: int
    disk_gib: int

    @property
    def is_windows(self) -> bool:
        return self.key.startswith("win")


@dataclass(frozen=True)
class HostConfig:
    ref: int  # N of [xenhostN]
    name: str  # host.name as written: "10.1.2.3", "host:port" or a URL
    url: str  # normalised XAPI URL, "https://10.1.2.3" or "http://127.0.0.1:9001"
    user: str
    password: str
    storage_name: str
    labels: frozenset[str] = frozenset()
    network_id: str | None = None  # PIF device (e.g. "eth1") whose network VMs join
    vms_max: dict[str, int] = field(default_factory=dict)  # host.vms.max.<os>
    os: dict[str, OsSpec] = field(default_factory=dict)  # OSes this host can serve
    verify_tls: bool = True  # host.tls.verify
    ca_file: str | None = None  # host.tls.ca
    connect_timeout: float = 5.0  # host.timeout.connect.secs
    call_timeout: float = 60.0  # host.timeout.call.secs


@dataclass(frozen=True)
class CouchbaseConfig:
    server: str  # "127.0.0.1" or a couchbase:// connection string
    bucket: str
    username: str
    password: str
    scope: str = "_default"
    collection: str = "_default"


@dataclass(frozen=True)
class StoreConfig:
    backend: str = "sqlite"  # sqlite | couchbase
    sqlite_path: str = ".dynvm/dynvm.sqlite"
    outbox_path: str = ".dynvm/outbox.sqlite"
    couchbase: CouchbaseConfig | None = None


@dataclass(frozen=True)
class PoolConfig:
    """[pool <os>]: warm VMs kept ready for one OS."""

    os: str
    ready: int
    labels: frozenset[str] = frozenset()
    ttl_minutes: int = 240


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
    source: str | None = None  # file it came from
