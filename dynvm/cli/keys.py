"""`dynvm keys add|list|remove` (an owner's SSH keys, put on every VM it gets) and
`dynvm ssh NAME` (a session to one of my VMs, with my key when it was given one).

Exit codes as the other client commands (`dynvm.cli.client`); `dynvm ssh`
ends with ssh's own.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shlex
import shutil
import sys
from pathlib import Path

import click

from dynvm.cli.client import client_for, run_body, terminal
from dynvm.cli.times import when as _when
from dynvm.client.http import ClientError

# ssh's own order of default identities.
IDENTITIES = ("id_ed25519", "id_ecdsa", "id_ed25519_sk", "id_ecdsa_sk", "id_rsa")


@click.group("keys")
def keys() -> None:
    """My SSH public keys: put on every VM I get (v1, and legacy requests with my token)."""


@keys.command("add")
@click.argument("files", nargs=-1, required=True, type=click.File("r"))
@click.pass_context
def add(ctx: click.Context, files: tuple) -> None:
    """Register the public keys in FILES (`~/.ssh/id_ed25519.pub`; `-` reads stdin)."""
    def body() -> int:
        client = client_for(ctx)
        for f in files:
            for line in f.read().splitlines():
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                key = client.add_key(line.strip())
                click.echo(f"{key['fingerprint']} {key['type']} {key['comment']}".rstrip())
        return 0
    run_body(body)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_keys(ctx: click.Context, as_json: bool) -> None:
    """My registered keys."""
    def body() -> int:
        found = client_for(ctx).keys()
        if as_json:
            import json
            click.echo(json.dumps(found, indent=2, sort_keys=True))
            return 0
        from rich.table import Table
        table = Table()
        for col in ("id", "fingerprint", "type", "comment", "added"):
            table.add_column(col)
        for k in found:
            table.add_row(k["id"], k["fingerprint"], k["type"], k["comment"], _when(k["added"]))
        terminal().print(table)
        return 0
    run_body(body)


@keys.command("remove")
@click.argument("ident")
@click.pass_context
def remove(ctx: click.Context, ident: str) -> None:
    """Forget the key IDENT (its id or its SHA256: fingerprint, as `dynvm keys list` shows)."""
    def body() -> int:
        ident_id = ident.removeprefix("SHA256:").replace("+", "-").replace("/", "_")
        key = client_for(ctx).remove_key(ident_id)
        click.echo(f"removed {key['fingerprint']}")
        return 0
    run_body(body)


def fingerprint_of(pub: Path) -> str | None:
    """The SHA256 fingerprint of a `.pub` file's first key, None if it holds none."""
    try:
        parts = pub.read_text().split()
        blob = base64.b64decode(parts[1], validate=True)
    except (OSError, IndexError, ValueError):
        return None
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def identity_for(fingerprints: list[str], ssh_dir: Path) -> Path | None:
    """The private key in `ssh_dir` whose public half the VM was given, if any."""
    wanted = set(fingerprints)
    candidates = [ssh_dir / name for name in IDENTITIES]
    candidates += sorted(p.with_suffix("") for p in ssh_dir.glob("*.pub")
                         if p.with_suffix("") not in candidates)
    for private in candidates:
        pub = private.with_name(private.name + ".pub")
        if private.is_file() and pub.is_file() and fingerprint_of(pub) in wanted:
            return private
    return None


def ssh_command(vm: dict, identity: Path | None) -> list[str]:
    """The ssh command line for `vm` (as `GET /api/v1/vms/NAME` describes it)."""
    if not vm.get("ip"):
        raise ClientError(f"VM {vm['name']} has no address yet ({vm.get('state')})")
    target = f"{vm['ssh_user']}@{vm['ip']}" if vm.get("ssh_user") else vm["ip"]
    # Disposable VMs: an address comes back with a new host key, so none is remembered.
    args = ["ssh", "-p", str(vm.get("ssh_port") or 22), "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
    if identity is not None:
        args += ["-i", str(identity), "-o", "IdentitiesOnly=yes"]
    return [*args, target]


@click.command("ssh")
@click.argument("name")
@click.option("--print", "print_only", is_flag=True, help="Print the command, do not run it.")
@click.option("-i", "--identity", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Private key to use (default: mine the VM was given, from ~/.ssh).")
@click.pass_context
def ssh(ctx: click.Context, name: str, print_only: bool, identity: Path | None) -> None:
    """Open an SSH session to my VM NAME as its template's user (vm.<linux|windows>.username)."""
    def body() -> int:
        vm = client_for(ctx).vm(name)
        chosen = identity or identity_for(list(vm.get("ssh_keys") or []),
                                          Path("~/.ssh").expanduser())
        cmd = ssh_command(vm, chosen)
        if print_only:
            click.echo(shlex.join(cmd))
            return 0
        if shutil.which("ssh") is None:
            raise ClientError("no ssh command found; `dynvm ssh --print` shows what to run")
        sys.stdout.flush()
        os.execvp("ssh", cmd)
        return 0  # not reached
    run_body(body)
