"""`dynvm token create|list|revoke`: API tokens, kept (hashed) in the service's store."""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click

EMBEDDED_INI = Path(".dynvm/dynvmservice.ini")


def _store(config_path: str | None):  # -> Store
    from dynvm.config import ConfigError, load_config
    from dynvm.store.factory import open_backend

    path = config_path or os.environ.get("DYNVM_CONFIG")
    if not path and EMBEDDED_INI.is_file():
        path = str(EMBEDDED_INI)  # the embedded farm of `dynvm serve` without a config
    if not path:
        raise click.UsageError("no configuration: pass --config or set DYNVM_CONFIG")
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return open_backend(cfg.store)


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "never"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


config_option = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                             help="Service INI file (default: $DYNVM_CONFIG).")


@click.group("token")
def token() -> None:
    """API tokens for /api/v1 (and the legacy routes when [auth] asks for them)."""


@token.command("create")
@click.option("--owner", required=True, help="Who the token's VMs belong to (e.g. team-a).")
@click.option("--admin", is_flag=True, help="May see, release and extend every VM.")
@click.option("--expires", help="Lifetime, e.g. 90d, 12h, 2w (default: never).")
@config_option
def create(owner: str, admin: bool, expires: str | None, config_path: str | None) -> None:
    """Make a token; it is printed once and only its hash is kept."""
    from dynvm.core import tokens

    try:
        lifetime = tokens.parse_duration(expires) if expires else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--expires") from None
    store = _store(config_path)
    try:
        secret, record = tokens.create(store, owner, admin=admin, expires_in=lifetime)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--owner") from None
    finally:
        store.close()
    click.echo(f"token {record.id} for {owner}{' (admin)' if admin else ''}, "
               f"expires {_when(record.expires)}; shown once, keep it safe:", err=True)
    click.echo(secret)


@token.command("list")
@config_option
def list_tokens(config_path: str | None) -> None:
    """Tokens (never their secrets)."""
    store = _store(config_path)
    try:
        rows = store.tokens.all()
    finally:
        store.close()
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
def revoke(token_id: str, config_path: str | None) -> None:
    """Revoke a token by its id (from `token list`)."""
    store = _store(config_path)
    try:
        ok = store.tokens.revoke(token_id, time.time())
    finally:
        store.close()
    if not ok:
        click.echo(f"no token {token_id}", err=True)
        sys.exit(1)
    click.echo(f"revoked {token_id}")
