"""`dynvm snapshots NAME [--delete SNAPSHOT]` / `dynvm snapshot NAME` /
`dynvm revert NAME [SNAPSHOT]`:
disk-only snapshots of one of my VMs (at most `vm.snapshots.max` each, destroyed with
the VM when it is released or expires)."""

from __future__ import annotations

import calendar
import time

import click

from dynvm.cli.client import client_for, run_body, terminal
from dynvm.cli.times import when


@click.command("snapshots")
@click.argument("name")
@click.option("--delete", "doomed", metavar="SNAPSHOT",
              help="Delete this snapshot (with its disks) instead of listing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def snapshots(ctx: click.Context, name: str, doomed: str | None, as_json: bool) -> None:
    """List my VM NAME's snapshots, oldest first (or delete one)."""
    def body() -> None:
        if doomed:
            gone = client_for(ctx).delete_snapshot(name, doomed)
            click.echo(f"{gone['vm']}: snapshot {gone['name']} deleted")
            return
        got = client_for(ctx).snapshots(name)
        if as_json:
            import json
            click.echo(json.dumps(got, indent=2, sort_keys=True))
            return
        if not got["snapshots"]:
            click.echo(f"{got['vm']}: no snapshot (at most {got['max']})")
            return
        from rich.table import Table
        table = Table(title=f"{got['vm']}: {len(got['snapshots'])} of at most {got['max']} "
                            f"snapshots", title_justify="left")
        for col in ("NAME", "TAKEN", "UUID"):
            table.add_column(col, overflow="fold")
        for s in got["snapshots"]:
            table.add_row(s["name"], taken_at(s["taken"]), s["uuid"])
        terminal().print(table)
    run_body(body)


def taken_at(stamp: str) -> str:
    """XAPI's `20261207T17:54:02Z` as `2026-12-07 17:54` (the stamp as is if not one)."""
    try:
        return when(calendar.timegm(time.strptime(stamp, "%Y%m%dT%H:%M:%SZ")))
    except ValueError:
        return stamp


@click.command("snapshot")
@click.argument("name")
@click.option("--as", "label", metavar="SNAPSHOT",
              help="The snapshot's name (default: the VM's name and the time).")
@click.pass_context
def snapshot(ctx: click.Context, name: str, label: str | None) -> None:
    """Take a disk-only snapshot of my VM NAME."""
    def body() -> None:
        snap = client_for(ctx).snapshot(name, label)
        click.echo(f"{snap['vm']}: snapshot {snap['name']} taken")
    run_body(body)


@click.command("revert")
@click.argument("name")
@click.argument("snapshot_name", metavar="[SNAPSHOT]", required=False)
@click.pass_context
def revert(ctx: click.Context, name: str, snapshot_name: str | None) -> None:
    """Revert my VM NAME to SNAPSHOT (default: its newest); a running VM restarts."""
    def body() -> None:
        snap = client_for(ctx).revert(name, snapshot_name)
        where = f", address {snap['ip']}" if snap.get("ip") else " (halted)"
        click.echo(f"{snap['vm']}: reverted to snapshot {snap['name']}{where}")
    run_body(body)
