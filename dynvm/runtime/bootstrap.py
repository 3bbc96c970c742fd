"""The composition root: dynvm built from its configuration, every layer wired here.

The one place that knows every layer: it opens the store, names the Xen pool
client, the SSH guest probe, the hypervisor side of maintenance and the metrics
hook, and hands them to the core as `Adapters` and constructor arguments, so
the core never imports the Xen layer (or XenAPI), paramiko or a store backend,
and nothing is rewired after construction. Every entry point starts here: the
gunicorn workers (`build_app`), the CLI's maintenance and token commands
(`build_service`, `open_tokens`) and `dynvm check-config` (`stored_identity`).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dynvm.config import Config, ConfigWatcher, HostConfig, StoreConfig, load_config
from dynvm.core.background import Timings
from dynvm.core.clock import SYSTEM, Clock
from dynvm.core.context import Adapters
from dynvm.core.ports import XenPool
from dynvm.core.reload_guard import lease_guard
from dynvm.core.services import Dynvm, TokenAdmin
from dynvm.core.store import Store, StoreError
from dynvm.core.templates import missing_templates
from dynvm.guest import SshAccess, SshProbe
from dynvm.runtime import events, threads
from dynvm.store.factory import open_backend, open_store, proposed_identity
from dynvm.store.static_pool import open_static_pools
from dynvm.xen import open_pool

if TYPE_CHECKING:
    from flask import Flask

    from dynvm.core.fleet.ports import FleetPort
    from dynvm.core.maintenance.ports import MaintenancePort

CONFIG_SETTLE_SECS = 2.0  # a changed INI file is read once unchanged for this long
# What `dynvm serve` without a configuration writes for its embedded farm.
EMBEDDED_INI = Path(".dynvm/dynvmservice.ini")


def config_file(given: str | None, *, embedded: bool = False) -> str:
    """The INI file to use: `given`, else $DYNVM_CONFIG (else, with `embedded`, the file
    of the embedded farm `dynvm serve` started without one); RuntimeError if none."""
    path = given or os.environ.get("DYNVM_CONFIG")
    if not path and embedded and EMBEDDED_INI.is_file():
        path = str(EMBEDDED_INI)
    if not path:
        raise RuntimeError("no configuration: pass a file or set DYNVM_CONFIG")
    return path


def xen_maintenance(pool: XenPool) -> MaintenancePort:
    """The hypervisor side of a rolling reboot for one pool client."""
    from dynvm.xen.maintenance import XenMaintenance  # only when maintenance is asked for
    from dynvm.xen.pool import XenPoolClient

    if not isinstance(pool, XenPoolClient):
        raise TypeError(f"maintenance needs a XenAPI pool, not {type(pool).__name__}")
    return XenMaintenance(pool)


def xen_fleet(pool: XenPool) -> FleetPort:
    """The fleet's power and placement calls for one pool client."""
    from dynvm.xen.fleet import XenFleet
    from dynvm.xen.pool import XenPoolClient

    if not isinstance(pool, XenPoolClient):
        raise TypeError(f"the fleet needs a XenAPI pool, not {type(pool).__name__}")
    return XenFleet(pool)


def adapters(cfg: Config, store: Store | None = None, clock: Clock = SYSTEM) -> Adapters:
    """Everything outside the core, as `cfg` names it (`store`: one already open); the
    pool clients wait on guests by `clock`, the core's."""
    return Adapters(store=store if store is not None else open_store(cfg.store),
                    pools=functools.partial(open_pool, clock=clock), guest=SshProbe(), identity=proposed_identity(cfg.store),
                    maintenance=xen_maintenance, static_pools=open_static_pools(cfg.store),
                    fleet=xen_fleet,
                    access=SshAccess(), waiting=threads.waiting)


def default_timings(cfg: Config) -> Timings:
    """Background timings from `[common] leader.ttl.secs`."""
    ttl = cfg.leader_ttl_secs
    return Timings(tick=min(1.0, ttl / 4), leader_ttl=ttl, heartbeat_ttl=2 * ttl,
                   reconcile_every=ttl, fleet_every=ttl)


def build_service(config_path: str | None = None, *, timings: Timings | None = None,
                  background: bool = True, clock: Clock = SYSTEM) -> Dynvm:
    """dynvm over the store and the Xen pools an INI file (or $DYNVM_CONFIG) names.

    `clock` is the core's time, the configuration watcher's too (tests hand in one
    they move themselves).
    """
    path = config_file(config_path)
    watcher = ConfigWatcher(path, settle_secs=CONFIG_SETTLE_SECS, clock=clock.monotonic)
    cfg = watcher.current()
    parts = adapters(cfg, clock=clock)
    watcher.guard = lease_guard(parts.store)

    def status() -> dict[str, Any]:
        return {"source": path, "generation": watcher.generation, "error": watcher.last_error}

    return Dynvm(watcher.current, parts, config_status=status,
                 timings=timings or default_timings(cfg), background=background,
                 on_event=events.count, clock=clock)


def build_app(config_path: str | None = None) -> Flask:
    """The HTTP app of one gunicorn worker, over dynvm built from the configuration.

    Called in each worker after the fork (no preload), so every worker opens
    its own store and Xen sessions; they are closed when the worker exits.
    """
    import atexit

    from dynvm.api import create_app

    service = build_service(config_path)
    atexit.register(service.close)
    return create_app(service)


def open_tokens(config_path: str | None) -> TokenAdmin:
    """Token administration over the configured store alone (no pools, no background),
    for the caller to close. ConfigError if the file is refused."""
    return TokenAdmin(open_backend(load_config(config_file(config_path, embedded=True)).store))


def stored_identity(cfg: StoreConfig) -> str:
    """The deployment identity the store holds, in words, only reading (`check-config`
    creates nothing): the one the first start will assign when there is none yet."""
    later = f"not assigned yet (the first start assigns {proposed_identity(cfg)})"
    if cfg.backend == "sqlite" and not os.path.exists(cfg.sqlite_path):
        return later
    try:
        store = open_backend(cfg)
        try:
            return store.documents.deployment_id(None) or later
        finally:
            store.close()
    except StoreError as exc:
        return f"unknown (the store cannot be read: {exc})"


def templates_missing(host: HostConfig) -> list[str]:
    """OS keys of `host` whose template its pool lacks, asked of the pool once
    (`check-config`); raises what reaching it raised (unreachable, refused, TLS)."""
    pool = open_pool(host)
    try:
        return missing_templates(host, pool.view())
    finally:
        pool.close()
