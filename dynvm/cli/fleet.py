"""`dynvm fleet`: plan, apply and look at the long-lived VMs of the fleet directory."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from dynvm.cli.configfile import config_option, fail, service

if TYPE_CHECKING:
    from dynvm.core.services import Dynvm

prune_option = click.option("--prune", is_flag=True,
                            help="Destroy fleet VMs whose file was removed (only those dynvm "
                                 "built for the fleet).")
restart_option = click.option("--restart", is_flag=True,
                              help="Restart running VMs whose file asks for another size.")
json_option = click.option("--json", "as_json", is_flag=True, help="Answer JSON.")


@click.group()
@config_option
def fleet() -> None:
    """Long-lived VMs declared in files ([fleet] path=): plan, apply, status."""


def _echo_plan(plan: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(plan.to_dict(), indent=2, sort_keys=True))
    else:
        for line in plan.describe():
            click.echo(line)


@fleet.command()
@config_option
@prune_option
@restart_option
@json_option
@click.pass_context
def plan(ctx: click.Context, prune: bool, restart: bool, as_json: bool) -> None:
    """What apply would change (create, start, stop, migrate, resize, destroy); changes
    nothing."""
    from dynvm.core.errors import FleetRefused

    with service(ctx) as svc:
        try:
            made = svc.fleet.plan(prune=prune, restart=restart)
        except FleetRefused as exc:
            fail(f"refused: {exc}", 2)
    _echo_plan(made, as_json)
    sys.exit(0 if made.ok else 2)


@fleet.command("apply")
@config_option
@click.option("--exec", "execute", is_flag=True,
              help="Act. Without it, print the plan and change nothing.")
@prune_option
@restart_option
@json_option
@click.pass_context
def apply_cmd(ctx: click.Context, execute: bool, prune: bool, restart: bool,
              as_json: bool) -> None:
    """Make the farm match the fleet directory, with progress; refused whole (nothing done)
    when any VM cannot be placed."""
    from dynvm.core.errors import FleetRefused

    with service(ctx) as svc:
        try:
            if not execute:
                made = svc.fleet.plan(prune=prune, restart=restart)
                _echo_plan(made, as_json)
                if made.ok:
                    click.echo("dry run: nothing changed; add --exec to apply it")
                sys.exit(0 if made.ok else 2)
            applied = _with_progress(svc, prune, restart)
        except FleetRefused as exc:
            if exc.plan is not None and not as_json:
                _echo_plan(exc.plan, False)
            fail(f"refused, nothing done: {exc}", 2)
    if as_json:
        click.echo(json.dumps({**applied.plan.to_dict(), "done": applied.done,
                               "failed": applied.failed}, indent=2, sort_keys=True))
    else:
        for line in applied.plan.notes:
            click.echo(f"noted: {line}")
        for line in applied.done:
            click.echo(f"done: {line}")
        for line in applied.failed:
            click.echo(f"failed: {line}", err=True)
        if not applied.plan.actions:
            click.echo("nothing to do: the farm matches the fleet directory")
    sys.exit(1 if applied.failed else 0)


def _with_progress(svc: Dynvm, prune: bool, restart: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  transient=False) as progress:
        task = progress.add_task("fleet", total=None)

        def show(status: dict[str, Any]) -> None:
            progress.update(task, total=status["total"] or None,
                            completed=status["done"] + status["failed"],
                            description=status["doing"] or "fleet applied")

        return svc.fleet.apply(prune=prune, restart=restart, on_progress=show)


@fleet.command()
@config_option
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Every fleet VM: declared where, running where, and how it drifted."""
    with service(ctx) as svc:
        report = svc.fleet.status()
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    if report["error"]:
        fail(report["error"], 2)
    if not report["configured"]:
        fail("no fleet: the configuration has no [fleet] path", 2)
    from rich.console import Console

    Console().print(fleet_table(report))


def fleet_table(report: dict[str, Any]) -> Any:
    """The fleet's VMs as a table (also under `dynvm hosts`)."""
    from rich.table import Table

    table = Table("fleet VM", "declared", "runs on", "power", "state", "why",
                  title=f"fleet: {report['declared']} declared, {report['running']} running, "
                        f"{report['drifted']} not as declared")
    for vm in report["vms"]:
        table.add_row(vm["name"], vm["declared"] or "(file removed)", vm["runs"] or "-",
                      vm["power"] or "-", vm["state"], vm["why"])
    return table
