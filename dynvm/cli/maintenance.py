"""`dynvm hosts` and `dynvm maintenance`: drain hosts, plan and run a rolling reboot."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from dynvm.cli.configfile import config_option, fail, service

if TYPE_CHECKING:
    from dynvm.core.services import Dynvm


# ---------------------------------------------------------------- hosts


@click.group(invoke_without_command=True)
@config_option
@click.option("--json", "as_json", is_flag=True, help="Answer JSON.")
@click.pass_context
def hosts(ctx: click.Context, as_json: bool) -> None:
    """List hosts with their state; `drain N` / `undrain N` take a pool in or out of placement."""
    if ctx.invoked_subcommand is not None:
        return
    with service(ctx) as svc:
        report = svc.maintenance.hosts_report()
        fleet = svc.fleet.status()
    with_fleet(report, fleet)
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("xenhost", "host", "enabled", "maintenance", "drained", "VMs", "free GiB",
                  "fleet VMs")
    for pool in report:
        drained = f"yes ({pool['drained_by']})" if pool["drained"] else "no"
        if pool["error"]:
            table.add_row(str(pool["ref"]), pool["name"], "?", "?", drained, "?",
                          f"unreachable: {pool['error']}")
        for m in pool["members"]:
            maint = "left by a stopped run" if m.get("left_by_run") else \
                "yes" if m["in_maintenance"] else "no"
            table.add_row(str(pool["ref"]), m["name"], "yes" if m["enabled"] else "no",
                          maint, drained, str(m["vms"]),
                          f"{m['memory_free_gib']:.1f} / {m['memory_total_gib']:.1f}",
                          ", ".join(m["fleet"]) or "-")
    Console().print(table)
    if fleet["configured"]:
        from dynvm.cli.fleet import fleet_table

        if fleet["error"]:
            click.echo(f"fleet: {fleet['error']}", err=True)
        else:
            Console().print(fleet_table(fleet))
    for pool in report:  # whole lines, never wrapped into a table cell
        if pool["hosts_left"]:
            names = ", ".join(f"{h['host']} ({h['uuid']})" for h in pool["hosts_left"])
            run = pool["left_by"]
            click.echo(f"xenhost{pool['ref']}: {names} left out of service by rolling reboot "
                       f"{run['run']} ({run['state']}): {run['finish']}")


def with_fleet(report: list[dict[str, Any]], fleet: dict[str, Any]) -> None:
    """Each member host says which fleet VMs run on it, each pool how its fleet VMs stand."""
    for pool in report:
        where = f"xenhost{pool['ref']}"
        pool["fleet"] = [vm for vm in fleet["vms"]
                         if vm["runs"].split("/")[0] == where
                         or vm["declared"].split("/")[0] == where]
        for m in pool["members"]:
            m["fleet"] = [vm["name"] for vm in pool["fleet"] if vm["runs"] == f"{where}/{m['name']}"]


def _drain(ctx: click.Context, ref: int, on: bool) -> None:
    from dynvm.core.errors import DynvmError

    with service(ctx) as svc:
        try:
            out = svc.maintenance.set_drain(ref, on, by="dynvm hosts")
        except DynvmError as exc:
            fail(exc.message.removeprefix("Error: "), 2)
    click.echo(f"xenhost{ref}: {'drained' if out['drained'] else 'in placement'}")
    if out["note"]:
        click.echo(out["note"], err=True)


@hosts.command()
@click.argument("ref", type=click.IntRange(min=0))
@config_option
@click.pass_context
def drain(ctx: click.Context, ref: int) -> None:
    """Place no new VM on [xenhostREF] (every worker and instance; kept in the store)."""
    _drain(ctx, ref, True)


@hosts.command()
@click.argument("ref", type=click.IntRange(min=0))
@config_option
@click.pass_context
def undrain(ctx: click.Context, ref: int) -> None:
    """Put [xenhostREF] back in placement."""
    _drain(ctx, ref, False)


# ---------------------------------------------------------------- maintenance


@click.group()
@config_option
def maintenance() -> None:
    """Rolling reboot of a pool with no VM stopped; its status."""


@maintenance.command()
@config_option
@click.argument("ref", type=click.IntRange(min=0))
@click.option("--exec", "execute", is_flag=True,
              help="Act. Without it, print the plan and change nothing.")
@click.option("--strategy", type=click.Choice(["migrate", "drain", "auto"]), default="auto",
              show_default=True,
              help="dynvm's own VMs: migrate them, wait for their leases, or migrate only "
                   "those that outlive the drain timeout.")
@click.option("--parallel", type=click.IntRange(1, 64), default=5, show_default=True,
              help="Live migrations at once.")
@click.option("--drain-timeout", type=click.FloatRange(min=0), default=600.0,
              show_default=True, help="Seconds to wait for leases to end.")
@click.option("--reboot-timeout", type=click.FloatRange(min=1), default=1800.0,
              show_default=True, help="Seconds a host may take to come back.")
@click.option("--lock-ttl", type=click.FloatRange(min=1), default=30.0, show_default=True,
              help="Seconds after which another process may resume a run whose process died.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.pass_context
def reboot(ctx: click.Context, ref: int, execute: bool, strategy: str, parallel: int,
           drain_timeout: float, reboot_timeout: float, lock_ttl: float, as_json: bool) -> None:
    """Reboot every host of [xenhostREF], pool master first, migrating VMs off each by a plan."""
    import logging

    from dynvm.core.errors import DynvmError, MaintenanceFailed, MaintenanceRefused
    from dynvm.core.services import Options, describe_plan

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="[%(asctime)s] %(name)s: %(message)s")
    opts = Options(execute=execute, strategy=strategy, parallel=parallel,
                   drain_timeout=drain_timeout, reboot_timeout=reboot_timeout,
                   lock_ttl=lock_ttl)
    with service(ctx) as svc:
        try:
            if not execute:
                plan = svc.maintenance.rolling_reboot(ref, opts)
            else:
                plan = _with_progress(svc, ref, opts)
        except MaintenanceRefused as exc:
            fail(f"refused: {exc}", 2)
        except MaintenanceFailed as exc:
            fail(f"stopped: {exc}\nthe status (dynvm maintenance status) says where; "
                  f"run the same command again to resume", 1)
        except DynvmError as exc:
            fail(exc.message.removeprefix("Error: "), 2)
    if as_json:
        click.echo(json.dumps(plan.to_dict(), indent=2, sort_keys=True))
    elif not execute:
        for line in describe_plan(plan):
            click.echo(line)
        if plan.ok:
            click.echo(f"dry run: nothing changed; add --exec to reboot xenhost{ref}")
    if not plan.ok:
        sys.exit(2)


def _with_progress(svc: Dynvm, ref: int, opts: Any) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  transient=False) as progress:
        hosts_task = progress.add_task("hosts", total=None)
        moves_task = progress.add_task("migrations", total=None)

        def show(status: dict[str, Any]) -> None:
            order = status.get("order") or []
            progress.update(hosts_task, total=len(order) or None,
                            completed=len(status.get("hosts_done") or []),
                            description=f"host {status.get('host_name') or '-'}: "
                                        f"{status.get('step')}")
            progress.update(moves_task, total=status.get("migrations_total") or None,
                            completed=status.get("migrations_done") or 0)

        return svc.maintenance.rolling_reboot(ref, opts, show)


@maintenance.command("status")
@config_option
@click.pass_context
def status_cmd(ctx: click.Context) -> None:
    """Where each pool's last rolling reboot is (also on /health and /maintenance)."""
    with service(ctx) as svc:
        click.echo(json.dumps(svc.maintenance.status(), indent=2, sort_keys=True,
                              default=str))
