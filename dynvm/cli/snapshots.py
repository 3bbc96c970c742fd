"""`dynvm snapshot NAME` / `dynvm revert NAME [SNAPSHOT]`: disk-only snapshots of
one of my VMs (destroyed with the VM when it is released or expires)."""

from __future__ import annotations

import click

from dynvm.cli.client import _client, _run


@click.command("snapshot")
@click.argument("name")
@click.option("--as", "label", metavar="SNAPSHOT",
              help="The snapshot's name (default: the VM's name and the time).")
@click.pass_context
def snapshot(ctx: click.Context, name: str, label: str | None) -> None:
    """Take a disk-only snapshot of my VM NAME."""
    def body() -> None:
        snap = _client(ctx).snapshot(name, label)
        click.echo(f"{snap['vm']}: snapshot {snap['name']} taken")
    _run(body)


@click.command("revert")
@click.argument("name")
@click.argument("snapshot_name", metavar="[SNAPSHOT]", required=False)
@click.pass_context
def revert(ctx: click.Context, name: str, snapshot_name: str | None) -> None:
    """Revert my VM NAME to SNAPSHOT (default: its newest); a running VM restarts."""
    def body() -> None:
        snap = _client(ctx).revert(name, snapshot_name)
        click.echo(f"{snap['vm']}: reverted to snapshot {snap['name']}")
    _run(body)
