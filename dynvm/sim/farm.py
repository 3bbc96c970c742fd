"""The Farm facade: simulated pools, one XAPI listener per host, a control
endpoint, and the fault switches tests use.

    with Farm.generate(pools=1, hosts=4, speed=500).start() as farm:
        session = XenAPI.Session(farm.pools[0].master.url)

Over 400 lines because it is the one facade tests and benches drive:
builders, start/stop, lookups, fault switches and host power, each a thin
call into the modules that do the work.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import control, events, rawimport, vmruntime
from .db import NULL, Database, Tables
from .dispatch import Dispatcher, resolve
from .faults import FailRule, Faults, Hold, UnknownName
from .guestsshd import GuestPorts
from .oscatalog import OS_CATALOG
from .scheduler import Scheduler
from .server import RPC_PATHS, Listener, close_all
from .sessions import Sessions
from .tasks import Tasks
from .timing import Timing

__all__ = ["Farm", "SimHost", "SimPool", "Timing"]

REBOOT_CHECK_SECS = 0.25  # how often a rebooting host checks whether its time is up


@dataclass(eq=False)
class SimHost:
    name_label: str
    uuid: str
    ref: str
    pool: SimPool
    scheme: str = "http"
    bind: str = "127.0.0.1"
    port: int = 0
    listener: Listener | None = field(default=None, repr=False)
    unreachable: bool = False
    down: bool = False  # rebooting or shut down: not serving, not a placement target
    auto_enable: bool = True  # host.disable(auto_enable=False): still disabled after reboot

    @property
    def online(self) -> bool:
        return not self.down

    @property
    def _connect_host(self) -> str:
        return "127.0.0.1" if self.bind in ("", "0.0.0.0") else self.bind

    @property
    def address(self) -> str:
        """`127.0.0.1:PORT`: what HOST_IS_SLAVE names, so `http://<address>` reaches it."""
        return f"{self._connect_host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}"

    @property
    def is_master(self) -> bool:
        return self.pool.master is self


class SimPool:
    """One pool: its database, sessions, tasks and per-VM runtime state."""

    def __init__(self, farm: Farm, name: str, tables: Tables) -> None:
        self.farm = farm
        self.name = name
        self.db = Database(tables)
        self.hosts: list[SimHost] = []
        self._by_ref: dict[str, SimHost] = {}
        self.sessions = Sessions(self)
        self.tasks = Tasks(self)
        self.event_registrations = events.Registrations()
        self.runtime: vmruntime.VmRuntime | None = None

    def add_host(self, host: SimHost) -> None:
        self.hosts.append(host)
        self._by_ref[host.ref] = host

    def host_by_ref(self, ref: str) -> SimHost | None:
        return self._by_ref.get(ref)

    @property
    def master(self) -> SimHost:
        pools = self.db.tables["pool"]
        ref = next(iter(pools.values()))["master"] if pools else NULL
        return self._by_ref.get(ref) or self.hosts[0]

    def __repr__(self) -> str:
        return f"SimPool({self.name!r}, hosts={[h.name_label for h in self.hosts]})"


def _pool_name(tables: Tables, fallback: str) -> str:
    for rec in tables.get("pool", {}).values():
        if rec.get("name_label"):
            return str(rec["name_label"])
    return fallback


class Farm:
    """Simulated XenServer pools speaking XAPI over HTTP(S) on loopback."""

    def __init__(self, pools: list[tuple[str, Tables]], *, timing: Timing | None = None,
                 speed: float | None = None, https: bool = False, bind: str = "127.0.0.1",
                 port_base: int = 0, user: str = "root", password: str = "xenroot",
                 guest_ssh_port: int | None = None, storage_name: str = "Local storage",
                 guest_logins: dict[str, str] | None = None) -> None:
        self.timing = copy.deepcopy(timing) if timing is not None else Timing()
        if speed is not None:
            self.timing.speed = float(speed)
        self.https = https
        self.bind = bind
        self.port_base = port_base
        self.user = user
        self.password = password
        self.guest_ssh_port = guest_ssh_port
        self.guest_logins = guest_logins  # user -> password guests accept over SSH
        self.storage_name = storage_name
        self.faults = Faults()
        self.dispatcher = Dispatcher(self)
        self.scheduler: Scheduler | None = None
        self.guest_ports: GuestPorts | None = None
        self.ca_file: str | None = None
        self._key_file: str | None = None
        self._tmpdir: str | None = None
        self._control: Listener | None = None
        self._local_sockets: list[Listener] = []
        self._started = False
        self._lock = threading.Lock()
        self.pools: list[SimPool] = []
        self.hosts: list[SimHost] = []
        scheme = "https" if https else "http"
        for name, tables in pools:
            pool = SimPool(self, name, tables)
            for ref, rec in tables["host"].items():
                pool.add_host(SimHost(rec["name_label"], rec["uuid"], ref, pool, scheme, bind))
            if not pool.hosts:
                raise ValueError(f"pool {name!r} has no host")
            self.pools.append(pool)
            self.hosts.extend(pool.hosts)
        for pool in self.pools:
            pool.runtime = vmruntime.VmRuntime(pool)

    # ------------------------------------------------------------ builders
    @classmethod
    def generate(cls, pools: int = 1, hosts: int = 4, vms_per_host: int = 0, *,
                 timing: Timing | None = None, speed: float | None = None, https: bool = False,
                 bind: str = "127.0.0.1", port_base: int = 0, user: str = "root",
                 password: str = "xenroot", seed: int = 0, guest_ssh_port: int | None = None,
                 storage_name: str = "Local storage",
                 guest_logins: dict[str, str] | None = None,
                 guest_storage: str = "local", host_cpus: int = 48) -> Farm:
        """`guest_storage="shared"` puts the generated guests' disks on a shared
        SR, so that they can live-migrate (XAPI refuses it for local disks), and
        points the INI it announces (`ini_sections`) at that SR too.
        `host_cpus` sizes every host (a big `vms_per_host` needs more to leave room)."""
        from .farmgen import SHARED_SR, generate_pool

        tables = [
            (f"pool{i + 1}", generate_pool(f"pool{i + 1}", hosts, vms_per_host, pool_index=i,
                                           seed=seed, storage_name=storage_name,
                                           guest_storage=guest_storage, host_cpus=host_cpus))
            for i in range(pools)
        ]
        return cls(tables, timing=timing, speed=speed, https=https, bind=bind,
                   port_base=port_base, user=user, password=password,
                   guest_ssh_port=guest_ssh_port,
                   storage_name=SHARED_SR if guest_storage == "shared" else storage_name,
                   guest_logins=guest_logins)

    @classmethod
    def from_db(cls, paths: list[str], **kwargs: Any) -> Farm:
        """One pool per state.db / XenAdmin database dump."""
        from .dbload import load_state_db

        kwargs.pop("seed", None)
        kwargs.pop("pools", None)
        kwargs.pop("hosts", None)
        kwargs.pop("vms_per_host", None)
        loaded = []
        for i, path in enumerate(paths):
            tables = load_state_db(path)
            loaded.append((_pool_name(tables, Path(path).stem or f"pool{i + 1}"), tables))
        return cls(loaded, **kwargs)

    # ----------------------------------------------------------- lifecycle
    def start(self) -> Farm:
        with self._lock:
            if self._started:
                return self
            self._started = True
        self.scheduler = Scheduler()
        if self.guest_ssh_port is not None:
            self.guest_ports = GuestPorts(self.guest_ssh_port, self.guest_logins)
            for pool in self.pools:
                vmruntime.runtime(pool).open_existing_ports(self.guest_ports)
        ssl_ctx = None
        if self.https:
            from .tls import make_self_signed, server_context

            self._tmpdir = tempfile.mkdtemp(prefix="dynvm-sim-tls-")
            self.ca_file, self._key_file = make_self_signed(self._tmpdir)
            ssl_ctx = server_context(self.ca_file, self._key_file)
        try:
            for k, host in enumerate(self.hosts):
                port = self.port_base + k if self.port_base else 0
                host.listener = Listener(self.bind, port, self._rpc_handler(host), ssl_ctx,
                                         name=host.name_label,
                                         on_put=self._put_handler(host))
                host.listener.open()
                host.port = host.listener.port
            for pool in self.pools:
                with pool.db.lock:
                    for host in pool.hosts:
                        pool.db.modify("host", host.ref, {"address": host.address})
                        _stamp_start(pool.db, host.ref)
            cport = self.port_base + len(self.hosts) if self.port_base else 0
            self._control = Listener(self.bind, cport,
                                     lambda m, p, b: control.handle(self, m, p, b),
                                     name="control")
            self._control.open()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        listeners = [h.listener for h in self.hosts if h.listener is not None]
        if self._control is not None:
            listeners.append(self._control)
        close_all(listeners + self._local_sockets)
        self._local_sockets = []
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None
        if self.guest_ports is not None:
            self.guest_ports.stop()
            self.guest_ports = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        self._started = False

    def __enter__(self) -> Farm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_local_socket(self, path: str, host: SimHost | None = None) -> None:
        """Answer XML-RPC on a Unix socket at `path` too, as xapi does in dom0
        (/var/lib/xcp/xapi) for tools that run there; a login over it needs no
        password. The socket is `host`'s (the first pool's master by default)."""
        target = host or self.pools[0].master
        listener = Listener("", 0, self._rpc_handler(target, local=True),
                            name=f"{target.name_label} local", unix_path=path)
        listener.open()
        self._local_sockets.append(listener)

    def _rpc_handler(self, host: SimHost, local: bool = False):  # Listener callback
        dispatcher = self.dispatcher

        def on_request(method: str, path: str, body: bytes) -> tuple[int, bytes, str] | None:
            if method != "POST":
                return 405, b"", "text/plain"
            if path.split("?", 1)[0] not in RPC_PATHS:
                return 404, b"", "text/plain"
            out = dispatcher.handle(host, body, local)
            if out is None:
                return None
            return 200, out, "text/xml"

        return on_request

    def _put_handler(self, host: SimHost):  # Listener callback
        return lambda put: rawimport.handle(self, host, put)

    # -------------------------------------------------------------- lookup
    @property
    def control_url(self) -> str:
        if self._control is None:
            raise RuntimeError("the farm is not started")
        host = "127.0.0.1" if self.bind in ("", "0.0.0.0") else self.bind
        return f"http://{host}:{self._control.port}"

    def host(self, name: str) -> SimHost:
        for h in self.hosts:
            if h.name_label == name:
                return h
        raise UnknownName(f"no host named {name!r}")

    def pool(self, name: str) -> SimPool:
        for p in self.pools:
            if p.name == name:
                return p
        raise UnknownName(f"no pool named {name!r}")

    def ini_sections(self, first: int = 1, storage_name: str | None = None) -> str:
        """`[xenhostN]` sections (one per pool master) that point dynvm at this farm."""
        out: list[str] = []
        for i, pool in enumerate(self.pools):
            master = pool.master
            name = master.url  # explicit scheme: a bare host means https to dynvm
            lines = [f"[xenhost{first + i}]", f"host.name={name}", f"host.user={self.user}",
                     f"host.password={self.password}",
                     f"host.storage.name={storage_name or self.storage_name}"]
            if self.https and self.ca_file:
                lines.append(f"host.tls.ca={self.ca_file}")
            templates = {r["name_label"] for r in pool.db.tables["VM"].values()
                         if r.get("is_a_template")}
            for key, os_ in OS_CATALOG.items():
                if os_.template_name in templates:
                    lines.append(f"{key}.template={os_.template_name}")
            out.append("\n".join(lines) + "\n")
        return "\n".join(out)

    # -------------------------------------------------------------- faults
    def set_unreachable(self, host: str, on: bool = True) -> None:
        h = self.host(host)
        h.unreachable = on
        if h.listener is None:
            return
        if on:
            h.listener.close()
        elif not h.down:
            h.listener.open()

    def set_slow(self, host: str, seconds: float) -> None:
        self.host(host)
        if seconds > 0:
            self.faults.slow[host] = float(seconds)
        else:
            self.faults.slow.pop(host, None)

    def fail_next(self, method: str, count: int, code: str, params: list[str] | None = None,
                  host: str | None = None) -> None:
        if host is not None:
            self.host(host)
        name = method[6:] if method.startswith("Async.") else method
        res = resolve(name)
        self.faults.add_rule(FailRule(res.key if res else name, int(count), code,
                                      list(params or []), host))

    def hold(self, method: str) -> Hold:
        """Every call of `method` (any wire spelling, Async too) waits until the hold
        returned is released (or `clear_faults`)."""
        name = method[6:] if method.startswith("Async.") else method
        res = resolve(name)
        hold = Hold(res.key if res else name)
        self.faults.add_hold(hold)
        return hold

    def exhaust_dhcp(self, pool: str | None = None, on: bool = True) -> None:
        names = [self.pool(pool).name] if pool else [p.name for p in self.pools]
        for n in names:
            if on:
                self.faults.dhcp_exhausted.add(n)
            else:
                self.faults.dhcp_exhausted.discard(n)

    def invalidate_sessions(self) -> None:
        for pool in self.pools:
            pool.sessions.invalidate_all()

    def clear_faults(self) -> None:
        """Every fault off: failing calls, holds, slowness, DHCP exhaustion and unreachable
        hosts (a host rebooting or shut down stays so: that is no fault)."""
        for pool in self.pools:
            for h in pool.hosts:
                if h.unreachable:
                    self.set_unreachable(h.name_label, False)
        self.faults.clear_rules()
        self.faults.slow.clear()
        self.faults.dhcp_exhausted.clear()

    def call_counts(self) -> dict[str, dict[str, int]]:
        return self.faults.counts()

    def reset_call_counts(self) -> None:
        self.faults.reset_counts()

    # ------------------------------------------------------- host power
    def reboot_host(self, host: SimHost) -> None:
        """Take the host's listener down now and bring it back after the reboot time."""
        started = time.monotonic()

        def schedule_bring_up() -> None:
            # Only once the listener is closed: a reboot shorter than the close
            # delay must not reopen it first and then see it closed for good.
            # The reboot time is read again at each check, so a change made
            # through the control endpoint applies to reboots under way too.
            scheduler = self.scheduler
            if scheduler is None:
                return
            left = self.timing.scaled(self.timing.host_reboot_secs) - (
                time.monotonic() - started)
            if left <= 0:
                self._bring_up(host)
            else:
                scheduler.call_later(min(left, REBOOT_CHECK_SECS), schedule_bring_up)

        self._take_down(host, schedule_bring_up)

    def power_off_host(self, host: SimHost) -> None:
        self._take_down(host)

    def _take_down(self, host: SimHost, then: Callable[[], None] | None = None) -> None:
        """Mark the host down and close its listener shortly, then call `then`."""
        host.down = True
        was_master = host.is_master
        listener = host.listener

        def close() -> None:
            if listener is not None:
                listener.close()
            if then is not None:
                then()

        # The delay lets the reply to host.reboot leave before the connection drops.
        threading.Timer(0.1, close).start()
        host.pool.sessions.drop_local(host.ref)
        if was_master:
            host.pool.sessions.invalidate_all()

    def _bring_up(self, host: SimHost) -> None:
        if not self._started:
            return
        db = host.pool.db
        with db.lock:
            rec = db.find("host", host.ref)
            if rec is not None:
                if host.auto_enable:
                    db.modify("host", host.ref, {"enabled": True})
                _stamp_start(db, host.ref)
                if db.find("host_metrics", rec.get("metrics", NULL)) is not None:
                    db.modify("host_metrics", rec["metrics"], {"live": True})
        host.down = False
        if host.listener is not None and not host.unreachable:
            host.listener.open()



def _stamp_start(db: Database, host_ref: str) -> None:
    """What xapi writes on every start (dbsync): when the host booted and its agent started.

    A client that must know whether a host really rebooted compares
    `other_config:boot_time`, which a short reboot between two polls of
    `host_metrics.live` would hide.
    """
    now = f"{time.time():.6f}"
    other = dict(db.get("host", host_ref).get("other_config") or {})
    other.update(boot_time=now, agent_start_time=now)
    db.modify("host", host_ref, {"other_config": other})
