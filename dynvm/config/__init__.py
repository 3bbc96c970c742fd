"""dynvm configuration: the seed's INI format, validated, with hot reload.

The dataclasses of `model` are what every other layer reads. `load_config` /
`parse_config` (`ini`, with `sections` and `hosts`) turn an INI file into them
and refuse a file with *all* its problems listed at once (an operator fixing a
farm file at night should not have to play whack-a-mole). `ConfigWatcher`
(`watch`) re-reads the file when it changes and keeps the last good
configuration in force when a new one is broken. `load_fleet` (`fleet`) reads
the fleet directory `[fleet] path=` names. The names below are the
package's public ones: import them from `dynvm.config`.
"""

from dynvm.config.fleet import load_fleet
from dynvm.config.hosts import normalise_host_url
from dynvm.config.ini import ConfigError, load_config, parse_config
from dynvm.config.model import (
    AuthConfig,
    Config,
    CouchbaseConfig,
    Fleet,
    FleetVm,
    GuestLogin,
    HostConfig,
    OsSpec,
    PoolConfig,
    QueueConfig,
    QuotaLimits,
    StaticPoolConfig,
    StoreConfig,
)
from dynvm.config.watch import ConfigWatcher, confirm_removal, removals

__all__ = [
    "AuthConfig",
    "Config",
    "ConfigError",
    "ConfigWatcher",
    "CouchbaseConfig",
    "Fleet",
    "FleetVm",
    "GuestLogin",
    "HostConfig",
    "OsSpec",
    "PoolConfig",
    "QueueConfig",
    "QuotaLimits",
    "StaticPoolConfig",
    "StoreConfig",
    "confirm_removal",
    "load_config",
    "load_fleet",
    "normalise_host_url",
    "parse_config",
    "removals",
]
