"""The `dynvm` command: serve the API, run a simulated farm, check a config file."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from dynvm.cli.configfile import ConfigProblem, config_option, config_path, given
from dynvm.cli.embedded import EMBEDDED_HOSTS, EMBEDDED_POOLS, embedded_farm

STATE_DIR = Path(".dynvm")
WORKER_TIMEOUT_SECS = 900  # /getservers waits for VMs to boot and get an address


class _Main(click.Group):
    """The root command: an error nobody foresaw is one line and exit code 1, never a
    traceback (DYNVM_DEBUG=1 shows it)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if os.environ.get("DYNVM_DEBUG"):
                raise
            click.echo(f"dynvm: {type(exc).__name__}: {exc} (DYNVM_DEBUG=1 shows where)",
                       err=True)
            sys.exit(1)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dynvm")
@config_option
def main() -> None:
    """dynvm: disposable VMs on demand from a XenServer / XCP-ng farm.

    \b
    Exit codes: 0 done; 1 failed; 2 bad usage or configuration (no URL, token
    or INI file); 3 network error; 4 the server refused (4xx); 5 the server
    failed (5xx).
    """


# ---------------------------------------------------------------- serve


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              envvar="DYNVM_CONFIG", show_envvar=True,
              help="INI file; none at all starts an embedded simulated farm and SQLite.")
@click.pass_context
@click.option("--bind", default="127.0.0.1:5000", show_default=True, help="HOST:PORT to listen on.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64),
              help="gunicorn worker processes.")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256),
              help="Requests worked on at once per worker (one waiting for VMs lends its place).")
@click.option("--sim-speed", default=10.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Speed factor of the embedded simulated farm.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Log lines as text or as one JSON object each.")
def serve(ctx: click.Context, config_path: str | None, bind: str, workers: int, threads: int,
          sim_speed: float, log_format: str) -> None:
    """Serve the HTTP API under gunicorn."""
    config_path = config_path or given(ctx)  # `dynvm --config F serve` too
    from dynvm.config import ConfigError, load_config
    from dynvm.private_files import SERVE_UMASK
    from dynvm.runtime.logs import ACCESS_FORMAT, dict_config

    os.umask(SERVE_UMASK)  # inherited by the workers and the embedded farm

    with contextlib.ExitStack() as stack:
        # Entered first, so left last: the master ends once everything below is stopped
        # and removed, without the interpreter's teardown (dynvm.runtime.serving).
        stack.push(_ending_master(os.getpid()))
        embedded = not config_path
        if embedded:
            config_path = stack.enter_context(embedded_farm(STATE_DIR, sim_speed))
        assert config_path is not None
        try:
            config = load_config(config_path)
        except ConfigError as exc:
            raise ConfigProblem(str(exc)) from None
        from dynvm.runtime import serving

        # Only the master creates and removes it (workers unwind this stack as they exit).
        metrics_dir = serving.make_metrics_dir()
        stack.callback(serving.MasterOnly(shutil.rmtree, metrics_dir, True))
        # Set before any worker imports prometheus_client, so all of them share it.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        # One inventory of each pool for every worker (dynvm.xen.shared_inventory).
        from dynvm.runtime.inventory_process import running

        stack.enter_context(running())
        pools = len(config.hosts)
        where = (f"{pools} pool(s) of an embedded simulated farm ({EMBEDDED_POOLS} pools of "
                 f"{EMBEDDED_HOSTS} hosts, guests on shared storage: VMs can live-migrate)"
                 if embedded else f"{pools} pool(s) ([xenhostN] sections) of {config_path}")
        options = {
            "bind": bind,
            "workers": workers,
            # gthread, whose requests waiting for VMs lend their thread (runtime/threads.py)
            "worker_class": "dynvm.runtime.threads.DynvmWorker",
            "threads": threads,
            "timeout": WORKER_TIMEOUT_SECS,
            "graceful_timeout": serving.GRACEFUL_TIMEOUT_SECS,
            "keepalive": 5,
            # gunicorn's own 414 is an HTML page; let lines up to its maximum reach
            # the app, which answers one line past dynvm.api.MAX_REQUEST_TARGET.
            "limit_request_line": 8190,
            "preload_app": False,
            "accesslog": "-",
            "logger_class": "dynvm.api.v1.redact.AccessLogger",  # no token= in access lines
            "errorlog": "-",
            "loglevel": "info",
            "logconfig_dict": dict_config(log_format),
            "access_log_format": ACCESS_FORMAT,
            "proc_name": "dynvm",
            "post_fork": serving.post_fork,
            "post_worker_init": serving.post_worker_init,
            "worker_int": serving.worker_int,
            "worker_exit": serving.worker_exit,
            "child_exit": serving.child_exit,
            "when_ready": lambda server: _banner(server, where),
            # gunicorn >= 25 would open a control socket under $HOME; dynvm does not use it.
            "control_socket_disable": True,
        }
        serving.preload_libraries()
        _gunicorn_app(os.path.abspath(config_path), options).run()


def _ending_master(master: int) -> Any:
    """An exit callback that ends the master at once (workers unwind this stack too)."""
    def end(*exc_info: Any) -> None:
        from dynvm.runtime import serving

        code = serving.exit_code(exc_info[1])
        if os.getpid() == master and code is not None:
            serving.exit_now(code)

    return end


def _banner(server: Any, where: str) -> None:
    """Printed once gunicorn listens, with the address really bound (--bind :0 works)."""
    url = str(server.LISTENERS[0]) if server.LISTENERS else "127.0.0.1:5000"
    url = url.removeprefix("http://")
    if url.startswith("0.0.0.0:"):
        url = "127.0.0.1:" + url.split(":", 1)[1]
    click.echo(f"dynvm serving on http://{url} with {where}")
    click.echo("try:")
    for path in ("getservers/demo?os=centos&count=3", "showall", "getavailablecount/centos",
                 "releaseservers/demo?count=3", "health"):
        click.echo(f"  curl '{url}/{path}'")
    sys.stdout.flush()


def _gunicorn_app(config_path: str, options: dict[str, Any]) -> Any:
    """gunicorn's BaseApplication, imported here so `dynvm --help` stays light."""
    from gunicorn.app.base import BaseApplication

    class App(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                if key in self.cfg.settings:  # older gunicorns lack some settings
                    self.cfg.set(key, value)

        def load(self) -> Any:
            # Runs in each worker after the fork (no preload): no thread or socket crosses it.
            from dynvm.runtime.bootstrap import build_app
            from dynvm.runtime.serving import end_without_teardown

            end_without_teardown()  # before build_app's exit handler, so it runs after it

            # Logging is set up by gunicorn from `logconfig_dict` (dynvm.runtime.logs).
            return build_app(config_path)

        def run(self) -> None:
            from dynvm.runtime.reloads import WarmReloadArbiter

            try:
                WarmReloadArbiter(self).run()
            except RuntimeError as exc:  # as gunicorn's own run: a master that cannot start
                raise click.ClickException(str(exc)) from None

    return App()


# ---------------------------------------------------------------- sim

from dynvm.sim.ssh_options import guest_ssh_options  # noqa: E402


@main.command()
@click.option("--hosts", default=4, show_default=True, type=click.IntRange(1, 512),
              help="Hosts per pool.")
@click.option("--pools", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--vms-per-host", default=0, show_default=True, type=click.IntRange(0, 1000),
              help="VMs already running on each host.")
@click.option("--host-cpus", default=48, show_default=True, type=click.IntRange(1, 4096),
              help="CPUs of each generated host (many VMs per host need more to leave room).")
@click.option("--from-db", "from_db", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Load a pool from a XAPI state database (repeatable: one pool each).")
@click.option("--bind", default="127.0.0.1", show_default=True)
@click.option("--port-base", default=0, show_default=True, type=click.IntRange(0, 65535),
              help="First port; 0 picks free ports.")
@click.option("--speed", default=1.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Divide every modelled delay (clone, boot, DHCP) by this.")
@click.option("--https", is_flag=True, help="Serve XAPI over TLS with a self-signed certificate.")
@click.option("--shared-sr", is_flag=True,
              help="Put guests' disks (and those dynvm builds) on a shared SR, so that VMs "
                   "can live-migrate and `dynvm maintenance reboot` can empty a host.")
@click.option("--local-socket", default=None, type=click.Path(dir_okay=False),
              help="Also serve the first pool's master on this Unix socket, as xapi serves "
                   "/var/lib/xcp/xapi in dom0 (root logs in without a password).")
@guest_ssh_options
def sim(hosts: int, pools: int, vms_per_host: int, host_cpus: int, from_db: tuple[str, ...],
        bind: str, port_base: int, speed: float, https: bool, shared_sr: bool,
        local_socket: str | None,
        guest_ssh_port: int | None, guest_logins: dict[str, str] | None) -> None:
    """Run a simulated XenServer farm in the foreground."""
    from dynvm.sim.runner import run_sim

    run_sim(hosts=hosts, pools=pools, vms_per_host=vms_per_host, from_db=list(from_db),
            bind=bind, port_base=port_base, speed=speed, https=https,
            guest_ssh_port=guest_ssh_port, guest_logins=guest_logins,
            local_socket=local_socket, host_cpus=host_cpus, shared_sr=shared_sr)


# ---------------------------------------------------------------- check-config


@main.command("check-config")
@click.argument("path", type=click.Path(dir_okay=False), required=False)
@config_option
@click.option("--accept-removal", is_flag=True,
              help="Let the running service take this file although it drops hosts that "
                   "still hold leases (the confirmation covers this exact content).")
@click.option("--offline", is_flag=True,
              help="Check the file only; do not ask the hosts for their templates.")
@click.pass_context
def check_config(ctx: click.Context, path: str | None, accept_removal: bool,
                 offline: bool) -> None:
    """Validate a configuration file (PATH, else the one every command uses), ask each host
    for its templates, and summarise it."""
    from dynvm.config import ConfigError, confirm_removal, load_config, load_fleet
    from dynvm.runtime.bootstrap import stored_identity

    if path is None:
        path = config_path(ctx)
    try:
        config = load_config(path)
        fleet = load_fleet(config)
        if not offline:
            _check_templates(config)
    except ConfigError as exc:
        raise ConfigProblem(str(exc)) from None
    click.echo(f"{path}: OK")
    if accept_removal:
        digest = confirm_removal(path)
        click.echo(f"removal of hosts accepted for this content (sha256 {digest[:12]}…)")
    store = config.store
    where = store.sqlite_path if store.backend == "sqlite" else (
        store.couchbase.server if store.couchbase else "?")
    click.echo(f"store: {store.backend} ({where})")
    click.echo(f"deployment: {stored_identity(store)}")
    click.echo(f"leases: {config.lease_minutes(None)} min when a request names none "
               f"(vm.default.expiry.minutes={config.default_expiry_minutes}, capped by "
               f"vm.expiry.minutes={config.expiry_minutes_max}); at most "
               f"{config.expiry_minutes_max} min when one asks for more")
    click.echo(f"network: waits up to {config.network_timeout_secs} s for a VM's address")
    for ref, host in sorted(config.hosts.items()):
        oses = ", ".join(f"{k}={s.template!r}" for k, s in sorted(host.os.items())) or "no OS"
        labels = f" labels={','.join(sorted(host.labels))}" if host.labels else ""
        click.echo(f"xenhost{ref}: {host.url}{labels}: {oses}")
    for os_key, pool in sorted(config.pools.items()):
        size = (f"sized from demand, {pool.min_ready} to {pool.max_ready}" if pool.auto
                else str(pool.ready))
        click.echo(f"pool {os_key}: {size} ready")
    _echo_seed_keys(config)
    if fleet is not None:
        _echo_fleet(fleet)
    for warning in config.warnings + (fleet.warnings if fleet else ()):
        click.echo(f"warning: {warning}", err=True)


def _echo_fleet(fleet: Any) -> None:
    """The fleet directory's VMs by folder, and its anti-affinity groups."""
    click.echo(f"fleet: {len(fleet.vms)} VM(s) in {fleet.path}")
    folders: dict[str, list[str]] = {}
    for vm in fleet.vms.values():
        folders.setdefault(vm.folder, []).append(vm.name)
    for folder, names in sorted(folders.items()):
        click.echo(f"  {folder}: {', '.join(names)}")
    for group, vms in fleet.groups().items():
        click.echo(f"  group {group}: {', '.join(v.name for v in vms)} (never on one member host)")


def _check_templates(config: Any) -> None:
    """Ask every host (at once) for the templates the file names; ConfigError for those
    missing. A host that cannot be asked is a warning: the file may well be right."""
    import logging
    from concurrent.futures import ThreadPoolExecutor

    from dynvm.config import ConfigError
    from dynvm.core.templates import missing_note
    from dynvm.runtime.bootstrap import templates_missing

    def ask(host: Any) -> list[str] | Exception:
        try:
            return templates_missing(host)
        except Exception as exc:  # unreachable, refused login, TLS: said, not fatal
            return exc

    hosts = list(config.hosts.values())
    if not hosts:
        return
    xen_log = logging.getLogger("dynvm.xen")  # a host that fails is said once, below
    level = xen_log.level
    xen_log.setLevel(logging.CRITICAL)
    try:
        with ThreadPoolExecutor(max_workers=min(len(hosts), 16)) as workers:
            answers = list(workers.map(ask, hosts))
    finally:
        xen_log.setLevel(level)
    problems = []
    for host, answer in zip(hosts, answers, strict=True):
        if isinstance(answer, Exception):
            click.echo(f"warning: xenhost{host.ref} ({host.url}) cannot be asked "
                       f"({answer}): its templates were not checked", err=True)
            continue
        problems += [missing_note(config, host.ref, os_key) for os_key in answer]
    if problems:
        raise ConfigError(problems, config.source or "?")


def _echo_seed_keys(config: Any) -> None:
    """What the seed's own keys do here (never their secrets)."""
    logins = [f"{family} as {login.username}" for family, login in
              (("linux", config.linux_login), ("windows", config.windows_login)) if login]
    click.echo("checkvms: " + (f"SSH login ({', '.join(logins)})" if logins
                               else f"TCP connect to port {config.ssh_port}"))
    static = config.store.static_pool
    if static is not None:
        click.echo(f"pools=: static pools in Couchbase {static.server} bucket {static.bucket}")


# ---------------------------------------------------------------- hosts, maintenance, fleet

from dynvm.cli.fleet import fleet  # noqa: E402 - registered after main
from dynvm.cli.maintenance import hosts, maintenance  # noqa: E402

main.add_command(hosts)
main.add_command(maintenance)
main.add_command(fleet)


def _register_v1_commands() -> None:
    """Token administration and the v1 client commands live in modules of their own."""
    from dynvm.cli import client as client_cli
    from dynvm.cli import inspect as inspect_cli
    from dynvm.cli import keys as keys_cli
    from dynvm.cli import snapshots as snapshot_cli
    from dynvm.cli import tokens as token_cli

    main.add_command(token_cli.token)
    client_cli.add_options(main, [inspect_cli.show, inspect_cli.summary,
                                 snapshot_cli.snapshot, snapshot_cli.revert,
                                 snapshot_cli.snapshots])
    main.add_command(keys_cli.keys)
    main.add_command(keys_cli.ssh)


_register_v1_commands()

if __name__ == "__main__":
    main()
