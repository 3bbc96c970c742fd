"""`dynvm token create|list|revoke`: API tokens, kept (hashed) in the service's store."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from dynvm.cli.configfile import ConfigProblem, config_option, config_path

if TYPE_CHECKING:
    from dynvm.core.services import TokenAdmin

@contextmanager
def _tokens(ctx: click.Context) -> Iterator[TokenAdmin]:
    """The service's tokens, from the configuration `dynvm.cli.configfile` finds."""
    from dynvm.config import ConfigError
    from dynvm.runtime.bootstrap import open_tokens

    try:
        admin = open_tokens(config_path(ctx))
    except ConfigError as exc:
        raise ConfigProblem(str(exc)) from None
    try:
        yield admin
    finally:
        admin.close()


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "never"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


@click.group("token")
@config_option
def token() -> None:
    """API tokens for /api/v1 (and the legacy routes when [auth] asks for them)."""


@token.command("create")
@click.option("--owner", required=True, help="Who the token's VMs belong to (e.g. team-a).")
@click.option("--admin", is_flag=True, help="May see, release and extend every VM.")
@click.option("--expires", help="Lifetime, e.g. 90d, 12h, 2w (default: never).")
@config_option
@click.pass_context
def create(ctx: click.Context, owner: str, admin: bool, expires: str | None) -> None:
    """Make a token; it is printed once and only its hash is kept."""
    from dynvm.core.services import TokenAdmin

    try:
        lifetime = TokenAdmin.lifetime(expires) if expires else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--expires") from None
    with _tokens(ctx) as tokens:
        try:
            secret, record = tokens.create(owner, admin=admin, expires_in=lifetime)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--owner") from None
    click.echo(f"token {record.id} for {owner}{' (admin)' if admin else ''}, "
               f"expires {_when(record.expires)}; shown once, keep it safe:", err=True)
    click.echo(secret)


@token.command("list")
@config_option
@click.pass_context
def list_tokens(ctx: click.Context) -> None:
    """Tokens (never their secrets)."""
    with _tokens(ctx) as tokens:
        rows = tokens.all()
    now = time.time()
    for t in rows:
        state = "revoked" if t.revoked else "expired" if not t.valid(now) else "valid"
        click.echo(f"{t.id}  {t.owner:<20} {'admin' if t.admin else 'user ':<5}  {state:<7}  "
                   f"created {_when(t.created)}  expires {_when(t.expires)}")
    if not rows:
        click.echo("no tokens", err=True)


@token.command("revoke")
@click.argument("token_id")
@config_option
@click.pass_context
def revoke(ctx: click.Context, token_id: str) -> None:
    """Revoke a token by its id (from `token list`)."""
    with _tokens(ctx) as tokens:
        ok = tokens.revoke(token_id)
    if not ok:
        click.echo(f"no token {token_id}", err=True)
        sys.exit(1)
    click.echo(f"revoked {token_id}")
